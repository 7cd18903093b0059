/**
 * The chaos soak: many callers keep a pool of child-process runners busy
 * while runners are SIGKILLed, frozen with SIGSTOP and the pool is resized
 * under them. It passes when every call settled, `pool.stop()` resolved, no
 * process was left behind, and the pool did real work.
 *
 *   npm run soak -- --seconds 60             # default 30 s, 50 callers
 *   npm run soak -- --callers 20 --seed 7    # fewer callers; replay the seed's choices
 *   npm run soak -- --json soak.json         # also write the figures as JSON
 *   npm run soak -- --verbose                # also print each chaos action on stderr
 *
 * Runs from the TypeScript sources under tsx (runners too), so no build is
 * needed. The summary goes to stdout, progress to stderr. Exit code 0 when the
 * soak passed, 1 when it failed (the reasons are printed), 2 on bad usage,
 * 3 when the watchdog had to end it. Whatever way it ends, it kills every
 * process it started.
 */
import { randomInt } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { descendantPids } from "../test/support/processes.js";
import { holdsWithin, settlesWithin } from "./soak/bounded.js";
import { runCaller } from "./soak/callers.js";
import { startChaos } from "./soak/chaos.js";
import { CallLedger } from "./soak/ledger.js";
import { INITIAL_LIMITS, makeSoakPool } from "./soak/pool.js";
import { killAll, leftoverPids, newRunMarker } from "./soak/processes.js";
import { seededRandom } from "./soak/random.js";
import { callFigures, failureReasons, formatSummary, type SoakFigures } from "./soak/report.js";

/** Bounds of the phases after the calling, in ms: the soak ends by itself even if something never settles. */
const START_TIMEOUT = 30_000;
const SETTLE_TIMEOUT = 30_000;
const STOP_TIMEOUT = 20_000;
const PROCESS_EXIT_TIMEOUT = 5_000;
/** Chaos waits up to 10 s for its resizes; the rest is slack for a loaded machine. */
const WATCHDOG_SLACK = 30_000;

const options = parseOptions();
const startedAt = performance.now();
const startedAtDate = new Date().toISOString();
const progress = (message: string) => process.stderr.write(`[soak ${((performance.now() - startedAt) / 1000).toFixed(1)}s] ${message}\n`);

// What was already running (tsx's esbuild service) is not the soak's to count or kill.
const presentBefore = new Set(descendantPids());
const marker = newRunMarker();
// On every way out, including a crash or a second Ctrl-C, nothing the soak started survives it.
process.on("exit", () => killAll(leftoverPids(marker, presentBefore)));

const unhandled: SoakFigures["unhandled"] = { rejections: 0, exceptions: 0, first: [] };
const noteUnhandled = (kind: "rejections" | "exceptions") => (error: unknown) => {
  unhandled[kind] += 1;
  if (unhandled.first.length < 5) unhandled.first.push(error instanceof Error ? (error.stack ?? error.message) : String(error));
  progress(`unhandled ${kind === "rejections" ? "rejection" : "exception"}: ${error instanceof Error ? error.message : String(error)}`);
};
process.on("unhandledRejection", noteUnhandled("rejections"));
process.on("uncaughtException", noteUnhandled("exceptions"));

