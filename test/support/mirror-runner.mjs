/**
 * What a test runner process runs (testProcessBackend): node mirror-runner.mjs
 * <the agent's source path> [entry]. It runs the agent of the JavaScript copy
 * the suite made (runner-mirror.ts) with the entry's copy (the entry is the
 * argument, else FLAME_ENTRY, as for the agent), so the runner loads no
 * TypeScript loader. An entry the copy does not hold (an app a test
 * wrote elsewhere, the examples) runs from its sources through tsx instead.
 */
import { existsSync } from "node:fs";
import { copyOf } from "./mirror-paths.mjs";

const [node, , agentSource, entry] = process.argv;

/** The copy of a module, if the copy holds one. */
function mirrored(path) {
  const copy = path === undefined ? undefined : copyOf(path);
  return copy !== undefined && existsSync(copy) ? copy : undefined;
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
