/**
 * PendingCall alone: no pool, no runner process, no socket. A call settles
 * exactly once, from whichever comes first (a result, the queue or execution
 * timeout, the caller's abort, its runner's exit), and whatever settles it
 * clears its timers and its abort listener. Fake timers drive every timeout.
 */
import { getEventListeners } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  BootTimeoutError,
  CallAbortedError,
  CallTimeoutError,
  FlameError,
  RemoteError,
  RunnerExitedError,
  SerializationError,
  UnknownFunctionError,
} from "../../src/errors.js";
import { Deadlines } from "../../src/pool/deadlines.js";
import { PendingCall, toError } from "../../src/pool/pending-call.js";
import type { Runner } from "../../src/pool/runner.js";
import type { ResultMessage, SerializedError } from "../../src/protocol/messages.js";

const POOL = "unit";
const FUNCTION = "resize";

/** PendingCall only stores the runner it is placed on and hands it to onPlaced. */
const fakeRunner = { id: "runner-1" } as unknown as Runner;

interface CallSetup {
  executionTimeout?: number;
  signal?: AbortSignal;
  onPlaced?: (runner: Runner) => void;
}

/** A call with spies for what it reports; the one place that knows PendingCall's constructor. */
function makeCall({ executionTimeout = Infinity, signal, onPlaced }: CallSetup = {}) {
  const deadlines = new Deadlines();
  const resolve = vi.fn<(value: unknown) => void>();
  const reject = vi.fn<(error: Error) => void>();
  const onGiveUp = vi.fn<(call: PendingCall, reason: "timeout" | "aborted") => void>();
  const call = new PendingCall({
    callId: 1,
    functionId: FUNCTION,
    frame: Buffer.alloc(0),
    poolName: POOL,
    child: false,
    executionTimeout,
    deadlines,
    resolve,
    reject,
    onGiveUp,
    signal,
    onPlaced,
  });
  /** The one error the call was rejected with. */
  const rejection = (): Error => {
    expect(reject).toHaveBeenCalledTimes(1);
    return reject.mock.calls[0]![0];
  };
  return { call, resolve, reject, onGiveUp, rejection, deadlines };
}

function ok(value: unknown): ResultMessage {
  return { type: "result", callId: 1, ok: true, value };
}

function failed(error: SerializedError): ResultMessage {
  return { type: "result", callId: 1, ok: false, error };
}

