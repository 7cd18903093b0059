/**
 * Where the suite's JavaScript copy of the sources is (runner-mirror.ts
 * makes it), and which copy stands for a repository module: src/X.ts is
 * dist/X.js in the copy, test/X.ts is test/X.js. Plain JavaScript, because
 * the runners' bootstrap (mirror-runner.mjs) loads it without a TypeScript
 * loader; the copy's own modules load it too (a runner's pools boot runners),
 * so the repository is found from this file or from its copy alike.
 */
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const COPY = `${sep}test${sep}.generated${sep}runner-mirror${sep}`;

/** The repository's root. */
export const REPO = join(fileURLToPath(import.meta.url).replace(COPY, sep), "../../..");

/** The copy's root. */
export const RUNNER_MIRROR = join(REPO, "test/.generated/runner-mirror");

/** The bootstrap a test runner runs (the repository's file, also for the copy's modules). */
export const MIRROR_BOOTSTRAP = join(REPO, "test/support/mirror-runner.mjs");

/**
 * The copy of `path` (a path or file URL): itself for a module of the copy,
 * the copy's .js for a repository .ts module, undefined for anything else.
 * Whether the copy holds the file is for the caller to check.
 */
export function copyOf(path) {
  const file = path.startsWith("file:") ? fileURLToPath(path) : path;
  if (!relative(RUNNER_MIRROR, file).startsWith("..")) return file;
  const inRepo = relative(REPO, file);
  if (inRepo.startsWith("..") || !/\.[cm]?ts$/.test(inRepo)) return undefined;
  const inCopy = inRepo.startsWith(`src${sep}`) ? join("dist", inRepo.slice(4)) : inRepo;
  return join(RUNNER_MIRROR, inCopy).replace(/ts$/, "js");
}
