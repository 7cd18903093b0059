/**
 * Process-wide facts: whether this process is a runner, and the registry that
 * lets a runner find the pool (and its functions) its entry module defined.
 *
 * The registry lives on globalThis under a registered symbol because an app can
 * end up with two copies of this module (its own `flame-ts` import and the
 * runner agent's): both must see the same pools.
 */
import { dirname } from "node:path";
import type { Backend } from "./backends/backend.js";
import { InvalidOptionError } from "./errors.js";
import { packageManifestsAbove } from "./package-paths.js";

/** What the runner agent knows about itself. */
export interface RunnerIdentity {
  runnerId: string;
  pool: string;
}

/** The view of a pool that the runner agent and the CLI need. */
export interface RegisteredPool {
  readonly name: string;
  readonly backend: Backend;
  lookupFunction(functionId: string): ((...args: any[]) => unknown) | undefined;
  runIdleCheck(): Promise<boolean>;
}

interface ProcessState {
  runner: RunnerIdentity | undefined;
  /** Set by the CLI while it loads an app's module to inspect its pools: it must not start the app. */
  inspecting?: boolean;
  /** True while a runner imports its entry module: a call made then is app code that forgot isRunner(). */
  loadingEntry?: boolean;
  pools: Map<string, RegisteredPool>;
}

const STATE_KEY = Symbol.for("flame-ts.process-state");

function processState(): ProcessState {
  const holder = globalThis as unknown as Record<symbol, ProcessState | undefined>;
  return (holder[STATE_KEY] ??= { runner: undefined, pools: new Map() });
}

/** True inside a runner: app code uses it to skip work only the parent does (e.g. starting its web server). */
export function isRunner(): boolean {
  const state = processState();
  return state.runner !== undefined || state.inspecting === true;
}

/** The runner's id and pool when running on a runner, otherwise undefined. */
export function currentRunner(): RunnerIdentity | undefined {
  const runner = processState().runner;
  return runner && { ...runner };
}

/** @internal Called once by the runner agent before it imports the app's entry. */
export function markAsRunner(identity: RunnerIdentity): void {
  processState().runner = { ...identity };
}

/**
 * @internal The CLI (doctor, reap) loads an app's module as a runner would:
 * `isRunner()`-guarded code (the web server, the app's own calls) does not run,
 * and its pools keep no runners, but no runner identity is claimed.
 */
export function markAsInspecting(): void {
  processState().inspecting = true;
}

/** @internal The runner agent marks the import of the entry module; the CLI's inspection counts too. */
export function setLoadingEntry(loading: boolean): void {
  processState().loadingEntry = loading;
}

/**
 * @internal Whether a call made now would come from an app module's top-level
 * code on a runner (or under the CLI): each runner would import the module,
 * make the call, and boot another runner for it, without end.
 */
export function callsAreUnguarded(): boolean {
  const state = processState();
  return state.inspecting === true || (state.runner !== undefined && state.loadingEntry === true);
}

/** @internal */
export function registerPool(pool: RegisteredPool): void {
  const pools = processState().pools;
  if (pools.has(pool.name)) {
    throw new InvalidOptionError(`a pool named "${pool.name}" already exists in this process: pool names must be unique`);
  }
  pools.set(pool.name, pool);
}

/** @internal */
export function unregisterPool(pool: RegisteredPool): void {
  const pools = processState().pools;
  if (pools.get(pool.name) === pool) pools.delete(pool.name);
}

/**
 * @internal Every pool constructed in this process (the CLI's reap and doctor walk them).
 * They may come from another copy of this package (the app's own import), so callers
 * use this interface rather than `instanceof Pool`.
 */
export function registeredPools(): RegisteredPool[] {
  return [...processState().pools.values()];
}

/** @internal */
export function findPool(name: string): RegisteredPool | undefined {
  return processState().pools.get(name);
}

/**
 * The app version a runner and its parent must agree on: the version in the
 * package.json nearest to the entry module, plus an optional build id (an
 * image ref, a git sha) from FLAME_BUILD_ID or, on Fly, FLY_IMAGE_REF.
 */
export function appVersion(entryPath: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const packageVersion = entryPath ? nearestPackageVersion(dirname(entryPath)) : undefined;
  const buildId = env.FLAME_BUILD_ID || env.FLY_IMAGE_REF;
  return `${packageVersion ?? "0.0.0"}${buildId ? `+${buildId}` : ""}`;
}

const versionCache = new Map<string, string | undefined>();

function nearestPackageVersion(directory: string): string | undefined {
  if (versionCache.has(directory)) return versionCache.get(directory);
  const nearest = packageManifestsAbove(directory).next().value?.manifest;
  const version = nearest?.name ? `${nearest.name}@${nearest.version ?? "0.0.0"}` : nearest?.version;
  versionCache.set(directory, version);
  return version;
}

let processParentId: string | undefined;

/** A stable id for this parent process, written into runners' tags so a restarted parent can find orphans. */
export function parentId(): string {
  processParentId ??= `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  return processParentId;
}