function abortListeners(signal: AbortSignal): number {
  return getEventListeners(signal, "abort").length;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe("PendingCall settles once", () => {
  it("resolves with the runner's value and ignores everything after it", () => {
    const controller = new AbortController();
    const { call, resolve, reject, onGiveUp } = makeCall({ executionTimeout: 1_000, signal: controller.signal });
    call.placed(fakeRunner);
    expect(call.isSettled).toBe(false);

    call.settle(ok({ width: 10 }));
    expect(call.isSettled).toBe(true);
    expect(resolve).toHaveBeenCalledExactlyOnceWith({ width: 10 });

    call.settle(ok("again"));
    call.settle(new RunnerExitedError("runner-1", "killed"));
    call.fail(new Error("late"));
    controller.abort(new Error("too late"));
    vi.advanceTimersByTime(10_000);

    expect(resolve).toHaveBeenCalledTimes(1);
    expect(reject).not.toHaveBeenCalled();
    expect(onGiveUp).not.toHaveBeenCalled();
  });

  it("rejects with the runner's exit, and a later result changes nothing", () => {
    const { call, resolve, rejection } = makeCall({ executionTimeout: 1_000 });
    call.placed(fakeRunner);
    const exited = new RunnerExitedError("runner-1", "connection lost");

    call.settle(exited);
    call.settle(ok("late"));
    vi.advanceTimersByTime(5_000);

    expect(rejection()).toBe(exited);
    expect(resolve).not.toHaveBeenCalled();
  });

  it("cancels its deadline whatever settles it, so nothing fires or holds the process after", () => {
    const { call, deadlines, reject } = makeCall({ executionTimeout: 1_000 });
    call.waitAtMost(500, () => new Error("no runner"));
    expect(deadlines.pending).toBe(1);
    call.placed(fakeRunner);
    expect(deadlines.pending).toBe(1);
    call.settle(ok(1));
    expect(deadlines.pending).toBe(0);
    vi.advanceTimersByTime(2_000);
    expect(reject).not.toHaveBeenCalled();
  });

  it("a timeout after a result, or a result after a timeout, is ignored", () => {
    const first = makeCall({ executionTimeout: 100 });
    first.call.placed(fakeRunner);
    vi.advanceTimersByTime(100);
    first.call.settle(ok("late"));
    expect(first.rejection()).toBeInstanceOf(CallTimeoutError);
    expect(first.resolve).not.toHaveBeenCalled();

    const second = makeCall({ executionTimeout: 100 });
    second.call.placed(fakeRunner);
    second.call.settle(ok("in time"));
    vi.advanceTimersByTime(100);
    expect(second.resolve).toHaveBeenCalledExactlyOnceWith("in time");
    expect(second.reject).not.toHaveBeenCalled();
    expect(second.onGiveUp).not.toHaveBeenCalled();
  });
});

describe("PendingCall's queue timer and execution timeout", () => {
  it("fails with onExpire's error when no runner takes the call in time", () => {
    const expired = new BootTimeoutError("no runner within 500 ms");
    const onExpire = vi.fn(() => expired);
    const { call, onGiveUp, reject, rejection } = makeCall({ executionTimeout: 1_000 });

    call.waitAtMost(500, onExpire);
    expect(call.queueDeadline).toBe(Date.now() + 500);
    vi.advanceTimersByTime(499);
    expect(reject).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);

    expect(onExpire).toHaveBeenCalledTimes(1);
    expect(rejection()).toBe(expired);
    // The pool's onExpire knows why no runner came and dequeues the call itself.
    expect(onGiveUp).not.toHaveBeenCalled();
  });

  it("has no queue deadline until it waits", () => {
    expect(makeCall().call.queueDeadline).toBe(Infinity);
  });

  it("on placement the queue timer gives way to the execution timeout, counted from placement", () => {
    const onExpire = vi.fn(() => new Error("no runner"));
    const onPlaced = vi.fn();
    const { call, onGiveUp, reject, rejection } = makeCall({ executionTimeout: 1_000, onPlaced });
    call.waitAtMost(500, onExpire);

    vi.advanceTimersByTime(200);
    call.placed(fakeRunner);
    expect(call.runner).toBe(fakeRunner);
    expect(onPlaced).toHaveBeenCalledExactlyOnceWith(fakeRunner);

    // Past the queue deadline: the queue timer is gone.
    vi.advanceTimersByTime(999);
    expect(onExpire).not.toHaveBeenCalled();
    expect(reject).not.toHaveBeenCalled();

    vi.advanceTimersByTime(1);
    expect(onExpire).not.toHaveBeenCalled();
    expect(onGiveUp).toHaveBeenCalledExactlyOnceWith(call, "timeout");
    const error = rejection();
    expect(error).toBeInstanceOf(CallTimeoutError);
    expect(error).toMatchObject({ code: "FLAME_CALL_TIMEOUT", timeout: 1_000 });
    expect(error.message).toContain(FUNCTION);
  });

  it("tells the pool to give up before rejecting, so the runner is told to cancel first", () => {
    const order: string[] = [];
    const { call, reject, onGiveUp } = makeCall({ executionTimeout: 50 });
    onGiveUp.mockImplementation((given) => void order.push(`give up (settled: ${given.isSettled})`));
    reject.mockImplementation(() => void order.push("reject"));
    call.placed(fakeRunner);
    vi.advanceTimersByTime(50);
    expect(order).toEqual(["give up (settled: false)", "reject"]);
  });

  it("an infinite execution timeout sets no deadline at all", () => {
    const { call, reject, deadlines } = makeCall({ executionTimeout: Infinity });
    call.waitAtMost(500, () => new Error("no runner"));
    call.placed(fakeRunner);
    expect(deadlines.pending).toBe(0);
    vi.advanceTimersByTime(24 * 3_600_000);
    expect(reject).not.toHaveBeenCalled();
    expect(call.isSettled).toBe(false);
  });

  it("placed without waiting first (a child call) starts only the execution timeout", () => {
    const { call, rejection } = makeCall({ executionTimeout: 300 });
    call.placed(fakeRunner);
    vi.advanceTimersByTime(300);
    expect(rejection()).toMatchObject({ timeout: 300 });
  });
});

