/**
 * What a runner's main thread and its worker threads say to each other
 * (threads/thread-set.ts and threads/thread-main.ts). Both ends are this
 * package's own code in one process, so these are plain typed messages; what
 * came from the parent was checked before it got here, and the parent checks
 * every result frame again.
 *
 * Calls and results travel as encoded protocol frames, moved (transferred),
 * not copied: the thread decodes the arguments and encodes the result, so a
 * value is serialized once, on the thread that runs the call, and never cloned
 * a second time on its way between the socket and the thread.
 */
import type { CancelMessage, LogMessage, TraceContextCarrier } from "../../protocol/messages.js";

/** What a worker thread is started with (its `workerData`). */
export interface ThreadStart {
  /** 1 to runnerThreads: kept by a thread's replacement. */
  thread: number;
  runnerId: string;
  pool: string;
  /** The app's entry module (absolute path or file: URL), imported by every thread. */
  entry: string | undefined;
  /** The boot span's trace context, given to the first thread only: the entry's load is recorded once. */
  traceContext?: TraceContextCarrier;
}

export type ToThread =
  /** A call frame as the parent sent it; the thread owns the bytes. */
  | { type: "call"; callId: number; frame: ArrayBuffer }
  | { type: "cancel"; callId: number; reason: CancelMessage["reason"] }
  | { type: "idle-check"; checkId: number };

export type FromThread =
  /** The entry module loaded (or not): the thread takes calls from now on. */
  | { type: "ready"; poolDefined: boolean }
  | { type: "entry-failed"; error: string }
  /** An encoded result frame (the whole ArrayBuffer). */
  | { type: "result"; callId: number; frame: ArrayBuffer }
  | { type: "idle-check-reply"; checkId: number; shutdown: boolean }
  /** A line the thread wrote to stdout or stderr (console included), with the trace it was written in. */
  | { type: "output"; stream: "stdout" | "stderr"; level: LogMessage["level"]; text: string; traceId?: string; spanId?: string };
