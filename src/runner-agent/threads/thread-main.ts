/**
 * A worker thread of a runner (pool option `runnerThreads`): imports the
 * app's entry module, so every `define` exists here too, then runs the calls
 * its runner's main thread hands it and hands back their encoded results.
 * The connection to the parent stays on the main thread (thread-set.ts).
 *
 * Its console and stdout/stderr go to the main thread as lines, with the
 * trace they were written in, so they reach the parent tagged with the thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import { decodeParentMessage, type DecodedCall } from "../../protocol/codec.js";
import { serializeError } from "../../protocol/serialized-error.js";
import { findPool, markAsRunner } from "../../runtime.js";
import { activeTraceIds } from "../../observability/log-correlation.js";
import { encodeResult } from "../call-execution.js";
import { InlineCalls } from "../call-host.js";
import { loadEntry } from "../load-entry.js";
import { forwardOutput } from "../output-forwarding.js";
import type { FromThread, ThreadStart, ToThread } from "./messages.js";

const port = parentPort;
if (!port) throw new Error("flame-ts' runner thread runs inside a runner's worker thread only");
const start = workerData as ThreadStart;

function post(message: FromThread, transfer?: ArrayBuffer[]): void {
  port!.postMessage(message, transfer);
}

markAsRunner({ runnerId: start.runnerId, pool: start.pool });
forwardOutput((level, text, stream) => {
  const ids = activeTraceIds();
  post(ids ? { type: "output", stream, level, text, traceId: ids.traceId, spanId: ids.spanId } : { type: "output", stream, level, text });
});

const entryError = await loadEntry(start.entry, start);
if (entryError !== undefined) {
  post({ type: "entry-failed", error: entryError });
} else {
  serve();
}

function serve(): void {
  // The same host as a runner's main thread, with this thread's number: a call behaves alike on either.
  const calls = new InlineCalls({ runnerId: start.runnerId, pool: start.pool, thread: start.thread, findPool: () => findPool(start.pool) });

  const answer = (callId: number, result: Buffer) => {
    // A frame that owns its whole ArrayBuffer (V8's serializer makes them so) moves to the main
    // thread as it is; any other (a view into Buffer's shared pool) is copied once, never transferred.
    const owned = result.byteOffset === 0 && result.byteLength === result.buffer.byteLength ? result : new Uint8Array(result);
    const buffer = owned.buffer as ArrayBuffer;
    post({ type: "result", callId, frame: buffer }, [buffer]);
  };

  const run = (callId: number, frame: ArrayBuffer) => {
    let call: DecodedCall;
    try {
      // The main thread decoded and checked this frame's header; the arguments are decoded here.
      call = decodeParentMessage(Buffer.from(frame)) as DecodedCall;
    } catch (error) {
      return answer(callId, encodeResult({ type: "result", callId, ok: false, error: serializeError(error, "serialization") }));
    }
    const result = calls.run(call);
    if (result instanceof Promise) void result.then((settled) => answer(callId, settled));
    else answer(callId, result);
  };

  const idleCheck = async (checkId: number) => {
    let shutdown = true;
    try {
      shutdown = await calls.idleCheck();
    } catch (error) {
      console.error(`idle check threw, allowing shutdown: ${(error as Error).message}`);
    }
    post({ type: "idle-check-reply", checkId, shutdown });
  };

  port!.on("message", (message: ToThread) => {
    switch (message.type) {
      case "call":
        run(message.callId, message.frame);
        return;
      case "cancel":
        calls.cancel(message.callId, message.reason);
        return;
      case "idle-check":
        void idleCheck(message.checkId);
        return;
    }
  });
  post({ type: "ready", poolDefined: calls.poolDefined() });
}
