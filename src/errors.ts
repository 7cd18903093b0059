/**
 * flame-ts' error taxonomy: `FlameError`, its subclasses, and every code they
 * carry, declared here once (`ERROR_CODES`). Backends import their codes from
 * this module; the README's "Errors" tables list the same set.
 */

/**
 * Every `code` a FlameError can carry. Each key is its code, so searching for
 * a code (say, from a log line) finds both this declaration and the places
 * that raise it. Provider codes share one vocabulary:
 * `FLAME_<PROVIDER>_UNAUTHORIZED`, `_INVALID_CONFIGURATION`, `_CAPACITY`,
 * `_THROTTLED`, `_QUOTA` and, for any other failure, `_FAILED`.
 */
export const ERROR_CODES = {
  FLAME_INVALID_OPTION: "FLAME_INVALID_OPTION",
  FLAME_CALL_TIMEOUT: "FLAME_CALL_TIMEOUT",
  FLAME_CALL_ABORTED: "FLAME_CALL_ABORTED",
  FLAME_BOOT_FAILED: "FLAME_BOOT_FAILED",
  FLAME_BOOT_TIMEOUT: "FLAME_BOOT_TIMEOUT",
  FLAME_QUEUE_TIMEOUT: "FLAME_QUEUE_TIMEOUT",
  FLAME_RUNNER_EXITED: "FLAME_RUNNER_EXITED",
  FLAME_THREAD_EXITED: "FLAME_THREAD_EXITED",
  FLAME_QUEUE_FULL: "FLAME_QUEUE_FULL",
  FLAME_POOL_STOPPED: "FLAME_POOL_STOPPED",
  FLAME_REMOTE_ERROR: "FLAME_REMOTE_ERROR",
  FLAME_SERIALIZATION: "FLAME_SERIALIZATION",
  FLAME_UNKNOWN_FUNCTION: "FLAME_UNKNOWN_FUNCTION",
  FLAME_VERSION_MISMATCH: "FLAME_VERSION_MISMATCH",
  FLAME_UNGUARDED_CALL: "FLAME_UNGUARDED_CALL",
  /** A `BackendError` whose backend has no codes of its own (the process and local backends). */
  FLAME_BACKEND: "FLAME_BACKEND",

  FLAME_FLY_UNAUTHORIZED: "FLAME_FLY_UNAUTHORIZED",
  FLAME_FLY_INVALID_CONFIGURATION: "FLAME_FLY_INVALID_CONFIGURATION",
  FLAME_FLY_CAPACITY: "FLAME_FLY_CAPACITY",
  FLAME_FLY_THROTTLED: "FLAME_FLY_THROTTLED",
  FLAME_FLY_FAILED: "FLAME_FLY_FAILED",

  FLAME_EC2_UNAUTHORIZED: "FLAME_EC2_UNAUTHORIZED",
  FLAME_EC2_INVALID_CONFIGURATION: "FLAME_EC2_INVALID_CONFIGURATION",
  FLAME_EC2_QUOTA: "FLAME_EC2_QUOTA",
  FLAME_EC2_CAPACITY: "FLAME_EC2_CAPACITY",
  FLAME_EC2_THROTTLED: "FLAME_EC2_THROTTLED",
  FLAME_EC2_FAILED: "FLAME_EC2_FAILED",

  FLAME_KUBERNETES_UNAUTHORIZED: "FLAME_KUBERNETES_UNAUTHORIZED",
  FLAME_KUBERNETES_INVALID_CONFIGURATION: "FLAME_KUBERNETES_INVALID_CONFIGURATION",
  FLAME_KUBERNETES_CAPACITY: "FLAME_KUBERNETES_CAPACITY",
  FLAME_KUBERNETES_THROTTLED: "FLAME_KUBERNETES_THROTTLED",
  FLAME_KUBERNETES_FAILED: "FLAME_KUBERNETES_FAILED",
} as const;

/** One of the codes in `ERROR_CODES`: the type of every FlameError's `code`. */
export type FlameErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/**
 * The key under which every FlameError keeps the names of its classes, from
 * its own up to `FlameError`. `Symbol.for` gives the same symbol to every copy
 * of flame-ts in a process (each of its bundles, each installed copy of the
 * package), so `instanceof` finds the brand on errors whose prototype chain
 * leads to another copy's classes.
 */
const CLASS_NAMES = Symbol.for("flame-ts.error");

/** The names of `constructor` and its ancestors, up to (not including) `Error`. */
function classNamesOf(constructor: Function): readonly string[] {
  const names: string[] = [];
  for (let current: unknown = constructor; typeof current === "function" && current !== Error; current = Object.getPrototypeOf(current)) {
    names.push(current.name);
  }
  return Object.freeze(names);
}

/**
 * Every error flame-ts raises is a `FlameError` with a stable `code`, so callers
 * can branch on `err.code` without string-matching messages. `instanceof`
 * holds across copies of flame-ts (its own bundles, two installs in one app).
 */