// Fires when the callers should stop: at the end of the run, or on the first interrupt.
const stopCalling = new AbortController();
let interrupted = false;
const onSignal = () => {
  if (interrupted) {
    progress("interrupted again: killing everything now");
    process.exit(130);
  }
  progress("interrupted: winding down (interrupt again to kill everything now)");
  interrupted = true;
  stopCalling.abort();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

const watchdogAfter = options.seconds * 1_000 + START_TIMEOUT + SETTLE_TIMEOUT + STOP_TIMEOUT + PROCESS_EXIT_TIMEOUT + WATCHDOG_SLACK;
setTimeout(() => {
  progress(`watchdog: the soak did not finish within ${watchdogAfter / 1000} s; killing its processes`);
  process.exit(3);
}, watchdogAfter).unref();

const ledger = new CallLedger();
const { pool, functions, counters } = makeSoakPool(marker, ledger);

progress(`seed ${options.seed}: starting the pool (min ${INITIAL_LIMITS.min}, max ${INITIAL_LIMITS.max})`);
const started = pool.start();
if (!(await settlesWithin(started, START_TIMEOUT))) await giveUp(`pool.start() had not resolved after ${START_TIMEOUT / 1000} s`);
await started.catch((error: Error) => giveUp(`pool.start() failed: ${error.message}`));

progress(`${options.callers} callers for ${options.seconds} s, with chaos`);
const callingStartedAt = performance.now();
// A plain timer, not AbortSignal.any([AbortSignal.timeout(...), ...]): on Node 20 a garbage collection can drop the timeout signal, which then never fires.
setTimeout(() => stopCalling.abort(), options.seconds * 1_000);
const chaos = startChaos({
  pool,
  // Chaos and each caller draw from their own stream, so a seed replays chaos's choices whatever the callers do.
  random: seededRandom(options.seed),
  maxRunners: INITIAL_LIMITS.max,
  stop: stopCalling.signal,
  ...(options.verbose && { onAction: (action: string) => progress(`chaos: ${action}`) }),
});
const callers = Array.from({ length: options.callers }, (_, index) =>
  runCaller({ pool, functions, ledger, random: seededRandom(options.seed + 1 + index), stop: stopCalling.signal }),
);
// Casts settle out of the ledger's sight; the pool counts every submission it settled, calls and casts alike.
const castsSettled = () => {
  const { completed, failed } = pool.stats();
  return completed + failed - ledger.settledCount;
};

const ticker = setInterval(() => {
  const stats = pool.stats();
  const { kills, freezes, resizes } = chaos.tally;
  progress(
    `${ledger.settledCount + castsSettled()} settled, ${ledger.openCount} open; runners ${stats.runners.ready} ready, ${stats.runners.booting} booting, ` +
      `${stats.queued} queued; chaos ${kills} kills, ${freezes} freezes, ${resizes} resizes`,
  );
}, 5_000);
ticker.unref();

await new Promise((resolve) => stopCalling.signal.addEventListener("abort", resolve, { once: true }));
const callingSeconds = (performance.now() - callingStartedAt) / 1_000;
progress("calling stopped: chaos ends, outstanding calls settle");
await chaos.done;
await holdsWithin(() => ledger.openCount === 0 && castsSettled() >= ledger.casts, SETTLE_TIMEOUT);
await settlesWithin(Promise.all(callers), 1_000);
clearInterval(ticker);
// Counted before stop(): a call that only stop() ends (failing it) never settled on its own.
const callsAtEnd = callFigures(ledger, castsSettled(), callingSeconds);

progress("stopping the pool");
const stopStartedAt = performance.now();
const stopSettled = await settlesWithin(pool.stop(), STOP_TIMEOUT);
const stopSeconds = round((performance.now() - stopStartedAt) / 1_000);
// Terminated runners get a moment to finish exiting; whatever is still there after it was left behind.
await holdsWithin(() => leftoverPids(marker, presentBefore).length === 0, PROCESS_EXIT_TIMEOUT);
const left = leftoverPids(marker, presentBefore);
killAll(left);

const partial: Omit<SoakFigures, "verdict"> = {
  meta: {
    seed: options.seed,
    seconds: options.seconds,
    callers: options.callers,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: cpus().length,
    startedAt: startedAtDate,
  },
  interrupted,
  callingSeconds: round(callingSeconds),
  totalSeconds: round((performance.now() - startedAt) / 1_000),
  ...callsAtEnd,
  chaos: chaos.tally,
  pool: { stopSettled, stopSeconds, runnersBooted: counters.runnersBooted, bootFailures: counters.bootFailures, shrinks: counters.shrinks },
  processes: { left: left.length, pids: left },
  unhandled,
  log: { warn: counters.warn, error: counters.error },
};
const reasons = failureReasons(partial);
const figures: SoakFigures = { ...partial, verdict: { passed: reasons.length === 0, reasons } };
process.stdout.write(`${formatSummary(figures)}\n`);
if (options.json) {
  const path = resolve(options.json);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(figures, null, 2)}\n`);
  progress(`wrote ${path}`);
}
process.exit(figures.verdict.passed ? 0 : 1);

// ---- helpers ------------------------------------------------------------------

interface SoakOptions {
  seconds: number;
  callers: number;
  json: string | undefined;
  seed: number;
  verbose: boolean;
}

function parseOptions(): SoakOptions {
  const usage = "usage: soak [--seconds N] [--callers N] [--json FILE] [--seed N] [--verbose]";
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      options: {
        seconds: { type: "string" },
        callers: { type: "string" },
        json: { type: "string" },
        seed: { type: "string" },
        verbose: { type: "boolean", default: false },
      },
    }).values;
  } catch (error) {
    usageError(`${(error as Error).message}\n${usage}`);
  }
  const seconds = Number(values.seconds ?? 30);
  const callers = Number(values.callers ?? 50);
  const seed = values.seed === undefined ? randomInt(2 ** 31) : Number(values.seed);
  if (!(seconds > 0 && Number.isFinite(seconds))) usageError(`--seconds must be a positive number, got ${values.seconds}\n${usage}`);
  if (!(Number.isInteger(callers) && callers > 0)) usageError(`--callers must be a positive integer, got ${values.callers}\n${usage}`);
  if (!Number.isSafeInteger(seed)) usageError(`--seed must be an integer, got ${values.seed}\n${usage}`);
  return { seconds, callers, json: values.json as string | undefined, seed, verbose: values.verbose === true };
}

function usageError(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

/** Ends a soak that could not get going: stops the pool (bounded), reports why, exits 1 (the exit hook kills leftovers). */
async function giveUp(reason: string): Promise<never> {
  await settlesWithin(pool.stop(), STOP_TIMEOUT);
  process.stdout.write(`FAIL: ${reason}\n`);
  process.exit(1);
}

function round(seconds: number): number {
  return Math.round(seconds * 10) / 10;
}
