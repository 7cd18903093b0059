/**
 * Encoding of protocol messages. V8's serializer (the structured-clone
 * algorithm Node ships) is used because it already round-trips what users pass
 * around - Date, Map, Set, BigInt, RegExp, typed arrays and Buffers as raw
 * bytes, undefined, cycles - and refuses functions and symbols, at native
 * speed and with no dependency.
 */
import { deserialize, serialize } from "node:v8";
import { SerializationError } from "../errors.js";
import { DEFAULT_MAX_PAYLOAD, type ParentMessage, type RunnerMessage, type SerializedError } from "./messages.js";

/**
 * Encodes one message into a binary frame. Throws `SerializationError` when a
 * value cannot be cloned or the frame exceeds `maxPayload`, before anything is sent.
 */
export function encodeMessage(message: ParentMessage | RunnerMessage, maxPayload = DEFAULT_MAX_PAYLOAD): Buffer {
  let frame: Buffer;
  try {
    frame = serialize(message);
  } catch (error) {
    throw new SerializationError(`cannot serialize ${describe(message)}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (frame.byteLength > maxPayload) {
    throw new SerializationError(
      `${describe(message)} is ${frame.byteLength} bytes, over maxPayload (${maxPayload} bytes)`,
    );
  }
  return frame;
}

export function decodeMessage<T extends ParentMessage | RunnerMessage>(frame: Buffer): T {
  return deserialize(frame) as T;
}

function describe(message: ParentMessage | RunnerMessage): string {
  switch (message.type) {
    case "call":
      return `the arguments of "${message.functionId}"`;
    case "result":
      return "the result";
    default:
      return `the ${message.type} message`;
  }
}

/** Turns anything thrown into a SerializedError, keeping what can be kept. */
export function serializeError(
  thrown: unknown,
  kind: SerializedError["kind"] = "thrown",
  depth = 0,
): SerializedError {
  if (!(thrown instanceof Error)) {
    return { kind, name: "NonErrorThrown", message: safeString(thrown), properties: cloneable({ value: thrown }) };
  }
  const properties: Record<string, unknown> = {};
  for (const key of Object.keys(thrown)) {
    if (key === "cause") continue;
    properties[key] = (thrown as unknown as Record<string, unknown>)[key];
  }
  const serialized: SerializedError = {
    kind,
    name: thrown.name,
    message: thrown.message,
    stack: thrown.stack,
    properties: cloneable(properties),
  };
  if (thrown.cause !== undefined && depth < 8) {
    serialized.cause =
      thrown.cause instanceof Error
        ? serializeError(thrown.cause, "thrown", depth + 1)
        : (cloneable({ value: thrown.cause }) as { value: unknown });
  }
  return serialized;
}

/** Keeps only the entries that survive structured clone, so one odd property never loses the error. */
function cloneable(record: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    try {
      serialize(value);
      kept[key] = value;
    } catch {
      kept[key] = safeString(value);
    }
  }
  return kept;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
