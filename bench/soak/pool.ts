/**
 * The soak's pool: child-process runners loading the soak app from TypeScript
 * sources (through tsx, as the test suite does: no build needed), with short
 * heartbeats and timeouts so chaos is noticed in well under a second and no
 * call waits long on a frozen runner. Its hooks and log are counted, not printed.
 */
import { Pool, ProcessBackend, type Logger } from "../../src/index.js";
import { defineSoakFunctions, soakEntry, type SoakFunctions } from "./app.js";
import type { CallLedger } from "./ledger.js";
import { RUN_MARKER_VARIABLE } from "./processes.js";

/** The pool's limits before chaos resizes it. */
export const INITIAL_LIMITS = { min: 1, max: 4 } as const;

export interface PoolCounters {
  runnersBooted: number;
  bootFailures: number;
  /** Runners that left the pool, by reason (exited, stuck, idle, resize, stopped...). */
  shrinks: Record<string, number>;
  warn: number;
  error: number;
}

export interface SoakPool {
  pool: Pool;
  functions: SoakFunctions;
  counters: PoolCounters;
}

/** `marker` goes into every runner's environment, so the soak can find all its processes at the end. */
export function makeSoakPool(marker: string, ledger: CallLedger): SoakPool {
  const counters: PoolCounters = { runnersBooted: 0, bootFailures: 0, shrinks: {}, warn: 0, error: 0 };
  const countingLogger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: () => void (counters.warn += 1),
    error: () => void (counters.error += 1),
  };
  const pool = new Pool({
    name: "soak",
    ...INITIAL_LIMITS,
    maxConcurrency: 8,
    backend: new ProcessBackend({
      // Resolved here, so runners find tsx whatever directory the soak was started from.
      execArgv: ["--import", import.meta.resolve("tsx")],
      env: { [RUN_MARKER_VARIABLE]: marker },
      killTimeout: 500,
    }),
    entry: soakEntry,
    // A frozen idle runner is declared lost after 3 missed 200 ms heartbeats.
    heartbeatInterval: 200,
    // Calls on a frozen busy runner end by their timeout; stuck ones get their runner replaced after the grace period.
    timeout: 3_000,
    abortGracePeriod: 1_000,
    bootTimeout: 5_000,
    runnerConnectTimeout: 5_000,
    shutdownTimeout: 5_000,
    idleShutdownAfter: 2_000,
    log: countingLogger,
    onGrowEnd: (result) => {
      if (result.ok) counters.runnersBooted += 1;
      else counters.bootFailures += 1;
    },
    onShrink: ({ reason }) => {
      counters.shrinks[reason] = (counters.shrinks[reason] ?? 0) + 1;
    },
    onCastError: (error) => ledger.recordCastError(error),
  });
  return { pool, functions: defineSoakFunctions(pool), counters };
}