export class FlameError extends Error {
  /** Stable, documented identifier of the failure, e.g. `FLAME_CALL_TIMEOUT`: one of `ERROR_CODES`. */
  readonly code: FlameErrorCode;

  constructor(code: FlameErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
    // Not enumerable: logs, JSON and the codec's copy of an error's own properties leave it out.
    Object.defineProperty(this, CLASS_NAMES, { value: classNamesOf(new.target) });
  }

  /**
   * True for an instance of this class or a subclass from this copy of
   * flame-ts (the prototype check), and for an error from another copy whose
   * brand names this class. Subclasses inherit it with `this` bound to
   * themselves, so `instanceof BootTimeoutError` stays as precise as the
   * class chain: a BootTimeoutError is a BootError, not the other way round.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (typeof value !== "object" || value === null) return false;
    const names: unknown = (value as { [CLASS_NAMES]?: unknown })[CLASS_NAMES];
    return Array.isArray(names) && names.includes(this.name);
  }
}

/** An option passed to a constructor or method was invalid. Names the option and the bad value. */
export class InvalidOptionError extends FlameError {
  constructor(message: string) {
    super(ERROR_CODES.FLAME_INVALID_OPTION, message);
  }
}

/** A call ran longer than its `timeout`. The remote function's signal was aborted. */
export class CallTimeoutError extends FlameError {
  /** The call's timeout, in ms. */
  readonly timeout: number;
  constructor(functionId: string, timeout: number, stage: "queued" | "running") {
    super(
      ERROR_CODES.FLAME_CALL_TIMEOUT,
      stage === "running"
        ? `call to "${functionId}" timed out after ${timeout} ms`
        : `call to "${functionId}" timed out after ${timeout} ms before a runner could take it`,
    );
    this.timeout = timeout;
  }
}

/** The caller's AbortSignal fired. `cause` is the signal's reason. */
export class CallAbortedError extends FlameError {
  constructor(functionId: string, reason: unknown) {
    super(ERROR_CODES.FLAME_CALL_ABORTED, `call to "${functionId}" was aborted`, { cause: reason });
  }
}

/** A runner could not be booted: the backend failed, or the runner refused or crashed while starting. */
export class BootError extends FlameError {
  /** Whether another boot attempt may succeed (false for bad credentials, a wrong entry module). */
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; code?: FlameErrorCode; retryable?: boolean }) {
    super(options?.code ?? ERROR_CODES.FLAME_BOOT_FAILED, message, options);
    this.retryable = options?.retryable ?? true;
  }
}

/** A runner was provisioned but did not say hello within `bootTimeout` (a caller that waited gets QueueTimeoutError). */
export class BootTimeoutError extends BootError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, code: ERROR_CODES.FLAME_BOOT_TIMEOUT });
  }
}

/**
 * A call waited `bootTimeout` in the pool's queue and no runner took it: the
 * pool was at `max` with every runner busy, or the runners it booted failed or
 * did not connect in time. `cause` is the last boot failure, if there was one,
 * and the message leads with it, since it is usually what to fix.
 *
 * Not a `BootError`: no boot has to have failed (a saturated pool times out
 * too), and code that reads a BootError as "the backend or the entry is
 * broken" should not fire on load. `error.cause instanceof BootError` tells
 * whether a failed boot was behind the wait.
 */
/** What a QueueTimeoutError says. */
export interface QueueTimeoutDetails {
  poolName: string;
  functionId: string;
  /** How long the call waited for a runner, in ms. */
  waited: number;
  /** The pool's last boot failure, if any: the message leads with it and it is the `cause`. */
  lastBootFailure?: Error | undefined;
  /** What else the pool knows (e.g. which runners have not connected yet), a phrase without leading punctuation. */
  detail?: string | undefined;
}

export class QueueTimeoutError extends FlameError {
  readonly poolName: string;
  readonly functionId: string;
  /** How long the call waited for a runner, in ms. */
  readonly waited: number;

  constructor({ poolName, functionId, waited: waitedMs, lastBootFailure, detail }: QueueTimeoutDetails) {
    const why = [lastBootFailure && `the last boot failed: ${lastBootFailure.message}`, detail].filter(Boolean).join("; ");
    super(
      ERROR_CODES.FLAME_QUEUE_TIMEOUT,
      `no runner of pool "${poolName}" could take "${functionId}" within bootTimeout (${waitedMs} ms)${why ? `: ${why}` : ""}`,
      lastBootFailure ? { cause: lastBootFailure } : undefined,
    );
    this.poolName = poolName;
    this.functionId = functionId;
    this.waited = waitedMs;
  }
}

/** The runner executing a call died (process killed, connection lost) before the call finished. */
export class RunnerExitedError extends FlameError {
  /** The runner that died. */
  readonly runnerId: string;
  constructor(runnerId: string, detail: string) {
    super(ERROR_CODES.FLAME_RUNNER_EXITED, `runner ${runnerId} exited before the call finished: ${detail}`);
    this.runnerId = runnerId;
  }
}

