/**
 * The app the soak's runners load (the pool's `entry`). The parent imports it
 * too, to define the same functions on its pool; on a runner, the pool it was
 * booted for is built here so the functions exist there.
 */
import { currentCall, currentRunner, Pool } from "../../src/index.js";

/** This module's path: the soak pool's `entry`. */
export const soakEntry = new URL(import.meta.url).pathname;

/** Defines the soak's functions on `pool` (same ids on the parent and on runners). */
export function defineSoakFunctions(pool: Pool) {
  return {
    /** Returns its argument: the quickest possible call. */
    echo: pool.define("echo", <T>(value: T) => value),
    /** Waits `ms`, honouring its signal (so timeouts and aborts end it on the runner too, as well-behaved code does). */
    sleep: pool.define("sleep", async (ms: number) => {
      const { signal } = currentCall()!;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(new Error("aborted on the runner"));
        });
      });
      return ms;
    }),
  };
}

export type SoakFunctions = ReturnType<typeof defineSoakFunctions>;

const runner = currentRunner();
if (runner) defineSoakFunctions(new Pool({ name: runner.pool, max: 1, log: false }));
