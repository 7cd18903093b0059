/**
 * The runner agent's process: what `flame-ts runner [entry]` and
 * `node dist/runner-agent/main.js [entry]` run. Reads FLAME_PARENT, imports the
 * app's entry module (so its pools and functions are defined here too) while
 * dialing the parent, serves calls, and exits when the parent is gone or says
 * so.
 *
 * From its first instruction to its exit there is always a way out when the
 * parent is gone, so a machine is never left running (and billing) alone:
 * until the socket opens, the failsafe timer; from then on, the socket's close
 * and the liveness check, even while the entry module is still loading (an
 * `import()` cannot be cancelled, so the process exits around it).
 */
import { isAbsolute, resolve } from "node:path";
import { closeSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { decodeRunnerEnv, OUTPUT_CAPTURED_ENV, RUNNER_ENV_FD_VAR, RUNNER_ENV_VAR, type RunnerBootInfo } from "../protocol/runner-env.js";
import { appVersion, findPool, markAsRunner } from "../runtime.js";
import { Agent, type AgentEnd } from "./agent.js";
import { InlineCalls, type CallHost } from "./call-host.js";
import { loadEntry } from "./load-entry.js";
import { forwardOutput, writeLocally } from "./output-forwarding.js";
import { ThreadSet, type ThreadOutput } from "./threads/thread-set.js";
import { flushTelemetry, openTelemetry } from "../observability/opentelemetry.js";

/**
 * The runner process's exit codes (documented in the README):
 * 0 shut down by the parent or the parent is gone; 1 the entry module failed to load;
 * 2 started without a valid FLAME_PARENT; 3 refused by the parent (version mismatch);
 * 4 the parent refused its token; 5 could not reach the parent in time; 6 the parent broke the protocol;
 * 7 the peer at the parent's address is not its parent (TLS certificate check failed; the token was not sent).
 */
export const EXIT_CODES = {
  shutdown: 0,
  "parent-gone": 0,
  "entry-failed": 1,
  "bad-environment": 2,
  refused: 3,
  unauthorized: 4,
  "never-connected": 5,
  "protocol-error": 6,
  "untrusted-parent": 7,
} as const;

/** How long the close frame gets to leave before the process exits anyway. */
const EXIT_FLUSH_DELAY = 20;
/** How long the app's OpenTelemetry SDK gets to export what it holds before the process exits. */
const TELEMETRY_FLUSH_TIMEOUT = 2_000;
/**
 * The same on SIGTERM, which ProcessBackend sends right after the shutdown
 * request: shorter, so the flush ends before its default killTimeout (2 s) sends SIGKILL.
 */
const SIGTERM_FLUSH_TIMEOUT = 1_500;

/** FLAME_PARENT from the descriptor FLAME_PARENT_FD names (ProcessBackend), read to its end and closed. */
function readSecretDescriptor(): string | undefined {
  const fd = Number(process.env[RUNNER_ENV_FD_VAR]);
  if (!Number.isInteger(fd) || fd < 3) return undefined;
  try {
    return readFileSync(fd, "utf8").trim() || undefined;
  } catch {
    return undefined;
  } finally {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
  }
}

function report(message: string): void {
  process.stderr.write(`[flame runner] ${message}\n`);
}

export async function runAgent(entryArgument: string | undefined): Promise<never> {
  const encoded = process.env[RUNNER_ENV_VAR] || readSecretDescriptor();
  if (!encoded) {
    report(`${RUNNER_ENV_VAR} is not set: this command is started by a flame-ts backend, not by hand`);
    process.exit(EXIT_CODES["bad-environment"]);
  }
  let boot;
  try {
    boot = decodeRunnerEnv(encoded);
  } catch (error) {
    report((error as Error).message);
    process.exit(EXIT_CODES["bad-environment"]);
  }
  // The token is for this agent only: app code and the processes it spawns never see it.
  delete process.env[RUNNER_ENV_VAR];
  delete process.env[RUNNER_ENV_FD_VAR];

  const entry = entryArgument ?? process.env.FLAME_ENTRY;
  const entryPath = entry && !entry.startsWith("file:") && !isAbsolute(entry) ? resolve(entry) : entry;
  markAsRunner({ runnerId: boot.runnerId, pool: boot.pool });
  flushOnSigterm();

  let agent: Agent | undefined;
  // Not unref'd: while nothing else holds the event loop, this timer is what keeps the
  // process waiting for its parent (and, when it fires, what ends it).
  const failsafe = setTimeout(() => {
    // With the cause the agent's last attempt met: a busy event loop (a slow entry import) can let
    // this timer fire before the agent's own verdict on its retries, which would have said the same.
    const cause = agent?.lastConnectFailure;
    report(`could not reach the parent at ${boot.parentUrl} within ${boot.connectTimeout} ms${cause ? `: ${cause}` : " (no attempt finished)"}; exiting`);
    process.exit(EXIT_CODES["never-connected"]);
  }, boot.connectTimeout);

  let entryFailed = false;
  // Set once the agent exists: a thread's line is forwarded through it (remote backends).
  let forwardThreadLine: ((thread: number, line: ThreadOutput) => void) | undefined;
  const threadCount = resolveThreadCount(boot);
  const threads =
    threadCount > 1
      ? new ThreadSet({
          count: threadCount,
          runnerId: boot.runnerId,
          pool: boot.pool,
          entry: entryPath,
          abortGracePeriod: boot.threads!.abortGracePeriod,
          resourceLimits: boot.threads!.resourceLimits,
          traceContext: boot.traceContext,
          output: (thread, line) => {
            // Written here with the thread's tag (ProcessBackend reads this process's pipes), forwarded as its own field.
            writeLocally(line.stream, `[thread ${thread}] ${line.text}\n`);
            forwardThreadLine?.(thread, line);
          },
          report,
          failed: (detail) => {
            report(`${detail}; exiting`);
            agent?.close(detail);
          },
        })
      : undefined;
  const calls: CallHost = threads ?? new InlineCalls({ runnerId: boot.runnerId, pool: boot.pool, findPool: () => findPool(boot.pool) });
  agent = new Agent({
    boot,
    appVersion: appVersion(entryPath?.startsWith("file:") ? new URL(entryPath).pathname : entryPath),
    calls,
    report,
  });
  // Whatever ends the agent, at whatever stage, ends the process.
  void agent.done.then((end) => {
    clearTimeout(failsafe);
    exitFor(end, entryFailed);
  });

  const connected = agent.connect().then(
    () => clearTimeout(failsafe),
    () => undefined, // the agent has ended: exitFor reports it
  );
  // Loading the app (on this thread, or on each worker thread) and dialing the parent overlap: both dominate a cold start.
  const entryError = threads ? (await threads.ready).entryError : await loadEntry(entryPath, boot);
  if (entryError !== undefined) {
    entryFailed = true;
    report(entryError);
  }
  await connected;
  // ProcessBackend reads this process's pipes itself (output before connecting included).
  if (process.env[OUTPUT_CAPTURED_ENV] !== "1") {
    forwardOutput((level, text) => void agent.forwardLog(level, text));
    forwardThreadLine = (thread, { level, text, traceId, spanId }) => void agent.forwardLog(level, text, { thread, traceId, spanId });
  }
  await agent.serve(entryError);
  // exitFor ends the process; nothing after this point runs.
  return new Promise<never>(() => undefined);
}

/** Worker threads to start: 1 (none: calls run on this thread) unless the pool asked for more. */
function resolveThreadCount(boot: RunnerBootInfo): number {
  const count = boot.threads?.count ?? 1;
  return count === "auto" ? availableParallelism() : count;
}

/**
 * On SIGTERM, gives the app's SDK up to SIGTERM_FLUSH_TIMEOUT to export what it
 * holds, then lets the signal end the process as it would have. With nothing
 * registered it changes nothing: the signal's default action ends the process
 * at once. The app's own SIGTERM listeners, if any, still decide as before.
 */
function flushOnSigterm(): void {
  const resignal = () => {
    process.off("SIGTERM", onSigterm);
    // With no listener left, Node restores the default action: the process ends by the signal, as without this handler.
    if (process.listenerCount("SIGTERM") === 0) process.kill(process.pid, "SIGTERM");
  };
  const onSigterm = () => {
    // An app that registered nothing has not loaded the API: this is a property read.
    if (!openTelemetry()) return resignal();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, SIGTERM_FLUSH_TIMEOUT)));
    void Promise.race([flushTelemetryOnce(), deadline]).then(() => {
      clearTimeout(timer);
      resignal();
    });
  };
  process.on("SIGTERM", onSigterm);
}

