/**
 * A runner agent inside the parent's own process, for LocalBackend: the same
 * agent, protocol and serialization as a runner process, started from the
 * environment a backend would give a runner. The backend sees only this
 * handle: the pool registry (where the functions live) stays the agent's business.
 */
import { decodeRunnerEnv, RUNNER_ENV_VAR } from "../protocol/runner-env.js";
import { appVersion, findPool } from "../runtime.js";
import { Agent, type AgentEnd } from "./agent.js";
import { InlineCalls } from "./call-host.js";

export interface InProcessRunner {
  /** Settles when the agent has stopped, whatever stopped it. */
  readonly done: Promise<AgentEnd>;
  /** Stops it: its calls are aborted and its connection closed. */
  close(detail: string): void;
}

export function startInProcessRunner(env: Record<string, string>, entry: string | undefined): InProcessRunner {
  const boot = decodeRunnerEnv(env[RUNNER_ENV_VAR] ?? "");
  const agent = new Agent({
    boot,
    // The parent computed its version from the same entry in this same process.
    appVersion: appVersion(entry),
    calls: new InlineCalls({ runnerId: boot.runnerId, pool: boot.pool, findPool: () => findPool(boot.pool) }),
    // The parent's process must be free to exit when its work is done.
    holdsProcess: false,
  });
  agent.connect().then(
    () => agent.serve(),
    () => undefined,
  );
  return { done: agent.done, close: (detail) => agent.close(detail) };
}
