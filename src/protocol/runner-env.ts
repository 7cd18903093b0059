/**
 * The one environment variable a backend gives a runner: where its parent is,
 * who it is, and the one-time token it authenticates with. Both the pool (which
 * writes it) and the runner agent (which reads it) import this module.
 */
import type { TraceContextCarrier } from "./messages.js";
import { validateTraceContext } from "./validate.js";
export const RUNNER_ENV_VAR = "FLAME_PARENT";

/**
 * Set instead of FLAME_PARENT by a backend that hands the runner its secret
 * through an inherited file descriptor (ProcessBackend): the number of that
 * descriptor, which the agent reads to its end and closes.
 */
export const RUNNER_ENV_FD_VAR = "FLAME_PARENT_FD";

/** Set by a backend that reads the runner's stdout and stderr itself: the agent then forwards none of it. */
export const OUTPUT_CAPTURED_ENV = "FLAME_OUTPUT_CAPTURED";

/**
 * How a runner trusts its parent over TLS: `ca` is the only trust anchor it
 * uses (PEM), and with `fingerprint256` the parent's certificate must be
 * exactly that one (SHA-256, as Node reports it): checked before the upgrade
 * request, which carries the token, leaves.
 */
export interface RunnerTrust {
  ca: string;
  fingerprint256?: string;
}

/** Limits of each worker thread's heap and stack, in MB, as Node's `Worker` takes them (`resourceLimits`). */
export interface ThreadResourceLimits {
  maxOldGenerationSizeMb?: number;
  maxYoungGenerationSizeMb?: number;
  codeRangeSizeMb?: number;
  stackSizeMb?: number;
}

/** How a runner spreads its calls over worker threads (pool option `runnerThreads`). */
export interface RunnerThreads {
  /** Worker threads to start; "auto": the runner machine's available parallelism. 1: calls run on the main thread. */
  count: number | "auto";
  /** The pool's abortGracePeriod: a thread still running a cancelled call after it is replaced. */
  abortGracePeriod: number;
  resourceLimits?: ThreadResourceLimits;
}

export interface RunnerBootInfo {
  /** WebSocket URL of the parent's control plane, e.g. ws://127.0.0.1:40123. */
  parentUrl: string;
  runnerId: string;
  pool: string;
  /** One-time secret; worthless once this runner has connected. */
  token: string;
  /** Milliseconds the agent waits to connect before giving up and exiting (the failsafe). */
  connectTimeout: number;
  /** Milliseconds between liveness pings; a parent silent for 3 intervals counts as gone. */
  heartbeatInterval: number;
  /** Set when the parent listens with TLS (parentUrl is wss://). */
  tls?: RunnerTrust;
  /**
   * The trace context of the parent's span for this boot (W3C `traceparent`
   * and `tracestate` with the W3C propagator), when the parent traces: the
   * runner's span for loading the entry module is its child. Checked like a
   * call's trace context (protocol/validate.ts).
   */
  traceContext?: TraceContextCarrier;
  /** Absent: calls run on the runner's main thread. */
  threads?: RunnerThreads;
}

const RESOURCE_LIMIT_KEYS = ["maxOldGenerationSizeMb", "maxYoungGenerationSizeMb", "codeRangeSizeMb", "stackSizeMb"] as const;

function decodeThreads(value: unknown): RunnerThreads {
  const fields = value as Partial<Record<keyof RunnerThreads, unknown>> | null;
  const invalid = () => new Error(`${RUNNER_ENV_VAR} has an invalid "threads"`);
  if (typeof fields !== "object" || fields === null) throw invalid();
  const { count, abortGracePeriod, resourceLimits } = fields;
  if (!(count === "auto" || (typeof count === "number" && Number.isInteger(count) && count >= 1))) throw invalid();
  if (typeof abortGracePeriod !== "number" || !(abortGracePeriod >= 0)) throw invalid();
  const threads: RunnerThreads = { count, abortGracePeriod };
  if (resourceLimits !== undefined) {
    if (typeof resourceLimits !== "object" || resourceLimits === null) throw invalid();
    const limits: ThreadResourceLimits = {};
    for (const key of RESOURCE_LIMIT_KEYS) {
      const limit = (resourceLimits as Record<string, unknown>)[key];
      if (limit === undefined) continue;
      if (typeof limit !== "number" || !(limit > 0)) throw invalid();
      limits[key] = limit;
    }
    threads.resourceLimits = limits;
  }
  return threads;
}

export function encodeRunnerEnv(info: RunnerBootInfo): string {
  return Buffer.from(JSON.stringify(info), "utf8").toString("base64url");
}

export function decodeRunnerEnv(value: string): RunnerBootInfo {
  let parsed: Partial<RunnerBootInfo>;
  try {
    parsed = JSON.parse(Buffer.from(value, "base64url").toString("utf8")) as Partial<RunnerBootInfo>;
  } catch {
    throw new Error(`${RUNNER_ENV_VAR} is not valid: expected the value a flame-ts backend sets`);
  }
  for (const key of ["parentUrl", "runnerId", "pool", "token"] as const) {
    if (typeof parsed[key] !== "string" || parsed[key] === "") {
      throw new Error(`${RUNNER_ENV_VAR} is missing "${key}"`);
    }
  }
  const boot: RunnerBootInfo = {
    parentUrl: parsed.parentUrl!,
    runnerId: parsed.runnerId!,
    pool: parsed.pool!,
    token: parsed.token!,
    connectTimeout: typeof parsed.connectTimeout === "number" ? parsed.connectTimeout : 20_000,
    heartbeatInterval: typeof parsed.heartbeatInterval === "number" ? parsed.heartbeatInterval : 5_000,
  };
  const tls = parsed.tls as Partial<RunnerTrust> | undefined;
  if (tls !== undefined) {
    if (typeof tls !== "object" || tls === null || typeof tls.ca !== "string" || (tls.fingerprint256 !== undefined && typeof tls.fingerprint256 !== "string")) {
      throw new Error(`${RUNNER_ENV_VAR} has an invalid "tls"`);
    }
    boot.tls = tls.fingerprint256 === undefined ? { ca: tls.ca } : { ca: tls.ca, fingerprint256: tls.fingerprint256 };
  }
  if (parsed.traceContext !== undefined) {
    try {
      boot.traceContext = validateTraceContext(parsed.traceContext, "traceContext");
    } catch (error) {
      throw new Error(`${RUNNER_ENV_VAR} has an invalid "traceContext": ${(error as Error).message}`);
    }
  }
  if (parsed.threads !== undefined) boot.threads = decodeThreads(parsed.threads);
  // A parent that listens with TLS is never dialed in clear, nor without knowing whom to trust.
  if (boot.parentUrl.startsWith("wss:") !== (boot.tls !== undefined)) {
    throw new Error(`${RUNNER_ENV_VAR} is not valid: its URL and its "tls" disagree`);
  }
  return boot;
}
