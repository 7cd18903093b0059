/**
 * The shape check at the protocol boundary. Everything that arrives over a
 * socket is untrusted, whoever the peer is: a decoded frame is checked here,
 * field by field, before any other code reads it, and what comes out is a
 * fresh object holding only the fields the protocol defines.
 *
 * Hand-written guards rather than a schema library: they run on every message
 * of the per-call path, where a few property reads cost nothing and a generic
 * validator's allocations would show in the benchmark.
 */
import type {
  CancelMessage,
  HelloMessage,
  IdleCheckMessage,
  IdleCheckReplyMessage,
  LogMessage,
  RefuseMessage,
  SerializedError,
  ShutdownMessage,
  TraceContextCarrier,
  WelcomeMessage,
} from "./messages.js";

/** A peer broke the protocol. The connection it came on is closed; nothing else is touched. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/** Longest string field the protocol carries outside user values (reasons, versions, log lines excepted). */
const MAX_SHORT_STRING = 4_096;
/** How deep a chain of remote error causes may go (the encoder stops at 8). */
const MAX_CAUSE_DEPTH = 16;

/**
 * Limits of a call's trace context. W3C allows a tracestate of 512 characters
 * and a baggage of 8192 bytes; a handful of fields covers every propagator we
 * know (traceparent, tracestate, baggage, B3's four).
 */
const MAX_TRACE_CONTEXT_FIELDS = 8;
const MAX_TRACE_CONTEXT_VALUE = 8_192;
/** Header-like names only (so never "__proto__"): nothing a propagator would not write. */
const TRACE_CONTEXT_FIELD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const LOG_LEVELS: ReadonlySet<string> = new Set(["debug", "info", "warn", "error"]);
const CANCEL_REASONS: ReadonlySet<string> = new Set(["timeout", "aborted", "stopped"]);
const ERROR_KINDS: ReadonlySet<string> = new Set(["thrown", "unknown-function", "serialization", "aborted", "thread-exited"]);
/** Most worker threads a runner may report (far above any machine's cores: a bound, not a policy). */
export const MAX_RUNNER_THREADS = 1_024;

export type RunnerControlMessage = HelloMessage | LogMessage | IdleCheckReplyMessage;
export type ParentControlMessage = WelcomeMessage | RefuseMessage | CancelMessage | IdleCheckMessage | ShutdownMessage;

function fail(what: string): never {
  throw new ProtocolError(what);
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function string(value: unknown, what: string, maxLength = MAX_SHORT_STRING): string {
  if (typeof value !== "string") fail(`${what} is not a string`);
  if (value.length > maxLength) fail(`${what} is longer than ${maxLength} characters`);
  return value;
}

/** A W3C trace or span id: exactly `length` lowercase hex digits. */
function hexId(value: unknown, length: number, what: string): string {
  if (typeof value !== "string" || value.length !== length || !/^[0-9a-f]+$/.test(value)) fail(`${what} is not ${length} lowercase hex digits`);
  return value;
}

function optionalString(value: unknown, what: string, maxLength = MAX_SHORT_STRING): string | undefined {
  return value === undefined ? undefined : string(value, what, maxLength);
}

function boolean(value: unknown, what: string): boolean {
  if (typeof value !== "boolean") fail(`${what} is not a boolean`);
  return value;
}

/** Ids (call, idle check) are non-negative safe integers. */
export function id(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) fail(`${what} is not a valid id`);
  return value;
}

/** A thread number: 1 to MAX_RUNNER_THREADS. */
function threadNumber(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_RUNNER_THREADS) fail(`${what} is not a thread count from 1 to ${MAX_RUNNER_THREADS}`);
  return value;
}

function oneOf<T extends string>(value: unknown, allowed: ReadonlySet<string>, what: string): T {
  if (typeof value !== "string" || !allowed.has(value)) fail(`${what} ${describeValue(value)} is not one of ${[...allowed].join(", ")}`);
  return value as T;
}

function describeValue(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value.slice(0, 40)) : typeof value;
}

/** A hello from a runner of another protocol version must still reach the version check, not fail as garbage. */
export function validateHello(fields: Record<string, unknown>, currentVersion: number): HelloMessage {
  const protocolVersion = fields.protocolVersion;
  if (typeof protocolVersion !== "number" || !Number.isFinite(protocolVersion)) fail("hello.protocolVersion is not a number");
  if (protocolVersion !== currentVersion) {
    return {
      type: "hello",
      protocolVersion,
      appVersion: typeof fields.appVersion === "string" ? fields.appVersion.slice(0, MAX_SHORT_STRING) : "(unknown)",
      runnerId: typeof fields.runnerId === "string" ? fields.runnerId.slice(0, MAX_SHORT_STRING) : "(unknown)",
      pid: 0,
      poolDefined: false,
    };
  }
  const pid = fields.pid;
  if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid < 0) fail("hello.pid is not a process id");
  const hello: HelloMessage = {
    type: "hello",
    protocolVersion,
    appVersion: string(fields.appVersion, "hello.appVersion"),
    runnerId: string(fields.runnerId, "hello.runnerId"),
    pid,
    poolDefined: boolean(fields.poolDefined, "hello.poolDefined"),
  };
  const entryError = optionalString(fields.entryError, "hello.entryError", 64 * 1024);
  if (entryError !== undefined) hello.entryError = entryError;
  if (fields.threads !== undefined) hello.threads = threadNumber(fields.threads, "hello.threads");
  return hello;
}

