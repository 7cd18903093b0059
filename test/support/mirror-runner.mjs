/**
 * What a test runner process runs (testProcessBackend): node mirror-runner.mjs
 * <the agent's source path> [entry]. It runs the agent of the JavaScript copy
 * the suite made (runner-mirror.ts) with the entry's copy (the entry is the
 * argument, else FLAME_ENTRY, as for the agent), so the runner loads no
 * TypeScript loader. An entry the copy does not hold (an app a test
 * wrote elsewhere, the examples) runs from its sources through tsx instead.
 */
import { existsSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const MIRROR = join(REPO, "test/.generated/runner-mirror");

const [node, , agentSource, entry] = process.argv;

/** The copy of a repository .ts module, if the mirror holds one; a module of the copy (a runner's own pool booting a runner) is its own copy. */
function mirrored(path) {
  if (path === undefined) return undefined;
  const file = path.startsWith("file:") ? fileURLToPath(path) : path;
  if (!relative(MIRROR, file).startsWith("..")) return file;
  const inRepo = relative(REPO, file);
  if (inRepo.startsWith("..") || !/\.[cm]?ts$/.test(inRepo)) return undefined;
  const underSrc = inRepo.startsWith(`src${sep}`);
  const copy = join(MIRROR, underSrc ? join("dist", inRepo.slice(4)) : inRepo).replace(/ts$/, "js");
  return existsSync(copy) ? copy : undefined;
}

const agent = mirrored(agentSource);
const fromEnvironment = entry === undefined;
const copy = mirrored(entry ?? process.env.FLAME_ENTRY);
if (agent && (copy || (fromEnvironment && process.env.FLAME_ENTRY === undefined))) {
  if (fromEnvironment && copy) process.env.FLAME_ENTRY = copy;
  process.argv = fromEnvironment ? [node, agent] : [node, agent, copy];
  await import(agent);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  process.argv = entry === undefined ? [node, agentSource] : [node, agentSource, entry];
  await import(agentSource);
}
