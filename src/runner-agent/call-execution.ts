/**
 * Running one decoded call and encoding its result: the same on the runner's
 * main thread and on each of its worker threads, so a call behaves alike
 * wherever it runs (its context, its trace span, its errors, a result that
 * cannot be encoded).
 */
import { encodeMessage, type DecodedCall } from "../protocol/codec.js";
import { serializeError } from "../protocol/serialized-error.js";
import type { ResultMessage } from "../protocol/messages.js";
import { runAsCall } from "../call-context.js";
import { inServerSpan } from "../observability/server-span.js";
import type { RegisteredPool } from "../runtime.js";
import type { CallCancellation } from "./call-context.js";

/** Where a call runs: which runner, pool and thread, and how to find its functions. */
export interface CallScope {
  runnerId: string;
  pool: string;
  /** 0: the runner's main thread; 1 to runnerThreads: a worker thread. */
  thread: number;
  findPool: () => RegisteredPool | undefined;
}

/**
 * Runs `call` under `cancellation`; never throws: a failure is the result's
 * error. A function that returns a plain value (not a thenable) gets its
 * result in the same turn, without a promise: for short synchronous
 * functions the promise chain cost more than the call.
 */
export function executeCall(call: DecodedCall, scope: CallScope, cancellation: CallCancellation): ResultMessage | Promise<ResultMessage> {
  const { callId, functionId } = call;
  if (call.argsError !== undefined) {
    return { type: "result", callId, ok: false, error: { kind: "serialization", name: "SerializationError", message: call.argsError } };
  }
  const fn = scope.findPool()?.lookupFunction(functionId);
  if (!fn) {
    return { type: "result", callId, ok: false, error: { kind: "unknown-function", name: "UnknownFunctionError", message: `no function "${functionId}"` } };
  }
  const context = cancellation.context({
    runnerId: scope.runnerId,
    pool: scope.pool,
    functionId,
    deadline: call.timeout === undefined ? Infinity : Date.now() + call.timeout,
    thread: scope.thread,
  });
  // Traced only when the caller sent its trace context: an untraced call takes the plain path.
  if (call.traceContext) {
    const traceContext = call.traceContext;
    return settle(callId, () => inServerSpan(traceContext, context, () => runAsCall(context, fn, call.args)));
  }
  return settle(callId, () => runAsCall(context, fn, call.args));
}

function settle(callId: number, run: () => unknown): ResultMessage | Promise<ResultMessage> {
  let value: unknown;
  try {
    value = run();
  } catch (error) {
    return { type: "result", callId, ok: false, error: serializeError(error) };
  }
  if (!isThenable(value)) return { type: "result", callId, ok: true, value };
  return Promise.resolve(value).then(
    (settled): ResultMessage => ({ type: "result", callId, ok: true, value: settled }),
    (error: unknown): ResultMessage => ({ type: "result", callId, ok: false, error: serializeError(error) }),
  );
}

/** What `await` would wait for: a promise, or any object or function with a callable `then`. */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  if ((typeof value !== "object" || value === null) && typeof value !== "function") return false;
  try {
    return typeof (value as { then?: unknown }).then === "function";
  } catch {
    // A `then` getter that throws: `await` would reject with it; Promise.resolve does the same.
    return true;
  }
}

/** Encodes a result; one that cannot be encoded becomes the caller's SerializationError, never the runner's crash. */
export function encodeResult(reply: ResultMessage): Buffer {
  try {
    return encodeMessage(reply);
  } catch (error) {
    // The value could not be serialized (a function, a symbol, over maxPayload).
    const failure: ResultMessage = { type: "result", callId: reply.callId, ok: false, error: serializeError(error, "serialization") };
    try {
      return encodeMessage(failure);
    } catch {
      // Even the error did not fit (a huge property): send its bare name and message.
    }
    const { name, message } = failure.error;
    return encodeMessage({ type: "result", callId: reply.callId, ok: false, error: { kind: "serialization", name, message: message.slice(0, 4_096) } });
  }
}