let telemetryFlush: Promise<void> | undefined;

/**
 * One flush for the shutdown and the SIGTERM that follows it: a second
 * forceFlush while the first is exporting finds the batch empty and returns
 * at once, which would let the process end before the first export is done.
 */
function flushTelemetryOnce(): Promise<void> {
  return (telemetryFlush ??= flushTelemetry(TELEMETRY_FLUSH_TIMEOUT));
}

function exitFor(end: AgentEnd, entryFailed: boolean): void {
  // A runner whose app failed to load has already said why (and the parent refuses it).
  if (entryFailed) return exitSoon(EXIT_CODES["entry-failed"]);
  if (end.reason !== "shutdown" && end.reason !== "parent-gone") report(`${describeEnd(end)}; exiting`);
  exitSoon(EXIT_CODES[end.reason]);
}

function describeEnd(end: AgentEnd): string {
  return end.reason === "refused" ? `the parent refused this runner: ${end.detail}` : end.detail;
}

/** Gives the close frame a moment to leave, then exits even if app code holds the event loop open. */
function exitSoon(code: number): void {
  // Deliberately not unref'd: an unref'd timer lets Node exit first, with 13 (unsettled top-level await).
  // The flush is immediate for a runner that traced nothing (flame-ts never loaded the API).
  void flushTelemetryOnce().then(() => setTimeout(() => process.exit(code), EXIT_FLUSH_DELAY));
}
