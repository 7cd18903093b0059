/**
 * The trace context a call frame carries (protocol 3): written only when
 * present, checked like every other field on the way in (names, types,
 * sizes), and the parent only ever sends what a runner accepts.
 * Property-based with fast-check, seeded like test/protocol/codec.test.ts.
 */
import fc from "fast-check";
import { DefaultSerializer } from "node:v8";
import { describe, expect, it } from "vitest";
import { decodeParentMessage, encodeMessage } from "../../src/protocol/codec.js";
import { ProtocolError, sendableTraceContext, validateTraceContext } from "../../src/protocol/validate.js";

const SEED = Number(process.env.FLAME_FUZZ_SEED ?? 20_261_202);
const runs = (bounded: number): fc.Parameters<unknown> => ({ seed: SEED, numRuns: process.env.FLAME_FUZZ_RUNS ? Number(process.env.FLAME_FUZZ_RUNS) : bounded });

const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/** A CALL frame with flag 2 (trace context) laid out field by field, so the carrier can be anything. */
function tracedCallFrame(traceContext: unknown, flags = 2): Buffer {
  const serializer = new DefaultSerializer();
  serializer.writeRawBytes(Buffer.of(1));
  serializer.writeHeader();
  serializer.writeDouble(7);
  serializer.writeUint32(flags);
  serializer.writeDouble(Infinity);
  serializer.writeValue("f");
  serializer.writeValue(traceContext);
  serializer.writeValue([1]);
  return serializer.releaseBuffer();
}

function refused(frame: Buffer): boolean {
  try {
    decodeParentMessage(frame);
  } catch (error) {
    if (error instanceof ProtocolError) return true;
    throw new Error(`threw ${String(error)} instead of a ProtocolError`, { cause: error });
  }
  return false;
}

describe("a call's trace context on the wire", () => {
  it("round-trips, alone or with the child flag", () => {
    const traceContext = { traceparent: TRACEPARENT, tracestate: "vendor=abc" };
    for (const child of [false, true]) {
      const decoded = decodeParentMessage(encodeMessage({ type: "call", callId: 7, functionId: "f", args: [1], traceContext, ...(child ? { child } : {}) }));
      expect(decoded).toMatchObject({ type: "call", callId: 7, functionId: "f", args: [1] });
      expect(decoded.type === "call" && { ...decoded.traceContext }).toEqual(traceContext);
      expect(decoded.type === "call" && decoded.child).toBe(child ? true : undefined);
    }
    expect(tracedCallFrame(traceContext)).toEqual(encodeMessage({ type: "call", callId: 7, functionId: "f", args: [1], traceContext }));
  });

  it("costs an untraced call nothing: its frame is what protocol 2 sent", () => {
    const frame = encodeMessage({ type: "call", callId: 7, functionId: "f", args: [1] });
    const untraced = decodeParentMessage(frame);
    expect(untraced).not.toHaveProperty("traceContext");
    expect(frame[1 + 2 + 8]).toBe(0); // kind, V8 header (2 bytes), call id: then the flags, all clear
  });

  it("comes out without a prototype, so a field named after Object.prototype's members is only a field", () => {
    const decoded = decodeParentMessage(tracedCallFrame({ traceparent: TRACEPARENT, constructor: "x", toString: "y" }));
    expect(decoded.type === "call" && Object.getPrototypeOf(decoded.traceContext)).toBeNull();
    expect(decoded.type === "call" && { ...decoded.traceContext }).toEqual({ traceparent: TRACEPARENT, constructor: "x", toString: "y" });
  });

  it.each([
    ["not an object", "traceparent"],
    ["an array", [TRACEPARENT]],
    ["null", null],
    ["empty", {}],
    ["a value that is not a string", { traceparent: 1 }],
    ["a value that is an object", { traceparent: { value: TRACEPARENT } }],
    ["a value that is a boxed string", { traceparent: new String(TRACEPARENT) }],
    ["a value over 8192 characters", { tracestate: "x".repeat(8_193) }],
    ["more than 8 fields", Object.fromEntries(Array.from({ length: 9 }, (_, index) => [`f${index}`, "v"]))],
    ["a field named __proto__", JSON.parse('{"__proto__": "x"}') as unknown],
    ["a field name with a space", { "trace parent": "x" }],
    ["an empty field name", { "": "x" }],
    ["a field name over 64 characters", { ["a".repeat(65)]: "x" }],
  ])("is refused when it is %s", (_what, traceContext) => {
    expect(refused(tracedCallFrame(traceContext))).toBe(true);
  });

  it("is refused when the flag promises one and the frame ends", () => {
    const serializer = new DefaultSerializer();
    serializer.writeRawBytes(Buffer.of(1));
    serializer.writeHeader();
    serializer.writeDouble(7);
    serializer.writeUint32(2);
    serializer.writeDouble(Infinity);
    serializer.writeValue("f");
    expect(refused(serializer.releaseBuffer())).toBe(true);
  });

  it("at its limits is accepted", () => {
    const fields = Object.fromEntries(Array.from({ length: 8 }, (_, index) => [`${"a".repeat(63)}${index}`, "x".repeat(8_192)]));
    const decoded = decodeParentMessage(tracedCallFrame(fields));
    expect(decoded.type === "call" && Object.keys(decoded.traceContext!)).toHaveLength(8);
  });

  it("anything in its place decodes to a valid carrier or is a ProtocolError", () => {
    const carrierLike = fc.oneof(
      fc.anything({ maxDepth: 2 }),
      fc.dictionary(fc.string({ maxLength: 70 }), fc.oneof(fc.string({ maxLength: 20 }), fc.anything({ maxDepth: 1 })), { maxKeys: 10 }),
    );
    fc.assert(
      fc.property(carrierLike, fc.integer({ min: 0, max: 3 }), (traceContext, flags) => {
        let decoded;
        try {
          decoded = decodeParentMessage(tracedCallFrame(traceContext, flags));
        } catch (error) {
          if (error instanceof ProtocolError) return;
          throw error;
        }
        // Accepted: then what came out passes the check again, unchanged.
        if (decoded.type === "call" && decoded.traceContext) expect(validateTraceContext(decoded.traceContext)).toEqual(decoded.traceContext);
      }),
      runs(300),
    );
  });
});

describe("what the parent sends", () => {
  it("is only what a runner accepts, whatever the propagator wrote", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 70 }), fc.oneof(fc.string({ maxLength: 9_000 }), fc.anything({ maxDepth: 1 })), { maxKeys: 12 }), (written) => {
        const sendable = sendableTraceContext(written);
        if (sendable === undefined) return;
        expect(() => validateTraceContext(sendable)).not.toThrow();
        const decoded = decodeParentMessage(encodeMessage({ type: "call", callId: 1, functionId: "f", args: [], traceContext: sendable }));
        expect(decoded.type === "call" && { ...decoded.traceContext }).toEqual({ ...sendable });
      }),
      runs(200),
    );
  });

  it("keeps W3C fields and drops what the protocol cannot carry", () => {
    expect({ ...sendableTraceContext({ traceparent: TRACEPARENT, tracestate: "a=b", "bad name": "x", count: 3 }) }).toEqual({ traceparent: TRACEPARENT, tracestate: "a=b" });
    expect(sendableTraceContext({})).toBeUndefined();
    expect(sendableTraceContext({ __proto__: "x" } as Record<string, unknown>)).toBeUndefined();
  });
});
