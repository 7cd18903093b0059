/**
 * LocalBackend: runners live inside the parent's own process. Calls still go
 * through the control plane, the protocol and serialization, so limits,
 * timeouts, idle shutdown and errors behave as on any backend; only the
 * process boundary is missing. Meant for fast unit tests of app code.
 */
import { Agent } from "../runner-agent/agent.js";
import { decodeRunnerEnv, RUNNER_ENV_VAR } from "../protocol/runner-env.js";
import { appVersion, findPool } from "../runtime.js";
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";

interface LocalRunner {
  agent: Agent;
  pool: string;
  parentId: string;
}

export class LocalBackend implements Backend {
  readonly name = "local";
  private readonly runners = new Map<string, LocalRunner>();
  private nextId = 1;

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    const boot = decodeRunnerEnv(request.env[RUNNER_ENV_VAR]!);
    const agent = new Agent({
      boot,
      // The parent computed its version from the same entry in this same process.
      appVersion: appVersion(request.entry ?? process.argv[1]),
      findPool: () => findPool(boot.pool),
      holdsProcess: false,
    });
    this.runners.set(request.runnerId, { agent, pool: request.pool, parentId: request.parentId });
    agent.connect().then(
      () => agent.serve(),
      () => undefined,
    );
    const exited = agent.done.then((end) => {
      this.runners.delete(request.runnerId);
      return `in-process runner ended (${end.reason}: ${end.detail})`;
    });
    return { runnerId: request.runnerId, providerId: `local-${this.nextId++}`, exited };
  }

  async terminate(runner: ProvisionedRunner): Promise<void> {
    const local = this.runners.get(runner.runnerId);
    if (!local) return;
    local.agent.close("terminated");
    await local.agent.done;
  }

  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    return [...this.runners.entries()]
      .filter(([, local]) => filter.pool === undefined || local.pool === filter.pool)
      .map(([runnerId, local]) => ({ runnerId, providerId: runnerId, pool: local.pool, parentId: local.parentId, state: "running" }));
  }
}
