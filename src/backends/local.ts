/**
 * LocalBackend: runners live inside the parent's own process. Calls still go
 * through the control plane, the protocol and serialization, so limits,
 * timeouts, idle shutdown and errors behave as on any backend; only the
 * process boundary is missing. Meant for fast unit tests of app code.
 */
import type { InProcessRunner } from "../runner-agent/in-process.js";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";

interface LocalRunner {
  runner: InProcessRunner;
  pool: string;
  parentId: string;
}

/** Runners inside the parent's own process, through the real protocol: for fast tests of app code. */
export class LocalBackend implements Backend {
  readonly name = "local";
  private readonly runners = new Map<string, LocalRunner>();
  private nextId = 1;

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    // Loaded on first use: the agent brings ws, which an app importing flame-ts (a runner's worker thread) need not load.
    const { startInProcessRunner } = await import("../runner-agent/in-process.js");
    const runner = startInProcessRunner(request.env, request.entry);
    this.runners.set(request.runnerId, { runner, pool: request.pool, parentId: request.parentId });
    const exited = runner.done.then((end) => {
      this.runners.delete(request.runnerId);
      return `in-process runner ended (${end.reason}: ${end.detail})`;
    });
    return { runnerId: request.runnerId, providerId: `local-${this.nextId++}`, exited };
  }

  async terminate(runner: ProvisionedRunner): Promise<void> {
    const local = this.runners.get(runner.runnerId);
    if (!local) return;
    local.runner.close("terminated");
    await local.runner.done;
  }

  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    return [...this.runners.entries()]
      .filter(([, local]) => filter.pool === undefined || local.pool === filter.pool)
      .map(([runnerId, local]) => ({ runnerId, providerId: runnerId, pool: local.pool, parentId: local.parentId, state: "running" }));
  }
}
