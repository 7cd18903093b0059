import { describe, expect, it } from "vitest";
import { decodeParentMessage, decodeRunnerMessage, encodeMessage } from "../../src/protocol/codec.js";

/** A frame as ws can hand it: a slice of a larger read buffer, with another frame's bytes right behind it. */
function sliceOfReadBuffer(frame: Buffer): Buffer {
  const read = Buffer.concat([Buffer.from("EARLIER-FRAME-"), frame, Buffer.from("NEXT-FRAME-SECRET")]);
  return read.subarray(14, 14 + frame.length);
}

describe("decoded binary values own their bytes", () => {
  it("a call's Buffer and typed-array arguments show nothing of the read buffer around their frame", () => {
    const args = [Buffer.from("mine"), new Float64Array([1.5, -2]), new DataView(new Uint8Array([7, 8, 9]).buffer), new Uint16Array([513])];
    const decoded = decodeParentMessage(sliceOfReadBuffer(encodeMessage({ type: "call", callId: 1, functionId: "f", args })));
    expect(decoded.type).toBe("call");
    const [buffer, floats, view, shorts] = (decoded as unknown as { args: [Buffer, Float64Array, DataView, Uint16Array] }).args;
    expect(Buffer.isBuffer(buffer)).toBe(true);
    expect(buffer.toString()).toBe("mine");
    expect(buffer.buffer.byteLength).toBe(4);
    expect(Buffer.from(buffer.buffer).toString("latin1")).not.toContain("SECRET");
    expect(floats).toBeInstanceOf(Float64Array);
    expect([...floats]).toEqual([1.5, -2]);
    expect(floats.buffer.byteLength).toBe(16);
    expect(view).toBeInstanceOf(DataView);
    expect([view.getUint8(0), view.getUint8(2)]).toEqual([7, 9]);
    expect(view.buffer.byteLength).toBe(3);
    expect([...shorts]).toEqual([513]);
  });

  it("so does a result's", () => {
    const decoded = decodeRunnerMessage(sliceOfReadBuffer(encodeMessage({ type: "result", callId: 3, ok: true, value: { image: Buffer.from([1, 2, 3]) } })));
    const value = (decoded as unknown as { value: { image: Buffer } }).value;
    expect([...value.image]).toEqual([1, 2, 3]);
    expect(value.image.buffer.byteLength).toBe(3);
  });
});
