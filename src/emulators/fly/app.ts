/**
 * The emulated app: its machines and the Machines API operations on them
 * (create, list, get, wait, stop, start, destroy, get app). The HTTP layer
 * in emulator.ts routes requests here once they passed auth, the spec
 * checks, the rate limits and any injected fault.
 */
import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import { EmulatedMachine, parseDuration, type BootFault, type MachineHostSettings } from "./machine.js";

/** An answer to send. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** A failure answered with Fly's error body `{ error }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Fly's wait endpoint blocks at most 60 s. */
const MAX_WAIT_SECONDS = 60;

/** The one app an emulator serves, and its machines. */
export class EmulatedApp {
  readonly machines = new Map<string, EmulatedMachine>();
  /** How the next machines boot, one per machine. */
  readonly bootFaults: BootFault[] = [];
  private closed = false;

  constructor(
    private readonly region: string,
    private readonly settings: MachineHostSettings,
  ) {}

  /** Destroys every machine (killing its process); no machine boots afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.machines.values()].map((machine) => machine.destroy()));
  }

  /** Performs `operationId`; throws HttpError for Fly's error answers. */
  async serve(operationId: string, parameters: Record<string, string>, query: URLSearchParams, body: any, response: ServerResponse): Promise<Reply> {
    switch (operationId) {
      case "Apps_show":
        return { status: 200, body: this.appJson() };
      case "Machines_list":
        return { status: 200, body: this.list(query) };
      case "Machines_create":
        return { status: 200, body: this.create(body ?? {}).toJson() };
      case "Machines_show":
        return { status: 200, body: this.find(parameters.machine_id!, true).toJson() };
      case "Machines_delete": {
        const machine = this.find(parameters.machine_id!, false);
        if (machine.state === "started" || machine.state === "stopping") {
          if (query.get("force") !== "true") {
            throw new HttpError(412, `failed_precondition: machine ${machine.id} is ${machine.state}; stop it first or destroy it with force=true`);
          }
        }
        await machine.destroy();
        return { status: 200, body: { ok: true } };
      }
      case "Machines_stop": {
        const machine = this.find(parameters.machine_id!, false);
        const stopBody = (body ?? {}) as { signal?: NodeJS.Signals; timeout?: string };
        machine.stop(stopBody.signal, parseDuration(stopBody.timeout));
        return { status: 200, body: { ok: true } };
      }
      case "Machines_start": {
        const machine = this.find(parameters.machine_id!, false);
        if (machine.state === "stopped") machine.boot(this.bootFaults.shift());
        return { status: 200, body: { ok: true } };
      }
      case "Machines_wait":
        return this.wait(this.find(parameters.machine_id!, true), query, response);
      default:
        throw new HttpError(501, `${operationId} is not implemented by the flame-ts Fly emulator`);
    }
  }

  private create(body: Record<string, any>): EmulatedMachine {
    const config = (body.config ?? {}) as Record<string, any>;
    if (typeof config.image !== "string" || config.image === "") throw new HttpError(422, "invalid config: image is required");
    // The spec's MachineSecret: "EnvVar is required ... It must be a valid environment variable name."
    for (const process of (config.processes ?? []) as { secrets?: { env_var?: unknown }[] }[]) {
      for (const secret of process.secrets ?? []) {
        if (typeof secret.env_var !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(secret.env_var)) {
          throw new HttpError(422, `invalid config: processes[].secrets[].env_var must be an environment variable name, got ${JSON.stringify(secret.env_var)}`);
        }
      }
    }
    const machine = new EmulatedMachine(
      body.name ?? `emulated-${randomBytes(4).toString("hex")}`,
      body.region ?? this.region,
      structuredClone(config),
      body.skip_secrets === true,
      this.settings,
    );
    this.machines.set(machine.id, machine);
    if (body.skip_launch !== true && !this.closed) machine.boot(this.bootFaults.shift());
    return machine;
  }

  private list(query: URLSearchParams): Record<string, unknown>[] {
    const includeDeleted = query.get("include_deleted") === "true";
    const states = query.get("state")?.split(",").filter(Boolean);
    const region = query.get("region");
    const metadata = [...query.entries()].filter(([key]) => key.startsWith("metadata.")).map(([key, value]) => [key.slice(9), value] as const);
    return [...this.machines.values()]
      .filter((machine) => includeDeleted || (machine.state !== "destroyed" && machine.state !== "destroying"))
      .filter((machine) => !states || states.includes(machine.state))
      .filter((machine) => !region || machine.region === region)
      .filter((machine) => metadata.every(([key, value]) => machine.config.metadata?.[key] === value))
      .map((machine) => machine.toJson(query.get("summary") === "true"));
  }

  private async wait(machine: EmulatedMachine, query: URLSearchParams, response: ServerResponse): Promise<Reply> {
    const states = new Set(query.getAll("state").flatMap((value) => value.split(",")).filter(Boolean));
    if (states.size === 0) states.add("started");
    const seconds = Math.min(MAX_WAIT_SECONDS, Math.max(1, Number(query.get("timeout") ?? MAX_WAIT_SECONDS)));
    if (machine.state === "destroyed" && !states.has("destroyed") && !states.has("settled")) {
      throw new HttpError(400, `machine ${machine.id} is destroyed and will never be ${[...states].join(" or ")}`);
    }
    // The client hanging up ends the wait (the response closes with its connection).
    const gone = new Promise<void>((resolve) => response.once("close", () => resolve()));
    const reached = await machine.waitFor(states, seconds * 1_000, gone);
    if (reached === undefined) throw new HttpError(408, `deadline_exceeded: machine ${machine.id} did not reach ${[...states].join(" or ")} within ${seconds} s`);
    return { status: 200, body: { ok: true, state: reached, version: machine.instanceId } };
  }

  private find(id: string, includeDestroyed: boolean): EmulatedMachine {
    const machine = this.machines.get(id);
    if (!machine || (!includeDestroyed && machine.state === "destroyed")) throw new HttpError(404, `machine ${id} not found`);
    return machine;
  }

  private appJson(): Record<string, unknown> {
    const live = [...this.machines.values()].filter((machine) => machine.state !== "destroyed").length;
    return {
      id: this.settings.app,
      name: this.settings.app,
      status: "deployed",
      machine_count: live,
      volume_count: 0,
      network: "default",
      organization: { name: "Emulated organization", slug: "personal" },
    };
  }
}
