/**
 * Backends configured for the test suite. Runners start from the JavaScript
 * copy of the sources that the suite's globalSetup makes (runner-mirror.ts),
 * through mirror-runner.mjs; TSX_EXEC_ARGV is for processes a test starts from
 * the TypeScript sources itself.
 */
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { ProcessBackend, type ProcessBackendOptions } from "../../src/index.js";

export const TSX_EXEC_ARGV = ["--import", "tsx"];

/**
 * Node flags of a test runner: the bootstrap that runs the agent's JavaScript
 * copy (it takes the agent's path and the entry after it). Source maps make
 * the copy's stacks name the TypeScript sources, on worker threads too.
 */
export const MIRROR_EXEC_ARGV = ["--enable-source-maps", repositoryPath(fileURLToPath(new URL("./mirror-runner.mjs", import.meta.url)))];

/** The repository's own file for one of the copy's (a runner's pools boot runners too, from the copy's modules). */
function repositoryPath(path: string): string {
  return path.replace(`${sep}test${sep}.generated${sep}runner-mirror${sep}`, sep);
}

/** The JavaScript copy of one of the repository's TypeScript modules (src/ is at dist/ in the copy). */
export function copyOf(path: string): string {
  const repo = fileURLToPath(new URL("../../", import.meta.url));
  const inRepo = relative(repo, path);
  const inCopy = inRepo.startsWith(`src${sep}`) ? join("dist", inRepo.slice(4)) : inRepo;
  return join(repo, "test/.generated/runner-mirror", inCopy).replace(/\.ts$/, ".js");
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
