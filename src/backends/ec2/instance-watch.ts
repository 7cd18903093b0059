/**
 * Watches the instances of booting runners, so a boot fails as soon as its
 * instance stops (its boot script failed and powered it off, spot capacity
 * was reclaimed) instead of at the end of `bootTimeout`, minutes later. One
 * DescribeInstances call per interval covers every booting runner.
 */
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { Logger } from "../../log.js";
import type { Ec2Module } from "./clients.js";

interface Watched {
  deadline: number;
  resolve(detail: string): void;
}

/** States after which an instance will never run the runner. */
const ENDED_STATES = new Set(["shutting-down", "terminated", "stopping", "stopped"]);
/** DescribeInstances takes at most 200 values per filter. */
const FILTER_VALUES_MAX = 200;

export class InstanceWatch {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: () => Promise<{ ec2: EC2Client; module: Ec2Module }>,
    private readonly interval: number,
    private readonly log: () => Logger | undefined,
  ) {}

  /** A promise that settles with a description if `instanceId` ends before `deadline` (ms since epoch). */
  watch(instanceId: string, deadline: number): Promise<string> {
    return new Promise((resolve) => {
      this.watched.set(instanceId, { deadline, resolve });
      this.schedule();
    });
  }

  /** Stops watching (the runner is being terminated on purpose). */
  forget(instanceId: string): void {
    this.watched.delete(instanceId);
  }

  private schedule(): void {
    if (this.timer || this.watched.size === 0) return;
    this.timer = setTimeout(() => void this.check(), this.interval);
    // A watch must never keep the parent alive.
    this.timer.unref();
  }

  private async check(): Promise<void> {
    const now = Date.now();
    for (const [id, entry] of this.watched) if (entry.deadline <= now) this.watched.delete(id);
    const ids = [...this.watched.keys()];
    try {
      const { ec2, module } = await this.client();
      for (let start = 0; start < ids.length; start += FILTER_VALUES_MAX) {
        const filters = [{ Name: "instance-id", Values: ids.slice(start, start + FILTER_VALUES_MAX) }];
        for await (const page of module.paginateDescribeInstances({ client: ec2 }, { Filters: filters })) {
          for (const instance of (page.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? [])) {
            const state = instance.State?.Name;
            const entry = instance.InstanceId ? this.watched.get(instance.InstanceId) : undefined;
            if (!entry || !state || !ENDED_STATES.has(state)) continue;
            this.watched.delete(instance.InstanceId!);
            const reason = instance.StateReason?.Message ?? instance.StateTransitionReason;
            entry.resolve(`EC2 instance ${instance.InstanceId} is ${state}${reason ? ` (${reason})` : ""}`);
          }
        }
      }
    } catch (error) {
      // A missed check only delays the news; the boot timeout still bounds the wait.
      this.log()?.debug({ err: error }, `could not check runner instances: ${(error as Error).message}`);
    } finally {
      this.timer = undefined;
      this.schedule();
    }
  }
}