/**
 * The worker thread running a call (pool option `runnerThreads`) ended
 * before the call finished: it threw an uncaught exception, called
 * `process.exit`, ran out of memory under `threadResourceLimits`, or was
 * stopped because another call on it ignored its cancellation. The runner
 * and its other threads carry on; the thread is replaced.
 */
export class ThreadExitedError extends FlameError {
  /** The runner whose thread ended. */
  readonly runnerId: string;
  /** Which of the runner's threads (1 to runnerThreads). */
  readonly thread: number;
  constructor(runnerId: string, thread: number, detail: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.FLAME_THREAD_EXITED, `thread ${thread} of runner ${runnerId} ended before the call finished: ${detail}`, options);
    this.runnerId = runnerId;
    this.thread = thread;
  }
}

/** More callers were waiting than the pool's `maxQueue` allows. */
export class QueueFullError extends FlameError {
  constructor(poolName: string, maxQueue: number) {
    super(ERROR_CODES.FLAME_QUEUE_FULL, `pool "${poolName}" queue is full (maxQueue ${maxQueue})`);
  }
}

/** The pool is stopping or stopped and takes no more calls. */
export class PoolStoppedError extends FlameError {
  constructor(poolName: string) {
    super(ERROR_CODES.FLAME_POOL_STOPPED, `pool "${poolName}" is stopped`);
  }
}

/** An argument or result could not be serialized (functions, symbols, or over `maxPayload`). */
export class SerializationError extends FlameError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.FLAME_SERIALIZATION, message, options);
  }
}

/** The runner has no function with the called id (it loaded a different entry or version). */
export class UnknownFunctionError extends FlameError {
  readonly functionId: string;
  constructor(poolName: string, functionId: string) {
    super(
      ERROR_CODES.FLAME_UNKNOWN_FUNCTION,
      `pool "${poolName}" has no function "${functionId}" on the runner: is it defined with pool.define() in the runner's entry module?`,
    );
    this.functionId = functionId;
  }
}

/** The runner runs a different protocol or app version than the parent; it was refused. */
export class VersionMismatchError extends FlameError {
  constructor(message: string) {
    super(ERROR_CODES.FLAME_VERSION_MISMATCH, message);
  }
}

/**
 * A call was made by an app module's top-level code while a runner imported it
 * (or while the CLI inspected it): every runner would make it again and boot a
 * runner of its own for it. Guard such code with `if (!isRunner())`.
 */
export class UnguardedCallError extends FlameError {
  constructor(functionId: string) {
    super(
      ERROR_CODES.FLAME_UNGUARDED_CALL,
      `"${functionId}" was called while a runner was loading the app's entry module: code that makes calls at load time must run only on the parent (wrap it in if (!isRunner()))`,
    );
  }
}

/**
 * A backend's provider failed. `retryable` tells the pool whether another boot
 * attempt may succeed (capacity, throttling) or is pointless (bad credentials).
 */
export class BackendError extends FlameError {
  /** Whether another boot attempt may succeed. */
  readonly retryable: boolean;
  constructor(message: string, options: { retryable: boolean; cause?: unknown; code?: FlameErrorCode }) {
    super(options.code ?? ERROR_CODES.FLAME_BACKEND, message, { cause: options.cause });
    this.retryable = options.retryable;
  }
}

const RESERVED_PROPERTIES = new Set(["name", "message", "stack", "cause", "code"]);

/**
 * An exception thrown by the remote function. Keeps the original name
 * (`remoteName`), message, stack, `cause` and own properties (copied onto this
 * error; the original `code`, if any, is `remoteCode` since `code` is ours).
 */
export class RemoteError extends FlameError {
  readonly remoteName: string;
  readonly remoteCode: unknown;
  readonly remoteStack: string | undefined;

  constructor(
    remote: { name: string; message: string; stack?: string | undefined; properties?: Record<string, unknown> },
    options?: { cause?: unknown },
  ) {
    super(ERROR_CODES.FLAME_REMOTE_ERROR, remote.message, options);
    this.remoteName = remote.name;
    this.remoteStack = remote.stack;
    this.remoteCode = remote.properties?.code;
    for (const [key, value] of Object.entries(remote.properties ?? {})) {
      // `key in this` also skips inherited names such as "__proto__", which a hostile runner may send as an own property.
      if (!RESERVED_PROPERTIES.has(key) && !(key in this)) (this as Record<string, unknown>)[key] = value;
    }
    if (remote.stack) this.stack = `${this.name} [${remote.name}]: ${remote.message}\n${stackFrames(remote.stack)}`;
  }
}

function stackFrames(stack: string): string {
  const firstFrame = stack.indexOf("\n    at ");
  return firstFrame === -1 ? "" : stack.slice(firstFrame + 1);
}
