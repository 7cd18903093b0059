/**
 * The Pool's options: declared, documented, defaulted and validated here once.
 * All durations are in milliseconds.
 */
import type { Backend } from "../backends/backend.js";
import { InvalidOptionError } from "../errors.js";
import { isLogLevel, LOG_LEVELS, type Logger, type LogLevel } from "../log.js";
import * as v from "valibot";
import { resolveEntry } from "./entry.js";
import type { ThreadResourceLimits } from "../protocol/runner-env.js";
import { MAX_RUNNER_THREADS } from "../protocol/validate.js";
import { MAX_TIMER_DELAY, milliseconds, nonNegativeInteger, parseOptions, positiveInteger } from "../validation.js";

/** What `onGrowStart` and `onGrowEnd` are told about a runner that boots. */
export interface GrowInfo {
  name: string;
  /** Runners (booting and booted) after this one started booting. */
  count: number;
  runnerId: string;
}

/** How a boot ended, for `onGrowEnd`. */
export type GrowResult = { ok: true } | { ok: false; error: Error };

/** What `onShrink` is told about a runner that left the pool. */
export interface ShrinkInfo {
  name: string;
  /** Runners left in the pool after this one (booting, ready, draining or stopping). */
  count: number;
  runnerId: string;
  /** Why it went: "idle", "single-use", "resize", "stuck", "exited", "stopped". */
  reason: ShrinkReason;
}

/** Why a runner left the pool (`onShrink`). */
export type ShrinkReason = "idle" | "single-use" | "resize" | "stuck" | "exited" | "stopped" | "version-mismatch" | "token-reused";

/** `check` runs on the runner (it is found there through the same pool definition); false keeps the runner up. */
export interface IdleShutdownPolicy {
  /** Idle milliseconds before the runner is asked to shut down. */
  after: number;
  check: () => boolean | Promise<boolean>;
}

/** The options of `new Pool(options)`, validated once; durations in ms. */
export interface PoolOptions {
  /** Unique name in the process; the runner finds its pool (and functions) by it. */
  name: string;
  /** Where runners run. Default: a new ProcessBackend (child processes on this machine). */
  backend?: Backend;
  /** Runners kept up even when idle (booted by `start()`). Default 0: scale to zero. */
  min?: number;
  /** Most runners at once. Required. */
  max: number;
  /** Calls one runner takes at once. Default 100. */
  maxConcurrency?: number;
  /** A runner serves exactly one call, then shuts down. Default false. */
  singleUse?: boolean;
  /** Logger (pino-compatible), a level for the built-in stderr logger, or false. Default: "info" (or FLAME_LOG_LEVEL). */
  log?: Logger | LogLevel | false;
  /** Default execution timeout of a call, in ms (Infinity allowed). Default 30 000. */
  timeout?: number;
  /** Longest wait for a runner to boot, and for a queued call to get a runner, in ms. Default 30 000, or the backend's `defaultBootTimeout`. */
  bootTimeout?: number;
  /** How long `stop()` lets in-flight calls finish before terminating runners, in ms. Default 30 000. */
  shutdownTimeout?: number;
  /** Idle ms before a runner above `min` shuts down: a number, Infinity, or `{ after, check }`. Default 30 000. */
  idleShutdownAfter?: number | IdleShutdownPolicy;
  /** Idle ms before one of the `min` runners shuts down. Default Infinity (they stay). */
  minIdleShutdownAfter?: number;
  /** Most callers waiting for a runner; one more gets QueueFullError. Default Infinity. */
  maxQueue?: number;
  /**
   * How long a cancelled call (timeout or abort) may keep running on its runner
   * before the runner is drained and replaced, in ms. Default 5 000.
   */
  abortGracePeriod?: number;
  /**
   * Module the runner imports to define this pool's functions. Default: the module that
   * constructed the pool (found from the call site of `new Pool`). A relative path is
   * resolved against that module, not the working directory.
   */
  entry?: string;
  /**
   * Worker threads each runner spreads its calls over, so CPU-bound calls use
   * every core of its machine: a number, or "auto" for the runner machine's
   * available parallelism. Each thread imports the entry module; calls go to
   * the least loaded thread; `maxConcurrency` stays the runner's total. A
   * thread that crashes fails only its own calls (ThreadExitedError) and is
   * replaced. Default 1: calls run on the runner's main thread, the right
   * choice for I/O-bound work.
   */
  runnerThreads?: number | "auto";
  /** Heap and stack limits of each worker thread (Node's `resourceLimits`, in MB); only with `runnerThreads` above 1 or "auto". */
  threadResourceLimits?: ThreadResourceLimits;
  /** Ms between liveness pings between parent and runner; 3 missed count as a lost connection. Default 5 000. */
  heartbeatInterval?: number;
  /** Ms a runner waits to connect to its parent before it gives up and exits (its failsafe). Default 20 000. */
  runnerConnectTimeout?: number;
  /** Called when a runner starts booting. */
  onGrowStart?: (info: GrowInfo) => void;
  /** Called when a boot ends, with `{ ok: true }` or `{ ok: false, error }`. */
  onGrowEnd?: (result: GrowResult, info: GrowInfo) => void;
  /** Called when a runner leaves the pool. */
  onShrink?: (info: ShrinkInfo) => void;
  /** Called with the error of a failed `cast` (failures are also logged). */
  onCastError?: (error: Error, info: { functionId: string }) => void;
}

