/**
 * The wire protocol between a parent and its runners. Both sides import these
 * definitions; nothing else may put bytes on the socket.
 *
 * Bump PROTOCOL_VERSION on any incompatible change: a runner whose version
 * differs is refused at hello.
 */
export const PROTOCOL_VERSION = 4;

/** HTTP headers the runner sends on the WebSocket upgrade. */
export const RUNNER_ID_HEADER = "x-flame-runner";
export const AUTHORIZATION_HEADER = "authorization";

/** Largest frame either side accepts, in bytes (arguments and results included). */
export const DEFAULT_MAX_PAYLOAD = 256 * 1024 * 1024;

/** An exception in a form that crosses the wire and keeps what users debug with. */
export interface SerializedError {
  /**
   * `thrown`: the user's function threw; other kinds map to flame-ts' own
   * errors. `thread-exited` (protocol 4): the worker thread running the call
   * ended; `message` says how, `properties.thread` which thread it was.
   */
  kind: "thrown" | "unknown-function" | "serialization" | "aborted" | "thread-exited";
  name: string;
  message: string;
  stack?: string | undefined;
  /** Own enumerable properties that could be serialized (e.g. `code`, `statusCode`). */
  properties?: Record<string, unknown>;
  cause?: SerializedError | { value: unknown } | undefined;
}

// ---- runner -> parent -------------------------------------------------------

export interface HelloMessage {
  type: "hello";
  protocolVersion: number;
  appVersion: string;
  runnerId: string;
  pid: number;
  /** Whether the runner's entry module defined the pool the runner was booted for. */
  poolDefined: boolean;
  /** Set when the entry module threw while loading: the runner reports it, then exits. */
  entryError?: string;
  /**
   * How many worker threads run its calls (pool option `runnerThreads`, with
   * "auto" resolved on the runner's machine); absent: calls run on its main
   * thread (protocol 4).
   */
  threads?: number;
}

export type ResultMessage =
  | { type: "result"; callId: number; ok: true; value: unknown }
  | { type: "result"; callId: number; ok: false; error: SerializedError };

export interface LogMessage {
  type: "log";
  level: "debug" | "info" | "warn" | "error";
  text: string;
  /** The trace and span the runner was in when it wrote the line (W3C hex ids), if any. */
  traceId?: string;
  spanId?: string;
  /** The worker thread that wrote it (1 to runnerThreads); absent for the runner's main thread (protocol 4). */
  thread?: number;
}

export interface IdleCheckReplyMessage {
  type: "idle-check-reply";
  checkId: number;
  /** true: the runner agrees to shut down. */
  shutdown: boolean;
}

export type RunnerMessage = HelloMessage | ResultMessage | LogMessage | IdleCheckReplyMessage;

// ---- parent -> runner -------------------------------------------------------

export interface WelcomeMessage {
  type: "welcome";
}

export interface RefuseMessage {
  type: "refuse";
  reason: string;
}

export interface CallMessage {
  type: "call";
  callId: number;
  functionId: string;
  args: unknown[];
  /** Placed children are long-lived; the runner reports them separately in its logs. */
  child?: boolean;
  /** The call's execution timeout in ms (absent or Infinity: none); the runner derives the deadline `currentCall()` reports. */
  timeout?: number;
  /**
   * The caller's trace context as the registered OpenTelemetry propagator
   * wrote it (W3C `traceparent`, `tracestate`, ...): the runner's span for the
   * call becomes its child. Absent when nothing is traced (added in protocol 3).
   */
  traceContext?: TraceContextCarrier;
}

/** Propagation fields of a trace context: header-like names to string values (see validate.ts for the limits). */
export type TraceContextCarrier = Record<string, string>;

export interface CancelMessage {
  type: "cancel";
  callId: number;
  reason: "timeout" | "aborted" | "stopped";
}

export interface IdleCheckMessage {
  type: "idle-check";
  checkId: number;
}

export interface ShutdownMessage {
  type: "shutdown";
  reason: string;
}

export type ParentMessage =
  | WelcomeMessage
  | RefuseMessage
  | CallMessage
  | CancelMessage
  | IdleCheckMessage
  | ShutdownMessage;