describe("PendingCall's abort listener", () => {
  it("an abort while queued gives up and rejects with CallAbortedError caused by the signal's reason", () => {
    const controller = new AbortController();
    const { call, onGiveUp, rejection, deadlines } = makeCall({ executionTimeout: 1_000, signal: controller.signal });
    call.waitAtMost(500, () => new Error("no runner"));
    expect(abortListeners(controller.signal)).toBe(1);

    const reason = new Error("user left");
    controller.abort(reason);

    expect(onGiveUp).toHaveBeenCalledExactlyOnceWith(call, "aborted");
    const error = rejection();
    expect(error).toBeInstanceOf(CallAbortedError);
    expect(error).toBeInstanceOf(FlameError);
    expect(error).toMatchObject({ code: "FLAME_CALL_ABORTED" });
    expect(error.cause).toBe(reason);
    expect(abortListeners(controller.signal)).toBe(0);
    expect(deadlines.pending).toBe(0);
  });

  it("an abort while running does the same, and the execution timeout no longer fires", () => {
    const controller = new AbortController();
    const { call, onGiveUp, rejection } = makeCall({ executionTimeout: 1_000, signal: controller.signal });
    call.placed(fakeRunner);
    vi.advanceTimersByTime(400);
    controller.abort("not a reason object");
    vi.advanceTimersByTime(5_000);

    expect(onGiveUp).toHaveBeenCalledExactlyOnceWith(call, "aborted");
    expect(rejection().cause).toBe("not a reason object");
  });

  it("keeps the signal's default reason (an AbortError) as the cause", () => {
    const controller = new AbortController();
    const { rejection } = makeCall({ signal: controller.signal });
    controller.abort();
    const cause = rejection().cause as Error;
    expect(cause).toBe(controller.signal.reason);
    expect(cause.name).toBe("AbortError");
  });

  it("removes its listener when a result settles the call", () => {
    const controller = new AbortController();
    const { call } = makeCall({ signal: controller.signal });
    expect(abortListeners(controller.signal)).toBe(1);
    call.settle(ok(1));
    expect(abortListeners(controller.signal)).toBe(0);
  });

  it("removes its listener when a timeout or the runner's exit settles the call", () => {
    const controller = new AbortController();
    const timedOut = makeCall({ executionTimeout: 100, signal: controller.signal });
    const exited = makeCall({ executionTimeout: 100, signal: controller.signal });
    const expired = makeCall({ signal: controller.signal });
    expect(abortListeners(controller.signal)).toBe(3);

    timedOut.call.placed(fakeRunner);
    vi.advanceTimersByTime(100);
    expect(abortListeners(controller.signal)).toBe(2);

    exited.call.settle(new RunnerExitedError("runner-1", "killed"));
    expect(abortListeners(controller.signal)).toBe(1);

    expired.call.waitAtMost(10, () => new Error("no runner"));
    vi.advanceTimersByTime(10);
    expect(abortListeners(controller.signal)).toBe(0);

    // A signal shared by many calls and aborted after they settled reaches none of them.
    controller.abort();
    for (const made of [timedOut, exited, expired]) {
      expect(made.reject).toHaveBeenCalledTimes(1);
      expect(made.reject.mock.calls[0]![0]).not.toBeInstanceOf(CallAbortedError);
    }
    expect(timedOut.onGiveUp).toHaveBeenCalledExactlyOnceWith(timedOut.call, "timeout");
    expect(exited.onGiveUp).not.toHaveBeenCalled();
  });

  it("many calls on one long-lived signal do not pile up listeners", () => {
    const controller = new AbortController();
    for (let i = 0; i < 100; i += 1) makeCall({ signal: controller.signal }).call.settle(ok(i));
    expect(abortListeners(controller.signal)).toBe(0);
  });
});