const hook = v.optional(v.function());
const megabytes = v.pipe(v.number(), v.finite(), v.gtValue(0, "Expected a size in MB above 0"));
const MAX_HEARTBEAT_INTERVAL = Math.floor(MAX_TIMER_DELAY / 3);

const schema = v.strictObject({
  name: v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, "Expected 1-63 letters, digits, '_', '.', '-'")),
  backend: v.optional(
    v.custom<Backend>(
      (value) =>
        typeof value === "object" && value !== null &&
        typeof (value as Backend).provision === "function" &&
        typeof (value as Backend).terminate === "function" &&
        typeof (value as Backend).list === "function",
      "Expected a Backend (an object with provision, terminate and list)",
    ),
  ),
  min: v.optional(nonNegativeInteger(), 0),
  max: positiveInteger(),
  maxConcurrency: v.optional(positiveInteger(), 100),
  singleUse: v.optional(v.boolean(), false),
  log: v.optional(v.any()),
  timeout: v.optional(milliseconds(true), 30_000),
  // Defaulted in the Pool: the backend may know better than 30 s (see Backend.defaultBootTimeout).
  bootTimeout: v.optional(milliseconds()),
  shutdownTimeout: v.optional(milliseconds(), 30_000),
  idleShutdownAfter: v.optional(
    v.union([milliseconds(true), v.strictObject({ after: milliseconds(true), check: v.function() })]),
    30_000,
  ),
  minIdleShutdownAfter: v.optional(milliseconds(true), Infinity),
  maxQueue: v.optional(v.union([nonNegativeInteger(), v.literal(Infinity)]), Infinity),
  abortGracePeriod: v.optional(milliseconds(), 5_000),
  entry: v.optional(v.pipe(v.string(), v.minLength(1))),
  // The runner's liveness timer waits three intervals, which must fit a Node timer too.
  heartbeatInterval: v.optional(
    v.pipe(
      milliseconds(),
      v.minValue(10),
      v.maxValue(MAX_HEARTBEAT_INTERVAL, `Expected at most ${MAX_HEARTBEAT_INTERVAL} ms (a third of the longest Node timer)`),
    ),
    5_000,
  ),
  runnerConnectTimeout: v.optional(v.pipe(milliseconds(), v.minValue(1)), 20_000),
  runnerThreads: v.optional(v.union([v.pipe(positiveInteger(), v.maxValue(MAX_RUNNER_THREADS)), v.literal("auto")]), 1),
  threadResourceLimits: v.optional(
    v.strictObject({
      maxOldGenerationSizeMb: v.optional(megabytes),
      maxYoungGenerationSizeMb: v.optional(megabytes),
      codeRangeSizeMb: v.optional(megabytes),
      stackSizeMb: v.optional(megabytes),
    }),
  ),
  onGrowStart: hook,
  onGrowEnd: hook,
  onShrink: hook,
  onCastError: hook,
});

/**
 * A Pool's options after validation and defaults.
 * @internal
 */
export type ResolvedPoolOptions = Omit<v.InferOutput<typeof schema>, "idleShutdownAfter" | "log" | "backend" | "onGrowStart" | "onGrowEnd" | "onShrink" | "onCastError" | "bootTimeout"> & {
  /** Undefined until the pool applies its default (30 000 ms or the backend's). */
  bootTimeout?: number | undefined;
  idleShutdownAfter: number;
  idleCheck: (() => boolean | Promise<boolean>) | undefined;
  log: PoolOptions["log"];
  backend: Backend | undefined;
  onGrowStart: PoolOptions["onGrowStart"];
  onGrowEnd: PoolOptions["onGrowEnd"];
  onShrink: PoolOptions["onShrink"];
  onCastError: PoolOptions["onCastError"];
};

