/**
 * The fast path of the codec (protocol 4): calls and results whose values
 * need no structured clone are written by hand instead of through V8's
 * serializer, whose setup per frame (a serializer, a deserializer, their
 * headers) cost more than the values themselves for small calls.
 *
 * "Needs no structured clone" is decided conservatively: undefined, null,
 * booleans, numbers (as float64: -0, NaN and Infinity survive) and strings
 * (latin1 when every code unit fits a byte, UTF-16 otherwise, so lone
 * surrogates survive), and for a call up to MAX_COMPACT_ARGS of them as its
 * arguments. Anything else (an object, an array, a BigInt, a traced call, an
 * error result) takes V8's path, so the decoded value is what structured
 * clone would give either way (test/protocol/compact-frames.test.ts proves
 * it against V8's own round trip).
 *
 *   COMPACT CALL    [4] flags u8, callId f64, timeout f64, functionId (u16 length, UTF-16LE), count u8, values
 *   COMPACT RESULT  [5] callId f64, value
 *   value           tag u8, then: f64 (NUMBER), u32 length + latin1 bytes (LATIN1), u32 length + UTF-16LE bytes (UTF16)
 *
 * Decoding checks every length and tag: a frame that does not parse throws
 * ProtocolError, as any other frame would.
 */
import type { CallMessage, ResultMessage } from "./messages.js";
import { id, ProtocolError } from "./validate.js";

export const KIND_COMPACT_CALL = 4;
export const KIND_COMPACT_RESULT = 5;

/** Most arguments a compact call carries (more take V8's path). */
const MAX_COMPACT_ARGS = 16;
/** Longest string written by hand; a longer one takes V8's path (its copy is native). */
const MAX_COMPACT_STRING = 4_096;
/** Longest function id on the wire, on either path (ids are defined with at most 200 characters). */
export const MAX_FUNCTION_ID = 1_000;

/** A call's flag bit for a placed child, on either path. */
export const CALL_IS_CHILD = 1;

const TAG_UNDEFINED = 0;
const TAG_NULL = 1;
const TAG_FALSE = 2;
const TAG_TRUE = 3;
const TAG_NUMBER = 4;
const TAG_LATIN1 = 5;
const TAG_UTF16 = 6;

/** Bytes `value` takes, or -1 when it needs a structured clone. */
function compactSize(value: unknown): number {
  switch (typeof value) {
    case "undefined":
    case "boolean":
      return 1;
    case "number":
      return 9;
    case "string": {
      if (value.length > MAX_COMPACT_STRING) return -1;
      return 5 + (isLatin1(value) ? value.length : value.length * 2);
    }
    case "object":
      return value === null ? 1 : -1;
    default:
      return -1;
  }
}

function isLatin1(text: string): boolean {
  for (let index = 0; index < text.length; index += 1) if (text.charCodeAt(index) > 0xff) return false;
  return true;
}

function writeValue(frame: Buffer, offset: number, value: unknown): number {
  switch (typeof value) {
    case "undefined":
      frame[offset] = TAG_UNDEFINED;
      return offset + 1;
    case "boolean":
      frame[offset] = value ? TAG_TRUE : TAG_FALSE;
      return offset + 1;
    case "number":
      frame[offset] = TAG_NUMBER;
      frame.writeDoubleLE(value, offset + 1);
      return offset + 9;
    case "string": {
      const latin1 = isLatin1(value);
      frame[offset] = latin1 ? TAG_LATIN1 : TAG_UTF16;
      const length = frame.write(value, offset + 5, latin1 ? "latin1" : "utf16le");
      frame.writeUInt32LE(length, offset + 1);
      return offset + 5 + length;
    }
    default:
      frame[offset] = TAG_NULL;
      return offset + 1;
  }
}

/** A call frame written by hand, or undefined when the call needs V8's path. */
export function encodeCompactCall(message: CallMessage): Buffer | undefined {
  const { args, functionId, callId, timeout } = message;
  // Anything unusual (a test's hostile message included) is left to V8's path, which writes whatever it is given.
  if (message.traceContext || typeof functionId !== "string" || functionId.length > MAX_FUNCTION_ID || typeof callId !== "number") return undefined;
  if (timeout !== undefined && typeof timeout !== "number") return undefined;
  if (!Array.isArray(args) || args.length > MAX_COMPACT_ARGS) return undefined;
  let size = 1 + 1 + 8 + 8 + 2 + functionId.length * 2 + 1;
  for (let index = 0; index < args.length; index += 1) {
    // A hole reads as undefined but decodes as a hole in structured clone: V8's path keeps it.
    if (!(index in args)) return undefined;
    const bytes = compactSize(args[index]);
    if (bytes < 0) return undefined;
    size += bytes;
  }
  // Extra properties on the array (args.extra = 1) are kept by structured clone, not here.
  if (Object.keys(args).length !== args.length || Object.getPrototypeOf(args) !== Array.prototype) return undefined;
  const frame = Buffer.allocUnsafe(size);
  frame[0] = KIND_COMPACT_CALL;
  frame[1] = message.child ? CALL_IS_CHILD : 0;
  frame.writeDoubleLE(message.callId, 2);
  frame.writeDoubleLE(message.timeout ?? Infinity, 10);
  frame.writeUInt16LE(functionId.length, 18);
  let offset = 20 + frame.write(functionId, 20, "utf16le");
  frame[offset++] = args.length;
  for (const value of args) offset = writeValue(frame, offset, value);
  return frame;
}