describe("toError rebuilds what the runner reported", () => {
  it("a thrown error becomes a RemoteError with its name, message, stack and own properties", () => {
    const remote: SerializedError = {
      kind: "thrown",
      name: "ImageTooLargeError",
      message: "image is 90 MB",
      stack: "ImageTooLargeError: image is 90 MB\n    at resize (/app/image.js:10:5)\n    at run (/app/agent.js:1:1)",
      properties: { code: "E_TOO_LARGE", statusCode: 413, limit: { mb: 50 } },
    };
    const error = toError(remote, POOL, FUNCTION, "runner-1") as RemoteError;

    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toBeInstanceOf(FlameError);
    expect(error.code).toBe("FLAME_REMOTE_ERROR");
    expect(error.message).toBe("image is 90 MB");
    expect(error.remoteName).toBe("ImageTooLargeError");
    expect(error.remoteCode).toBe("E_TOO_LARGE");
    expect(error.remoteStack).toBe(remote.stack);
    expect(error.stack).toContain("ImageTooLargeError");
    expect(error.stack).toContain("at resize (/app/image.js:10:5)");
    expect(error).toMatchObject({ statusCode: 413, limit: { mb: 50 } });
    expect(error.cause).toBeUndefined();
  });

  it("keeps a chain of causes, errors as RemoteErrors and other values as they were", () => {
    const remote: SerializedError = {
      kind: "thrown",
      name: "Error",
      message: "upload failed",
      cause: {
        kind: "thrown",
        name: "TypeError",
        message: "socket hang up",
        properties: { code: "ECONNRESET" },
        cause: { value: { attempt: 3 } },
      },
    };
    const error = toError(remote, POOL, FUNCTION, "runner-1");

    expect(error).toBeInstanceOf(RemoteError);
    const cause = error.cause as RemoteError;
    expect(cause).toBeInstanceOf(RemoteError);
    expect(cause.message).toBe("socket hang up");
    expect(cause.remoteName).toBe("TypeError");
    expect(cause.remoteCode).toBe("ECONNRESET");
    expect(cause.cause).toEqual({ attempt: 3 });
  });

  it("keeps falsy cause values", () => {
    for (const value of [0, "", false, null]) {
      const error = toError({ kind: "thrown", name: "Error", message: "x", cause: { value } }, POOL, FUNCTION, "runner-1");
      expect(error.cause).toBe(value);
      expect("cause" in error).toBe(true);
    }
  });

  it("an unknown function becomes UnknownFunctionError naming the pool and the function", () => {
    const error = toError({ kind: "unknown-function", name: "UnknownFunctionError", message: `no function "${FUNCTION}"` }, POOL, FUNCTION, "runner-1");
    expect(error).toBeInstanceOf(UnknownFunctionError);
    expect(error).toMatchObject({ code: "FLAME_UNKNOWN_FUNCTION", functionId: FUNCTION });
    expect(error.message).toContain(`"${POOL}"`);
    expect(error.message).toContain(`"${FUNCTION}"`);
  });

  it("a serialization failure becomes SerializationError with the runner's message", () => {
    const error = toError({ kind: "serialization", name: "DataCloneError", message: "function could not be cloned" }, POOL, FUNCTION, "runner-1");
    expect(error).toBeInstanceOf(SerializationError);
    expect(error).toMatchObject({ code: "FLAME_SERIALIZATION" });
    expect(error.message).toContain(FUNCTION);
    expect(error.message).toContain("function could not be cloned");
  });

  it("settle() applies it to a failed result, with the call's pool and function", () => {
    const { call, rejection } = makeCall();
    call.settle(failed({ kind: "unknown-function", name: "UnknownFunctionError", message: "no such function" }));
    const error = rejection();
    expect(error).toBeInstanceOf(UnknownFunctionError);
    expect(error.message).toContain(`"${POOL}"`);

    const thrown = makeCall();
    thrown.call.settle(failed({ kind: "thrown", name: "RangeError", message: "out of range", properties: { code: "E_RANGE" } }));
    expect(thrown.rejection()).toMatchObject({ remoteName: "RangeError", remoteCode: "E_RANGE", message: "out of range" });
  });
});
