/**
 * Function identity: a defined function is called by its stable id, because
 * closures cannot cross a process boundary. The runner loads the same code, so
 * the same `define` call registers the same id there.
 */

/** Passed as the last argument to every defined function, on the runner. */
export interface CallContext {
  /** Aborted when the caller's timeout expires, its signal fires, or the pool stops. */
  signal: AbortSignal;
  runnerId: string;
  pool: string;
}

/** The parameters of `F` without a trailing CallContext. */
export type CallArgs<P extends unknown[]> = P extends [...infer Args, CallContext] ? Args : P;

/** What `pool.define` returns: call it like the original function; it runs on a runner. */
export type DefinedFunction<F extends (...args: any[]) => unknown> = ((
  ...args: CallArgs<Parameters<F>>
) => Promise<Awaited<ReturnType<F>>>) & {
  readonly functionId: string;
  readonly poolName: string;
};

export type AnyDefinedFunction = DefinedFunction<(...args: any[]) => unknown>;

export function isDefinedFunction(value: unknown): value is AnyDefinedFunction {
  return typeof value === "function" && typeof (value as AnyDefinedFunction).functionId === "string";
}