/** A successful result written by hand, or undefined when its value needs V8's path. */
export function encodeCompactResult(message: ResultMessage): Buffer | undefined {
  if (!message.ok || typeof message.callId !== "number") return undefined;
  const bytes = compactSize(message.value);
  if (bytes < 0) return undefined;
  const frame = Buffer.allocUnsafe(9 + bytes);
  frame[0] = KIND_COMPACT_RESULT;
  frame.writeDoubleLE(message.callId, 1);
  writeValue(frame, 9, message.value);
  return frame;
}

/** Reads values from a compact frame, checking every length against the frame's end. */
class CompactReader {
  offset: number;

  constructor(
    private readonly frame: Buffer,
    start: number,
  ) {
    this.offset = start;
  }

  need(bytes: number, what: string): void {
    if (this.offset + bytes > this.frame.byteLength) throw new ProtocolError(`a compact frame is truncated before its ${what}`);
  }

  byte(what: string): number {
    this.need(1, what);
    return this.frame[this.offset++]!;
  }

  double(what: string): number {
    this.need(8, what);
    const value = this.frame.readDoubleLE(this.offset);
    this.offset += 8;
    return value;
  }

  utf16(units: number, what: string): string {
    this.need(units * 2, what);
    const text = this.frame.toString("utf16le", this.offset, this.offset + units * 2);
    this.offset += units * 2;
    return text;
  }

  value(what: string): unknown {
    const tag = this.byte(what);
    switch (tag) {
      case TAG_UNDEFINED:
        return undefined;
      case TAG_NULL:
        return null;
      case TAG_FALSE:
        return false;
      case TAG_TRUE:
        return true;
      case TAG_NUMBER:
        return this.double(what);
      case TAG_LATIN1:
      case TAG_UTF16: {
        this.need(4, what);
        const length = this.frame.readUInt32LE(this.offset);
        this.offset += 4;
        if (length > MAX_COMPACT_STRING * 2 || (tag === TAG_UTF16 && length % 2 !== 0)) throw new ProtocolError(`a compact frame has a string of ${length} bytes in its ${what}`);
        this.need(length, what);
        const end = this.offset + length;
        const text = this.frame.toString(tag === TAG_LATIN1 ? "latin1" : "utf16le", this.offset, end);
        this.offset = end;
        return text;
      }
      default:
        throw new ProtocolError(`a compact frame has a value of unknown tag ${tag} in its ${what}`);
    }
  }

  end(what: string): void {
    if (this.offset !== this.frame.byteLength) throw new ProtocolError(`a compact ${what} frame has ${this.frame.byteLength - this.offset} bytes after its end`);
  }
}

/** Reads a compact call frame; with `withArgs` false its arguments are left unread (args: []). */
export function readCompactCall(frame: Buffer, withArgs: boolean): CallMessage {
  const reader = new CompactReader(frame, 1);
  const flags = reader.byte("flags");
  if ((flags & ~CALL_IS_CHILD) !== 0) throw new ProtocolError(`a compact call has unknown flags ${flags}`);
  const callId = id(reader.double("call id"), "call.callId");
  const timeout = reader.double("timeout");
  if (!(timeout >= 0)) throw new ProtocolError(`call ${callId} has an invalid timeout`);
  reader.need(2, "function id");
  const length = frame.readUInt16LE(reader.offset);
  reader.offset += 2;
  if (length === 0 || length > MAX_FUNCTION_ID) throw new ProtocolError(`call ${callId} has no valid function id`);
  const functionId = reader.utf16(length, "function id");
  const call: CallMessage = { type: "call", callId, functionId, args: [] };
  if (flags & CALL_IS_CHILD) call.child = true;
  if (timeout !== Infinity) call.timeout = timeout;
  const count = reader.byte("argument count");
  if (count > MAX_COMPACT_ARGS) throw new ProtocolError(`call ${callId} has ${count} compact arguments`);
  if (!withArgs) return call;
  const args: unknown[] = [];
  for (let index = 0; index < count; index += 1) args.push(reader.value("arguments"));
  reader.end("call");
  call.args = args;
  return call;
}

/** Reads a compact result frame. */
export function readCompactResult(frame: Buffer): ResultMessage {
  const reader = new CompactReader(frame, 1);
  const callId = id(reader.double("call id"), "result.callId");
  const value = reader.value("result");
  reader.end("result");
  return { type: "result", callId, ok: true, value };
}