/**
 * Where the pool is being constructed, which its resolved options depend on.
 * @internal
 */
export interface PoolSetting {
  /** The module that constructs the pool (its default entry, and the base of a relative one). */
  constructedIn: string | undefined;
  /** On a runner the pool keeps no runners of its own: min is 0. */
  onRunner: boolean;
}

/**
 * Validates and defaults a Pool's options, once; the result is frozen (limits change through resize()).
 * @internal
 */
export function resolvePoolOptions(input: PoolOptions, setting: PoolSetting): Readonly<ResolvedPoolOptions> {
  if (typeof input !== "object" || input === null) {
    throw new InvalidOptionError(`Pool options must be an object, got ${String(input)}`);
  }
  const subject = typeof input.name === "string" ? `Pool "${input.name}"` : "Pool";
  const parsed = parseOptions(subject, schema, input);
  if (parsed.threadResourceLimits !== undefined && parsed.runnerThreads === 1) {
    throw new InvalidOptionError(`invalid ${subject} options: threadResourceLimits applies to worker threads; set runnerThreads above 1 or to "auto"`);
  }
  if (parsed.min > parsed.max) {
    throw new InvalidOptionError(`invalid ${subject} options: min (${parsed.min}) is greater than max (${parsed.max})`);
  }
  const log = parsed.log as PoolOptions["log"];
  if (!(log === undefined || log === false || (typeof log === "string" && isLogLevel(log)) || isLogger(log))) {
    throw new InvalidOptionError(
      `invalid ${subject} option "log": expected a logger, one of the levels ${LOG_LEVELS.join(", ")}, or false; got ${typeof log === "string" ? JSON.stringify(log) : typeof log}`,
    );
  }
  const idle = parsed.idleShutdownAfter;
  return Object.freeze({
    ...parsed,
    min: setting.onRunner ? 0 : parsed.min,
    entry: resolveEntry(parsed.entry, setting.constructedIn),
    backend: parsed.backend as Backend | undefined,
    log,
    idleShutdownAfter: typeof idle === "number" ? idle : idle.after,
    idleCheck: typeof idle === "number" ? undefined : (idle.check as IdleShutdownPolicy["check"]),
    onGrowStart: parsed.onGrowStart as PoolOptions["onGrowStart"],
    onGrowEnd: parsed.onGrowEnd as PoolOptions["onGrowEnd"],
    onShrink: parsed.onShrink as PoolOptions["onShrink"],
    onCastError: parsed.onCastError as PoolOptions["onCastError"],
  });
}

function isLogger(value: unknown): value is Logger {
  const logger = value as Logger;
  return typeof logger === "object" && logger !== null &&
    ["debug", "info", "warn", "error"].every((level) => typeof logger[level as keyof Logger] === "function");
}

/** Per-call options of `pool.call`, `pool.cast`. */
export interface CallOptions {
  /** Execution timeout in ms for this call; overrides the pool's `timeout`. */
  timeout?: number;
  /** Cancels the call at any stage: queued, booting or running. */
  signal?: AbortSignal;
}

const callSchema = v.strictObject({
  timeout: v.optional(milliseconds(true)),
  signal: v.optional(v.instance(AbortSignal)),
});

/**
 * Validates one call's options.
 * @internal
 */
export function resolveCallOptions(input: CallOptions | undefined): CallOptions {
  if (input === undefined) return {};
  return parseOptions("call", callSchema, input);
}

/** New limits for `pool.resize`; an omitted one keeps its value. */
export interface ResizeOptions {
  min?: number;
  max?: number;
}

const resizeSchema = v.strictObject({ min: v.optional(nonNegativeInteger()), max: v.optional(positiveInteger()) });

/**
 * Validates `pool.resize`'s new limits against the current ones.
 * @internal
 */
export function resolveResize(input: ResizeOptions, current: { min: number; max: number }, poolName: string) {
  const parsed = parseOptions(`Pool "${poolName}" resize`, resizeSchema, input);
  const min = parsed.min ?? current.min;
  const max = parsed.max ?? current.max;
  if (min > max) {
    throw new InvalidOptionError(`invalid Pool "${poolName}" resize: min (${min}) is greater than max (${max})`);
  }
  return { min, max };
}
