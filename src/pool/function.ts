/**
 * Function identity: a defined function is called by its stable id, because
 * closures cannot cross a process boundary. The runner loads the same code, so
 * the same `define` call registers the same id there.
 */

/**
 * What `pool.define` returns: call it with the original function's arguments;
 * it runs on a runner and resolves with its result. The function itself reads
 * its call's context (signal, runner, deadline) from `currentCall()`.
 *
 * A plain function type, on purpose: TypeScript carries a generic function's
 * type parameters through `define` only when the result is exactly a function
 * type, so `define("id", <T,>(v: T) => v)` returns `<T>(v: T) => Promise<T>`.
 * The id and pool are on the value at run time (`functionId`, `poolName`);
 * `pool.call` checks them and refuses a function the pool did not define.
 */
export type RemoteFunction<Args extends unknown[], Result> = (...args: Args) => Promise<Awaited<Result>>;

/** `RemoteFunction` of a function type: what `pool.define(id, fn)` returns for `fn: F`. */
export type DefinedFunction<F extends (...args: any[]) => unknown> = RemoteFunction<Parameters<F>, ReturnType<F>>;

/** Any function `pool.call`, `cast` and `placeChild` accept (checked at run time to be one the pool defined). */
export type AnyRemoteFunction = (...args: any[]) => Promise<unknown>;

/** A defined function as the pool sees it at run time. */
export type AnyDefinedFunction = AnyRemoteFunction & { readonly functionId: string; readonly poolName: string };

export function isDefinedFunction(value: unknown): value is AnyDefinedFunction {
  return typeof value === "function" && typeof (value as AnyDefinedFunction).functionId === "string";
}
