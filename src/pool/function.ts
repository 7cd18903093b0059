/**
 * Function identity: a defined function is called by its stable id, because
 * closures cannot cross a process boundary. The runner loads the same code, so
 * the same `define` call registers the same id there.
 */

/**
 * What `pool.define` returns: call it with the original function's arguments;
 * it runs on a runner and resolves with its result. The function itself reads
 * its call's context (signal, runner, deadline) from `currentCall()`.
 */
export type DefinedFunction<F extends (...args: any[]) => unknown> = ((
  ...args: Parameters<F>
) => Promise<Awaited<ReturnType<F>>>) & {
  readonly functionId: string;
  readonly poolName: string;
};

export type AnyDefinedFunction = DefinedFunction<(...args: any[]) => unknown>;

export function isDefinedFunction(value: unknown): value is AnyDefinedFunction {
  return typeof value === "function" && typeof (value as AnyDefinedFunction).functionId === "string";
}
