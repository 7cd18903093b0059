/**
 * FLAME_PARENT's optional trace context: untrusted input on the runner,
 * checked like a call's trace context, and refused as a whole when invalid.
 */
import { describe, expect, it } from "vitest";
import { decodeRunnerEnv, encodeRunnerEnv, type RunnerBootInfo } from "../../src/protocol/runner-env.js";

const info: RunnerBootInfo = { parentUrl: "ws://127.0.0.1:1", runnerId: "p-1", pool: "p", token: "t", connectTimeout: 1_000, heartbeatInterval: 500 };
const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/** FLAME_PARENT as a parent that wrote `traceContext` as given would set it. */
function withTraceContext(traceContext: unknown): string {
  return Buffer.from(JSON.stringify({ ...info, traceContext }), "utf8").toString("base64url");
}

describe("FLAME_PARENT's traceContext", () => {
  it("round-trips, and is absent when the parent sent none", () => {
    expect(decodeRunnerEnv(encodeRunnerEnv({ ...info, traceContext: { traceparent, tracestate: "a=1" } })).traceContext).toEqual({ traceparent, tracestate: "a=1" });
    expect(decodeRunnerEnv(encodeRunnerEnv(info))).not.toHaveProperty("traceContext");
  });

  it.each([
    ["a string", traceparent],
    ["an array", [traceparent]],
    ["null", null],
    ["an empty object", {}],
    ["more than 8 fields", Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`f${i}`, "x"]))],
    ["a value that is not a string", { traceparent: 1 }],
    ["a value over 8 192 characters", { traceparent: "x".repeat(8_193) }],
    ["a name that is not a header name", { "trace parent": traceparent }],
    ["__proto__", JSON.parse(`{"__proto__": "${traceparent}"}`)],
  ])("is refused when it is %s", (_, traceContext) => {
    expect(() => decodeRunnerEnv(withTraceContext(traceContext))).toThrow(/FLAME_PARENT has an invalid "traceContext"/);
  });

  it("comes out as a fresh object without a prototype", () => {
    const decoded = decodeRunnerEnv(withTraceContext({ traceparent }));
    expect(Object.getPrototypeOf(decoded.traceContext)).toBeNull();
  });
});