/** Checks a control message a runner sent (everything but results, which have their own frame). */
export function validateRunnerControl(value: unknown, currentVersion: number): RunnerControlMessage {
  const fields = record(value, "message");
  switch (fields.type) {
    case "hello":
      return validateHello(fields, currentVersion);
    case "log": {
      const message: LogMessage = {
        type: "log",
        level: oneOf<LogMessage["level"]>(fields.level, LOG_LEVELS, "log.level"),
        text: string(fields.text, "log.text", Infinity),
      };
      if (fields.traceId !== undefined || fields.spanId !== undefined) {
        message.traceId = hexId(fields.traceId, 32, "log.traceId");
        message.spanId = hexId(fields.spanId, 16, "log.spanId");
      }
      if (fields.thread !== undefined) message.thread = threadNumber(fields.thread, "log.thread");
      return message;
    }
    case "idle-check-reply":
      return { type: "idle-check-reply", checkId: id(fields.checkId, "idle-check-reply.checkId"), shutdown: boolean(fields.shutdown, "idle-check-reply.shutdown") };
    default:
      return fail(`unknown message type ${describeValue(fields.type)} from a runner`);
  }
}

/** Checks a control message the parent sent (everything but calls, which have their own frame). */
export function validateParentControl(value: unknown): ParentControlMessage {
  const fields = record(value, "message");
  switch (fields.type) {
    case "welcome":
      return { type: "welcome" };
    case "refuse":
      return { type: "refuse", reason: string(fields.reason, "refuse.reason", 64 * 1024) };
    case "cancel":
      return {
        type: "cancel",
        callId: id(fields.callId, "cancel.callId"),
        reason: oneOf<CancelMessage["reason"]>(fields.reason, CANCEL_REASONS, "cancel.reason"),
      };
    case "idle-check":
      return { type: "idle-check", checkId: id(fields.checkId, "idle-check.checkId") };
    case "shutdown":
      return { type: "shutdown", reason: string(fields.reason, "shutdown.reason") };
    default:
      return fail(`unknown message type ${describeValue(fields.type)} from the parent`);
  }
}

/** Checks an error a runner reported, causes included. */
export function validateSerializedError(value: unknown, what = "result.error", depth = 0): SerializedError {
  const fields = record(value, what);
  const stack = fields.stack;
  if (stack !== undefined && typeof stack !== "string") fail(`${what}.stack is not a string`);
  const properties = fields.properties;
  if (properties !== undefined) record(properties, `${what}.properties`);
  const error: SerializedError = {
    kind: oneOf<SerializedError["kind"]>(fields.kind, ERROR_KINDS, `${what}.kind`),
    name: string(fields.name, `${what}.name`),
    message: string(fields.message, `${what}.message`, Infinity),
    stack,
  };
  if (properties !== undefined) error.properties = properties as Record<string, unknown>;
  const cause = fields.cause;
  if (cause !== undefined) {
    if (depth >= MAX_CAUSE_DEPTH) fail(`${what} has causes nested deeper than ${MAX_CAUSE_DEPTH}`);
    const causeFields = record(cause, `${what}.cause`);
    error.cause = "kind" in causeFields ? validateSerializedError(causeFields, `${what}.cause`, depth + 1) : { value: causeFields.value };
  }
  return error;
}

/**
 * Checks a call's trace context: an object of at most
 * MAX_TRACE_CONTEXT_FIELDS header-like names to strings of at most
 * MAX_TRACE_CONTEXT_VALUE characters. What comes out is a fresh object
 * without a prototype, so no field name can reach Object.prototype.
 */
export function validateTraceContext(value: unknown, what = "call.traceContext"): TraceContextCarrier {
  const fields = record(value, what);
  const names = Object.keys(fields);
  if (names.length === 0 || names.length > MAX_TRACE_CONTEXT_FIELDS) fail(`${what} has ${names.length} fields (1 to ${MAX_TRACE_CONTEXT_FIELDS} allowed)`);
  const carrier: TraceContextCarrier = Object.create(null) as TraceContextCarrier;
  for (const name of names) {
    if (!TRACE_CONTEXT_FIELD_NAME.test(name)) fail(`${what} has a field named ${describeValue(name)}, not a header name`);
    carrier[name] = string(fields[name], `${what}.${name}`, MAX_TRACE_CONTEXT_VALUE);
  }
  return carrier;
}

/**
 * The part of a propagator's output the protocol can carry, or undefined when
 * nothing is left: the parent sends only what a runner accepts, so an unusual
 * propagator loses a field rather than breaking the runner's connection.
 */
export function sendableTraceContext(carrier: Record<string, unknown>): TraceContextCarrier | undefined {
  let sendable: TraceContextCarrier | undefined;
  let count = 0;
  for (const name of Object.keys(carrier)) {
    const value = carrier[name];
    if (count === MAX_TRACE_CONTEXT_FIELDS || typeof value !== "string" || value.length > MAX_TRACE_CONTEXT_VALUE || !TRACE_CONTEXT_FIELD_NAME.test(name)) continue;
    (sendable ??= Object.create(null) as TraceContextCarrier)[name] = value;
    count += 1;
  }
  return sendable;
}
