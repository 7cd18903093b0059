/**
 * The runner agent's process: what `flame-ts runner [entry]` and
 * `node dist/runner-agent/main.js [entry]` run. Reads FLAME_PARENT, imports the
 * app's entry module (so its pools and functions are defined here too) while
 * dialing the parent, serves calls, and exits when the parent is gone or says
 * so. It exits on its own if it cannot reach its parent within the failsafe
 * window, so a machine is never left running without one.
 */
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { decodeRunnerEnv, RUNNER_ENV_VAR } from "../protocol/runner-env.js";
import { appVersion, findPool, markAsRunner } from "../runtime.js";
import { Agent } from "./agent.js";
import { forwardConsole } from "./console-forwarding.js";

const EXIT_CODES = { "entry-failed": 1, shutdown: 0, "parent-gone": 0, refused: 3, unauthorized: 4, "never-connected": 5 } as const;

function report(message: string): void {
  process.stderr.write(`[flame runner] ${message}\n`);
}

export async function runAgent(entryArgument: string | undefined): Promise<never> {
  const encoded = process.env[RUNNER_ENV_VAR];
  if (!encoded) {
    report(`${RUNNER_ENV_VAR} is not set: this command is started by a flame-ts backend, not by hand`);
    process.exit(2);
  }
  const boot = decodeRunnerEnv(encoded);
  // The token is for this agent only: app code and the processes it spawns never see it.
  delete process.env[RUNNER_ENV_VAR];

  const entry = entryArgument ?? process.env.FLAME_ENTRY;
  const entryPath = entry && !entry.startsWith("file:") && !isAbsolute(entry) ? resolve(entry) : entry;
  markAsRunner({ runnerId: boot.runnerId, pool: boot.pool });

  const failsafe = setTimeout(() => {
    report(`not connected to the parent within ${boot.connectTimeout} ms; exiting`);
    process.exit(EXIT_CODES["never-connected"]);
  }, boot.connectTimeout);

  let entryError: string | undefined;
  const agent = new Agent({
    boot,
    appVersion: appVersion(entryPath?.startsWith("file:") ? new URL(entryPath).pathname : entryPath),
    findPool: () => findPool(boot.pool),
    report,
  });
  // Loading the app and dialing the parent overlap: both dominate a cold start.
  const [loaded, connected] = await Promise.allSettled([
    entryPath ? import(entryPath.startsWith("file:") ? entryPath : pathToFileURL(entryPath).href) : Promise.resolve(),
    agent.connect(),
  ]);
  if (loaded.status === "rejected") {
    const reason = loaded.reason as Error;
    entryError = `the entry module ${entryPath} failed to load: ${reason?.stack ?? String(reason)}`;
    report(entryError);
  }
  if (connected.status === "rejected") {
    report(`could not connect to the parent: ${(connected.reason as Error).message}`);
    process.exit(EXIT_CODES["never-connected"]);
  }
  clearTimeout(failsafe);
  forwardConsole((level, text) => void agent.forwardLog(level, text));
  const end = await agent.serve(connected.value, entryError);
  if (entryError) process.exit(EXIT_CODES["entry-failed"]);
  if (end.reason !== "shutdown" && end.reason !== "parent-gone") report(`${end.reason}: ${end.detail}`);
  // Give the close frame a moment to leave, then exit even if app code holds the event loop open.
  setTimeout(() => process.exit(EXIT_CODES[end.reason]), 20).unref();
  return new Promise<never>(() => undefined);
}

