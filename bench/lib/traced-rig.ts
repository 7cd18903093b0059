/**
 * The traced warm rig: a parent process with OpenTelemetry's SDK registered
 * (traced-parent.mjs) and its one warm runner, which registers it too. Its
 * batches run in that process and come back as latencies, so the bench can
 * interleave them with the untraced rows and the raw echo of its own process.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { LatencySummary } from "./measure.js";
import { median, percentile } from "./stats.js";

const TRACED_PARENT = fileURLToPath(new URL("./traced-parent.mjs", import.meta.url));

type FromParent = { type: "ready" } | { type: "latencies"; latencies: number[] };

export class TracedRig {
  private constructor(private readonly child: ChildProcess) {}

  static async start(): Promise<TracedRig> {
    const child = fork(TRACED_PARENT, [], { execArgv: [], stdio: ["ignore", "ignore", "inherit", "ipc"] });
    const exited = once(child, "exit").then(([code]) => {
      throw new Error(`the traced parent exited (${String(code)}) before it was ready`);
    });
    await Promise.race([TracedRig.next(child, "ready"), exited]);
    return new TracedRig(child);
  }

  /** `calls` sequential no-op calls in the traced parent; the CPU figure is not measured there (NaN). */
  async batch(calls: number): Promise<LatencySummary> {
    const answer = TracedRig.next(this.child, "latencies");
    this.child.send({ type: "batch", calls });
    const { latencies } = (await answer) as { latencies: number[] };
    return { median: median(latencies), p99: percentile(latencies, 99), cpuPer10k: Number.NaN };
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, "exit");
    this.child.send({ type: "stop" });
    const killer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
  }

  private static next(child: ChildProcess, type: FromParent["type"]): Promise<FromParent> {
    return new Promise((resolve) => {
      const onMessage = (message: FromParent) => {
        if (message.type !== type) return;
        child.off("message", onMessage);
        resolve(message);
      };
      child.on("message", onMessage);
    });
  }
}
