/**
 * Encoding and decoding of protocol frames. Values are written with V8's
 * serializer (the structured-clone algorithm Node ships) because it already
 * round-trips what users pass around - Date, Map, Set, BigInt, RegExp, typed
 * arrays and Buffers as raw bytes, undefined, cycles - and refuses functions
 * and symbols, at native speed and with no dependency.
 *
 * A frame is one kind byte, then a V8 stream:
 *   CONTROL  [0] header, message                      (hello, log, cancel, ...)
 *   CALL     [1] header, callId, flags, timeout, functionId, [traceContext], args
 *   RESULT   [2] header, callId, ok, value | error
 * or several frames that left in the same tick, in one WebSocket message
 * (protocol 4; coalesce.ts makes them):
 *   BATCH    [3] (uint32 LE length, frame)+          (two or more; no batch inside)
 * and calls and results whose values need no structured clone are written by
 * hand, without V8 (protocol 4; compact-frames.ts):
 *   COMPACT CALL [4], COMPACT RESULT [5]
 * Calls and results carry their id ahead of the user's values, so a value
 * that cannot be decoded (V8 encodes objects nested deeper than it can
 * decode) fails only its own call, never the connection. A frame whose first
 * byte is V8's version tag (0xFF) is a protocol-1 message: only its hello is
 * read, so an old runner meets a version mismatch rather than garbage.
 * A call's trace context is written only when its flag says so: an untraced
 * call pays nothing for it.
 *
 * Decoding checks every frame's shape (validate.ts) before anyone reads it;
 * a frame that fails throws ProtocolError, and its connection must be closed.
 */
import { DefaultDeserializer, DefaultSerializer, deserialize } from "node:v8";
import { SerializationError } from "../errors.js";
import {
  DEFAULT_MAX_PAYLOAD,
  PROTOCOL_VERSION,
  type CallMessage,
  type ParentMessage,
  type ResultMessage,
  type RunnerMessage,
} from "./messages.js";
import {
  CALL_IS_CHILD,
  encodeCompactCall,
  encodeCompactResult,
  KIND_COMPACT_CALL,
  KIND_COMPACT_RESULT,
  MAX_FUNCTION_ID,
  readCompactCall,
  readCompactResult,
} from "./compact-frames.js";
import {
  id,
  ProtocolError,
  validateHello,
  validateParentControl,
  validateRunnerControl,
  validateSerializedError,
  validateTraceContext,
} from "./validate.js";

const KIND_CONTROL = 0;
const KIND_CALL = 1;
const KIND_RESULT = 2;
const KIND_BATCH = 3;
const KIND_PROTOCOL_1 = 0xff;

const CALL_HAS_TRACE_CONTEXT = 2;
const KNOWN_CALL_FLAGS = CALL_IS_CHILD | CALL_HAS_TRACE_CONTEXT;
const KIND_BYTES = [Buffer.of(KIND_CONTROL), Buffer.of(KIND_CALL), Buffer.of(KIND_RESULT)] as const;


/** Node's own reader of a Buffer or typed array inside a V8 stream (not in its type declarations). */
const readHostView = (DefaultDeserializer.prototype as unknown as { _readHostObject(this: DefaultDeserializer): ArrayBufferView })._readHostObject;

/**
 * A deserializer whose Buffers and typed arrays own their bytes. Node's reads
 * them as views into the frame, and ws hands frames as slices of its read
 * buffer: a decoded Buffer's `.buffer` would show the bytes around it (other
 * calls' arguments) and keep the whole read buffer alive. Copying costs one
 * memcpy per binary value, nothing for frames without any.
 */
class IsolatingDeserializer extends DefaultDeserializer {
  _readHostObject(): ArrayBufferView {
    const view = readHostView.call(this);
    const own = new ArrayBuffer(view.byteLength);
    new Uint8Array(own).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    if (Buffer.isBuffer(view)) return Buffer.from(own);
    if (view instanceof DataView) return new DataView(own);
    const Typed = view.constructor as new (buffer: ArrayBuffer) => ArrayBufferView;
    return new Typed(own);
  }
}

