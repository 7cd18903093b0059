/**
 * The context of the call a runner is executing, for the function's own code:
 * `currentCall()` anywhere inside a defined function (and in whatever it calls,
 * across awaits) gives its signal, runner, pool and deadline. It comes from an
 * AsyncLocalStorage rather than an extra argument, so a defined function
 * receives exactly the caller's arguments.
 *
 * Both the runner agent and the app import this module, possibly as two
 * copies (the package ships one bundle per entry point), so the storage lives
 * on globalThis under a registered symbol: every copy reads the same one.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** What a defined function can know about the call it is running. */
export interface CallContext {
  /** Aborted when the caller's timeout expires, its signal fires, or the pool stops. */
  readonly signal: AbortSignal;
  /** The runner executing the call. */
  readonly runnerId: string;
  /** The pool the function belongs to. */
  readonly pool: string;
  /** The id the function was defined under. */
  readonly functionId: string;
  /** When the caller's timeout expires, in ms since the epoch by this machine's clock (Infinity: no timeout). */
  readonly deadline: number;
  /**
   * Which of the runner's worker threads runs the call: 1 to the pool's
   * `runnerThreads`; 0 when calls run on the runner's main thread (`runnerThreads: 1`).
   */
  readonly thread: number;
}

const STORAGE_KEY = Symbol.for("flame-ts.call-context");

function storage(): AsyncLocalStorage<CallContext> {
  const holder = globalThis as unknown as Record<symbol, AsyncLocalStorage<CallContext> | undefined>;
  return (holder[STORAGE_KEY] ??= new AsyncLocalStorage<CallContext>());
}

/**
 * The call being executed, inside a defined function running on a runner;
 * undefined anywhere else (on the parent, or outside a call).
 */
export function currentCall(): CallContext | undefined {
  return storage().getStore();
}

/** @internal Runs `fn(...args)` as the call described by `context`. */
export function runAsCall<T>(context: CallContext, fn: (...args: unknown[]) => T, args: unknown[]): T {
  return storage().run(context, fn, ...args);
}
