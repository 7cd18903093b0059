/**
 * What every backend starts a runner with: its environment, and the command
 * line that runs the runner agent with the parent's own node, flags and
 * paths (for backends whose runners see the parent's files: a child process,
 * a Fly machine booted from the parent's image). One place, so that no
 * backend forgets a variable the runner needs.
 */
import { agentEntry } from "../package-paths.js";
import type { ProvisionRequest } from "./backend.js";

/**
 * The runner's environment, from lowest precedence to highest:
 * - FLAME_BUILD_ID when the parent has one: runner and parent must agree on
 *   the app version, and a remote runner does not inherit the parent's
 *   environment;
 * - `extra`, the backend's own and the user's `env` option (which may set
 *   FLAME_BUILD_ID itself);
 * - FLAME_ENTRY when there is an entry (`request.entry`, or the backend's
 *   override in `entry`), for runners whose command does not name it;
 * - the pool's `request.env` (FLAME_PARENT), which nothing may replace.
 * Nothing else of the parent's environment.
 */
export function runnerEnvironment(
  request: Pick<ProvisionRequest, "env" | "entry">,
  extra: Record<string, string> = {},
  parentEnv: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  return {
    ...(parentEnv.FLAME_BUILD_ID ? { FLAME_BUILD_ID: parentEnv.FLAME_BUILD_ID } : {}),
    ...extra,
    ...(request.entry ? { FLAME_ENTRY: request.entry } : {}),
    ...request.env,
  };
}

/** The node that runs the runner agent; each defaults to the parent's own. */
export interface RunnerNode {
  /** Node executable. Default: process.execPath. */
  execPath?: string;
  /** Node flags. Default: process.execArgv (as child_process.fork does). */
  execArgv?: string[];
}

/** The command line that runs the runner agent importing `entry`: `[node, ...flags, agent, entry]`. */
export function runnerCommand(entry: string | undefined, node: RunnerNode = {}): [execPath: string, ...args: string[]] {
  return [node.execPath ?? process.execPath, ...(node.execArgv ?? process.execArgv), agentEntry(), ...(entry ? [entry] : [])];
}