/** Whether `frame` is a batch of frames (see forEachBatched). */
export function isBatch(frame: Buffer): boolean {
  return frame.byteLength > 0 && frame[0] === KIND_BATCH;
}

/** One WebSocket message carrying `frames` (two or more, none a batch), in order. */
export function encodeBatch(frames: readonly Buffer[]): Buffer {
  let size = 1;
  for (const frame of frames) size += 4 + frame.byteLength;
  const batch = Buffer.allocUnsafe(size);
  batch[0] = KIND_BATCH;
  let offset = 1;
  for (const frame of frames) {
    batch.writeUInt32LE(frame.byteLength, offset);
    offset += 4;
    frame.copy(batch, offset);
    offset += frame.byteLength;
  }
  return batch;
}

/**
 * The frames of a batch, in order. The whole batch is checked first: a
 * malformed one (truncated, a length past its end, fewer than two frames, a
 * batch inside) throws ProtocolError, so none of its frames is read.
 */
function batchedFrames(batch: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  let offset = 1;
  while (offset < batch.byteLength) {
    if (offset + 4 > batch.byteLength) throw new ProtocolError("a batch frame is truncated");
    const length = batch.readUInt32LE(offset);
    offset += 4;
    if (length < 2 || offset + length > batch.byteLength) throw new ProtocolError(`a batch frame holds a frame of ${length} bytes that does not fit`);
    const frame = batch.subarray(offset, offset + length);
    if (frame[0] === KIND_BATCH) throw new ProtocolError("a batch frame holds another batch");
    frames.push(frame);
    offset += length;
  }
  if (frames.length < 2) throw new ProtocolError(`a batch frame holds ${frames.length} frame(s), not two or more`);
  return frames;
}

/** Calls `visit` with each frame of a batch, in order, until it returns false; throws ProtocolError, before any visit, for a malformed batch. */
export function forEachBatched(batch: Buffer, visit: (frame: Buffer) => boolean | void): void {
  for (const frame of batchedFrames(batch)) if (visit(frame) === false) return;
}

/**
 * Reads one WebSocket message as both sides do: `visit` gets each frame of a
 * batch, or the message itself (undefined for a text message), until it
 * returns false. A malformed batch goes to `malformed` instead, and none of
 * its frames is read.
 */
export function readMessage(data: Buffer | undefined, visit: (frame: Buffer | undefined) => boolean | void, malformed: (error: ProtocolError) => void): void {
  if (!data || !isBatch(data)) {
    visit(data);
    return;
  }
  let frames: Buffer[];
  try {
    frames = batchedFrames(data);
  } catch (error) {
    malformed(error as ProtocolError);
    return;
  }
  for (const frame of frames) if (visit(frame) === false) return;
}

/** The frames a WebSocket message carries: its batch's, or itself (for peers off the hot path: tools and tests). */
export function framesOf(message: Buffer): Buffer[] {
  return isBatch(message) ? batchedFrames(message) : [message];
}

/** A call as the runner decodes it: `argsError` is set when its arguments could not be decoded. */
export type DecodedCall = CallMessage & { argsError?: string };
export type DecodedParentMessage = Exclude<ParentMessage, CallMessage> | DecodedCall;

/**
 * Encodes one message into a binary frame. Throws `SerializationError` when a
 * value cannot be cloned or the frame exceeds `maxPayload`, before anything is sent.
 */
export function encodeMessage(message: ParentMessage | RunnerMessage, maxPayload = DEFAULT_MAX_PAYLOAD): Buffer {
  let frame: Buffer;
  try {
    frame = serializeFrame(message);
  } catch (error) {
    throw new SerializationError(`cannot serialize ${describe(message)}: ${(error as Error).message}`, { cause: error });
  }
  if (frame.byteLength > maxPayload) {
    throw new SerializationError(`${describe(message)} is ${frame.byteLength} bytes, over maxPayload (${maxPayload} bytes)`);
  }
  return frame;
}

