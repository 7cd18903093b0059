/**
 * The codec's fast path (compact-frames.ts): calls and results whose values
 * need no structured clone are written by hand. Whichever path a value takes,
 * what the other side decodes must be what V8's structured clone gives
 * (property-based, against `deserialize(serialize(value))`), and a compact
 * frame that does not parse is a ProtocolError, never a crash.
 */
import fc from "fast-check";
import { isDeepStrictEqual } from "node:util";
import { deserialize, serialize } from "node:v8";
import { describe, expect, it } from "vitest";
import { decodeParentMessage, decodeRunnerMessage, encodeMessage } from "../../src/protocol/codec.js";
import { ProtocolError } from "../../src/protocol/validate.js";

const SEED = Number(process.env.FLAME_FUZZ_SEED ?? 20_261_202);
const runs = (bounded: number) => ({ seed: SEED, numRuns: process.env.FLAME_FUZZ_RUNS ? Number(process.env.FLAME_FUZZ_RUNS) : bounded });

/** Primitives of every kind the fast path takes, and near misses it must not (long strings, BigInt). */
const primitive = fc.oneof(
  fc.constantFrom(undefined, null, true, false, 0, -0, NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE),
  fc.double(),
  fc.integer(),
  fc.string({ unit: "binary", maxLength: 60 }),
  fc.string({ unit: "grapheme-ascii", minLength: 4_090, maxLength: 4_100 }),
  fc.string({ unit: fc.constantFrom("\ud800", "\udfff", "é", "\u00ff", "\u0100", "a"), maxLength: 20 }),
  fc.bigInt(),
);
/** Anything structured clone takes, primitives mixed in. */
const anyValue = fc.oneof(primitive, fc.anything({ maxDepth: 2, maxKeys: 3, stringUnit: "binary", withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true }));
const args = fc.oneof(fc.array(primitive, { maxLength: 20 }), fc.array(anyValue, { maxLength: 5 }), fc.array(primitive, { maxLength: 3 }).map((values) => Object.assign(values, { extra: 1 })), fc.constant([, 1] as unknown[]));

const structuredClone = (value: unknown) => deserialize(serialize(value));

describe("the codec's compact frames", () => {
  it("a call's arguments decode as structured clone gives them, on either path", () => {
    fc.assert(
      fc.property(args, fc.boolean(), fc.option(fc.integer({ min: 0, max: 1e6 }), { nil: undefined }), (callArgs, child, timeout) => {
        const frame = encodeMessage({ type: "call", callId: 7, functionId: "fn\u{1F600}", args: callArgs, ...(child ? { child } : {}), ...(timeout !== undefined ? { timeout } : {}) });
        const decoded = decodeParentMessage(frame);
        expect(decoded.type === "call" && isDeepStrictEqual(decoded.args, structuredClone(callArgs))).toBe(true);
        expect(decoded).toMatchObject({ type: "call", callId: 7, functionId: "fn\u{1F600}" });
        expect(decoded.type === "call" && decoded.child).toBe(child ? true : undefined);
        expect(decoded.type === "call" && decoded.timeout).toBe(timeout);
      }),
      runs(400),
    );
  });

  it("a result's value decodes as structured clone gives it, on either path", () => {
    fc.assert(
      fc.property(anyValue, fc.maxSafeNat(), (value, callId) => {
        const decoded = decodeRunnerMessage(encodeMessage({ type: "result", callId, ok: true, value }));
        expect(decoded.type === "result" && decoded.ok && decoded.callId === callId && isDeepStrictEqual(decoded.value, structuredClone(value))).toBe(true);
      }),
      runs(400),
    );
  });

  it("takes the fast path for primitives only", () => {
    const kind = (frame: Buffer) => frame[0];
    expect(kind(encodeMessage({ type: "call", callId: 1, functionId: "f", args: [] }))).toBe(4);
    expect(kind(encodeMessage({ type: "call", callId: 1, functionId: "f", args: [1, "a", null, undefined, true, "\ud800"] }))).toBe(4);
    expect(kind(encodeMessage({ type: "call", callId: 1, functionId: "f", args: [{}] }))).toBe(1);
    expect(kind(encodeMessage({ type: "call", callId: 1, functionId: "f", args: [1n] }))).toBe(1);
    expect(kind(encodeMessage({ type: "call", callId: 1, functionId: "f", args: [], traceContext: { traceparent: "x" } }))).toBe(1);
    expect(kind(encodeMessage({ type: "result", callId: 1, ok: true, value: "done" }))).toBe(5);
    expect(kind(encodeMessage({ type: "result", callId: 1, ok: true, value: [1] }))).toBe(2);
    expect(kind(encodeMessage({ type: "result", callId: 1, ok: false, error: { kind: "thrown", name: "E", message: "m" } }))).toBe(2);
  });

  it("with its arguments left in the frame, a compact call still gives its header", () => {
    const frame = encodeMessage({ type: "call", callId: 3, functionId: "f", args: [1, 2], child: true });
    expect(decodeParentMessage(frame, { args: false })).toEqual({ type: "call", callId: 3, functionId: "f", args: [], child: true });
  });

  it("random bytes behind a compact kind decode to a valid message or fail with ProtocolError", () => {
    const valid = [encodeMessage({ type: "call", callId: 5, functionId: "fn", args: [1, "two", null] }), encodeMessage({ type: "result", callId: 5, ok: true, value: "x" })];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.tuple(fc.constantFrom(4, 5), fc.uint8Array({ maxLength: 80 })).map(([kind, bytes]) => Buffer.concat([Buffer.of(kind), bytes])),
          // A valid frame cut short or with a byte changed.
          fc.tuple(fc.constantFrom(...valid), fc.nat(), fc.nat({ max: 255 })).map(([frame, at, byte]) => {
            const copy = Buffer.from(frame);
            copy[1 + (at % (copy.length - 1))] = byte;
            return copy;
          }),
          fc.tuple(fc.constantFrom(...valid), fc.nat()).map(([frame, at]) => frame.subarray(0, 1 + (at % (frame.length - 1)))),
        ),
        (frame) => {
          for (const decode of [decodeParentMessage, decodeRunnerMessage] as const) {
            try {
              decode(frame);
            } catch (error) {
              expect(error).toBeInstanceOf(ProtocolError);
            }
          }
        },
      ),
      runs(500),
    );
  });
});
