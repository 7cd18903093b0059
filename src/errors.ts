/**
 * Every error flame-ts raises is a `FlameError` with a stable `code`, so callers
 * can branch on `err.code` without string-matching messages.
 */
export class FlameError extends Error {
  /** Stable, documented identifier of the failure, e.g. `FLAME_CALL_TIMEOUT`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An option passed to a constructor or method was invalid. Names the option and the bad value. */
export class InvalidOptionError extends FlameError {
  constructor(message: string) {
    super("FLAME_INVALID_OPTION", message);
  }
}

/** A call ran longer than its `timeout`. The remote function's signal was aborted. */
export class CallTimeoutError extends FlameError {
  readonly timeout: number;
  constructor(functionId: string, timeout: number, stage: "queued" | "running") {
    super(
      "FLAME_CALL_TIMEOUT",
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
    super("FLAME_CALL_ABORTED", `call to "${functionId}" was aborted`, { cause: reason });
  }
}

/** A runner could not be booted: the backend failed, or the runner refused or crashed while starting. */
export class BootError extends FlameError {
  /** Whether another boot attempt may succeed (false for bad credentials, a wrong entry module). */
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; code?: string; retryable?: boolean }) {
    super(options?.code ?? "FLAME_BOOT_FAILED", message, options);
    this.retryable = options?.retryable ?? true;
  }
}

/** A runner was provisioned but did not say hello within `bootTimeout`, or no runner freed up in time. */
export class BootTimeoutError extends BootError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, code: "FLAME_BOOT_TIMEOUT" });
  }
}

/** The runner executing a call died (process killed, connection lost) before the call finished. */
export class RunnerExitedError extends FlameError {
  readonly runnerId: string;
  constructor(runnerId: string, detail: string) {
    super("FLAME_RUNNER_EXITED", `runner ${runnerId} exited before the call finished: ${detail}`);
    this.runnerId = runnerId;
  }
}

/** More callers were waiting than the pool's `maxQueue` allows. */
export class QueueFullError extends FlameError {
  constructor(poolName: string, maxQueue: number) {
    super("FLAME_QUEUE_FULL", `pool "${poolName}" queue is full (maxQueue ${maxQueue})`);
  }
}

/** The pool is stopping or stopped and takes no more calls. */
export class PoolStoppedError extends FlameError {
  constructor(poolName: string) {
    super("FLAME_POOL_STOPPED", `pool "${poolName}" is stopped`);
  }
}

/** An argument or result could not be serialized (functions, symbols, or over `maxPayload`). */
export class SerializationError extends FlameError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("FLAME_SERIALIZATION", message, options);
  }
}

/** The runner has no function with the called id (it loaded a different entry or version). */
export class UnknownFunctionError extends FlameError {
  readonly functionId: string;
  constructor(poolName: string, functionId: string) {
    super(
      "FLAME_UNKNOWN_FUNCTION",
      `pool "${poolName}" has no function "${functionId}" on the runner: is it defined with pool.define() in the runner's entry module?`,
    );
    this.functionId = functionId;
  }
}

/** The runner runs a different protocol or app version than the parent; it was refused. */
export class VersionMismatchError extends FlameError {
  constructor(message: string) {
    super("FLAME_VERSION_MISMATCH", message);
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
      "FLAME_UNGUARDED_CALL",
      `"${functionId}" was called while a runner was loading the app's entry module: code that makes calls at load time must run only on the parent (wrap it in if (!isRunner()))`,
    );
  }
}

/**
 * A backend's provider failed. `retryable` tells the pool whether another boot
 * attempt may succeed (capacity, throttling) or is pointless (bad credentials).
 */
export class BackendError extends FlameError {
  readonly retryable: boolean;
  constructor(message: string, options: { retryable: boolean; cause?: unknown; code?: string }) {
    super(options.code ?? "FLAME_BACKEND", message, { cause: options.cause });
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
    super("FLAME_REMOTE_ERROR", remote.message, options);
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