function serializeFrame(message: ParentMessage | RunnerMessage): Buffer {
  // Values that need no structured clone skip V8's serializer (compact-frames.ts).
  if (message.type === "call") {
    const compact = encodeCompactCall(message);
    if (compact) return compact;
  } else if (message.type === "result") {
    const compact = encodeCompactResult(message);
    if (compact) return compact;
  }
  const serializer = new DefaultSerializer();
  switch (message.type) {
    case "call":
      serializer.writeRawBytes(KIND_BYTES[KIND_CALL]);
      serializer.writeHeader();
      serializer.writeDouble(message.callId);
      serializer.writeUint32((message.child ? CALL_IS_CHILD : 0) | (message.traceContext ? CALL_HAS_TRACE_CONTEXT : 0));
      serializer.writeDouble(message.timeout ?? Infinity);
      serializer.writeValue(message.functionId);
      if (message.traceContext) serializer.writeValue(message.traceContext);
      serializer.writeValue(message.args);
      break;
    case "result":
      serializer.writeRawBytes(KIND_BYTES[KIND_RESULT]);
      serializer.writeHeader();
      serializer.writeDouble(message.callId);
      serializer.writeUint32(message.ok ? 1 : 0);
      serializer.writeValue(message.ok ? message.value : message.error);
      break;
    default:
      serializer.writeRawBytes(KIND_BYTES[KIND_CONTROL]);
      serializer.writeHeader();
      serializer.writeValue(message);
  }
  return serializer.releaseBuffer();
}

/** Decodes and checks a frame from a runner. Throws ProtocolError when it is not a valid message. */
export function decodeRunnerMessage(frame: unknown): RunnerMessage {
  if (Buffer.isBuffer(frame) && frame[0] === KIND_COMPACT_RESULT) return readCompactResult(frame);
  const reader = openFrame(frame);
  if (reader.kind === KIND_RESULT) return readResult(reader.deserializer);
  if (reader.kind === KIND_CONTROL) return validateRunnerControl(readEnvelope(reader.deserializer), PROTOCOL_VERSION);
  if (reader.kind === KIND_PROTOCOL_1) return readLegacyHello(frame as Buffer);
  throw new ProtocolError(`a runner sent a frame of unknown kind ${reader.kind}`);
}

/**
 * Decodes and checks a frame from the parent. Throws ProtocolError when it is
 * not a valid message. With `args: false` a call's arguments are left in the
 * frame (its `args` is empty): a runner whose calls run on worker threads
 * hands the frame to a thread, which decodes them there.
 */
export function decodeParentMessage(frame: unknown, options?: { args: boolean }): DecodedParentMessage {
  if (Buffer.isBuffer(frame) && frame[0] === KIND_COMPACT_CALL) return readCompactCall(frame, options?.args ?? true);
  const reader = openFrame(frame);
  if (reader.kind === KIND_CALL) return readCall(reader.deserializer, options?.args ?? true);
  if (reader.kind === KIND_CONTROL) return validateParentControl(readEnvelope(reader.deserializer));
  throw new ProtocolError(`the parent sent a frame of unknown kind ${reader.kind}`);
}

function openFrame(frame: unknown): { kind: number; deserializer: DefaultDeserializer } {
  if (!Buffer.isBuffer(frame)) throw new ProtocolError("a frame is not binary");
  if (frame.byteLength < 2) throw new ProtocolError(`a frame of ${frame.byteLength} bytes is too short`);
  const kind = frame[0]!;
  const deserializer = new IsolatingDeserializer(frame);
  if (kind === KIND_PROTOCOL_1) return { kind, deserializer };
  try {
    deserializer.readRawBytes(1);
    deserializer.readHeader();
  } catch (error) {
    throw new ProtocolError(`a frame has no valid header: ${(error as Error).message}`);
  }
  return { kind, deserializer };
}

