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

/** Runs `call` under `cancellation`; never throws: a failure is the result's error. */
export async function executeCall(call: DecodedCall, scope: CallScope, cancellation: CallCancellation): Promise<ResultMessage> {
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
  try {
    // Traced only when the caller sent its trace context: an untraced call takes the plain path.
    const value = call.traceContext
      ? await inServerSpan(call.traceContext, context, () => runAsCall(context, fn, call.args))
      : await runAsCall(context, fn, call.args);
    return { type: "result", callId, ok: true, value };
  } catch (error) {
    return { type: "result", callId, ok: false, error: serializeError(error) };
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
