/**
 * Backends configured for the test suite. Runners start from the JavaScript
 * copy of the sources that the suite's globalSetup makes (runner-mirror.ts),
 * through mirror-runner.mjs; TSX_EXEC_ARGV is for processes a test starts from
 * the TypeScript sources itself.
 */
import { ProcessBackend, type ProcessBackendOptions } from "../../src/index.js";
import { copyOf as copyPathOf, MIRROR_BOOTSTRAP } from "./mirror-paths.mjs";

export const TSX_EXEC_ARGV = ["--import", "tsx"];

/**
 * Node flags of a test runner: the bootstrap that runs the agent's JavaScript
 * copy (it takes the agent's path and the entry after it). Source maps make
 * the copy's stacks name the TypeScript sources, on worker threads too.
 */
export const MIRROR_EXEC_ARGV = ["--enable-source-maps", MIRROR_BOOTSTRAP];

/** The JavaScript copy of one of the repository's TypeScript modules (src/ is at dist/ in the copy). */
export function copyOf(path: string): string {
  const copy = copyPathOf(path);
  if (copy === undefined) throw new Error(`${path} is not a TypeScript module of the repository: the suite's copy has no counterpart`);
  return copy;
}

/**
 * Node arguments that run one of the repository's TypeScript scripts (a
 * parent a test starts, the CLI) from the JavaScript copy, whose pools then
 * boot runners from the copy too: no tsx anywhere in that process tree.
 */
export function fromCopy(script: string): string[] {
  return ["--enable-source-maps", copyOf(script)];
}

export function testProcessBackend(options: ProcessBackendOptions = {}): ProcessBackend {
  return new ProcessBackend({ execArgv: MIRROR_EXEC_ARGV, killTimeout: 500, ...options });
}