/** The parts the protocol itself wrote: a failure here means the peer is broken, not the user's value. */
function readEnvelope(deserializer: DefaultDeserializer): unknown {
  try {
    return deserializer.readValue();
  } catch (error) {
    throw new ProtocolError(`a frame could not be decoded: ${(error as Error).message}`);
  }
}

function readNumber(deserializer: DefaultDeserializer, what: string): number {
  try {
    return deserializer.readDouble();
  } catch {
    throw new ProtocolError(`a frame is truncated before its ${what}`);
  }
}

function readFlags(deserializer: DefaultDeserializer, what: string): number {
  try {
    return deserializer.readUint32();
  } catch {
    throw new ProtocolError(`a frame is truncated before its ${what}`);
  }
}

function readCall(deserializer: DefaultDeserializer, withArgs: boolean): DecodedCall {
  const callId = id(readNumber(deserializer, "call id"), "call.callId");
  const flags = readFlags(deserializer, "call flags");
  if ((flags & ~KNOWN_CALL_FLAGS) !== 0) throw new ProtocolError(`call ${callId} has unknown flags ${flags}`);
  const timeout = readNumber(deserializer, "call timeout");
  if (!(timeout >= 0)) throw new ProtocolError(`call ${callId} has an invalid timeout`);
  const functionId = readEnvelope(deserializer);
  if (typeof functionId !== "string" || functionId.length === 0 || functionId.length > MAX_FUNCTION_ID) {
    throw new ProtocolError(`call ${callId} has no valid function id`);
  }
  const call: DecodedCall = { type: "call", callId, functionId, args: [] };
  if (flags & CALL_IS_CHILD) call.child = true;
  if (flags & CALL_HAS_TRACE_CONTEXT) call.traceContext = validateTraceContext(readEnvelope(deserializer));
  if (timeout !== Infinity) call.timeout = timeout;
  if (!withArgs) return call;
  let args: unknown;
  try {
    args = deserializer.readValue();
  } catch (error) {
    call.argsError = `the runner could not decode the arguments of "${functionId}": ${(error as Error).message}`;
    return call;
  }
  if (!Array.isArray(args)) throw new ProtocolError(`call ${callId} has arguments that are not an array`);
  call.args = args;
  return call;
}

function readResult(deserializer: DefaultDeserializer): ResultMessage {
  const callId = id(readNumber(deserializer, "call id"), "result.callId");
  const ok = readFlags(deserializer, "result status");
  if (ok > 1) throw new ProtocolError(`result ${callId} has an unknown status ${ok}`);
  let payload: unknown;
  try {
    payload = deserializer.readValue();
  } catch (error) {
    // The runner encoded a value this side cannot decode: that call fails, the connection stays.
    return {
      type: "result",
      callId,
      ok: false,
      error: {
        kind: "serialization",
        name: "SerializationError",
        message: `the parent could not decode the result: ${(error as Error).message}`,
      },
    };
  }
  if (ok === 1) return { type: "result", callId, ok: true, value: payload };
  return { type: "result", callId, ok: false, error: validateSerializedError(payload) };
}

/** Reads a protocol-1 hello, only so that the version check can refuse the runner by name. */
function readLegacyHello(frame: Buffer): RunnerMessage {
  let message: unknown;
  try {
    message = deserialize(frame);
  } catch (error) {
    throw new ProtocolError(`a frame could not be decoded: ${(error as Error).message}`);
  }
  const fields = message as Record<string, unknown> | null;
  if (typeof fields !== "object" || fields === null || fields.type !== "hello") {
    throw new ProtocolError("a runner sent a protocol-1 frame that is not a hello");
  }
  return validateHello(fields, PROTOCOL_VERSION);
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
