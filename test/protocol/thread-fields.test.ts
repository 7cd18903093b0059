/**
 * The protocol-4 fields of runner threads, checked like every field from a
 * socket or an environment: FLAME_PARENT's `threads`, hello's `threads`, a log
 * line's `thread`, and the `thread-exited` error kind.
 */
import { describe, expect, it } from "vitest";
import { decodeRunnerEnv, encodeRunnerEnv, type RunnerBootInfo } from "../../src/protocol/runner-env.js";
import { PROTOCOL_VERSION } from "../../src/protocol/messages.js";
import { validateRunnerControl, validateSerializedError } from "../../src/protocol/validate.js";

const info: RunnerBootInfo = { parentUrl: "ws://127.0.0.1:1", runnerId: "p-1", pool: "p", token: "t", connectTimeout: 1_000, heartbeatInterval: 500 };

function withThreads(threads: unknown): string {
  return Buffer.from(JSON.stringify({ ...info, threads }), "utf8").toString("base64url");
}

const hello = { type: "hello", protocolVersion: PROTOCOL_VERSION, appVersion: "a@1", runnerId: "p-1", pid: 42, poolDefined: true };

describe("runner thread fields", () => {
  it("FLAME_PARENT's threads round-trip, and invalid ones are refused as a whole", () => {
    const threads = { count: 4, abortGracePeriod: 5_000, resourceLimits: { maxOldGenerationSizeMb: 512, stackSizeMb: 4 } };
    expect(decodeRunnerEnv(encodeRunnerEnv({ ...info, threads })).threads).toEqual(threads);
    expect(decodeRunnerEnv(encodeRunnerEnv({ ...info, threads: { count: "auto", abortGracePeriod: 0 } })).threads).toEqual({ count: "auto", abortGracePeriod: 0 });
    expect(decodeRunnerEnv(encodeRunnerEnv(info)).threads).toBeUndefined();
    for (const bad of [null, 3, { count: 0, abortGracePeriod: 1 }, { count: 1.5, abortGracePeriod: 1 }, { count: "all", abortGracePeriod: 1 }, { count: 2 }, { count: 2, abortGracePeriod: -1 }, { count: 2, abortGracePeriod: 1, resourceLimits: { maxOldGenerationSizeMb: "big" } }, { count: 2, abortGracePeriod: 1, resourceLimits: { stackSizeMb: 0 } }]) {
      expect(() => decodeRunnerEnv(withThreads(bad)), JSON.stringify(bad)).toThrow(/invalid "threads"/);
    }
    // Unknown limits are dropped, not passed to Worker.
    expect(decodeRunnerEnv(withThreads({ count: 2, abortGracePeriod: 1, resourceLimits: { evil: 1 } })).threads).toEqual({ count: 2, abortGracePeriod: 1, resourceLimits: {} });
  });

  it("hello.threads and log.thread are thread counts from 1 to 1024", () => {
    expect(validateRunnerControl({ ...hello, threads: 8 }, PROTOCOL_VERSION)).toMatchObject({ threads: 8 });
    expect(validateRunnerControl(hello, PROTOCOL_VERSION)).not.toHaveProperty("threads");
    for (const bad of [0, -1, 1.5, 1_025, "2", null, Infinity]) {
      expect(() => validateRunnerControl({ ...hello, threads: bad }, PROTOCOL_VERSION)).toThrow(/hello.threads/);
      expect(() => validateRunnerControl({ type: "log", level: "info", text: "x", thread: bad }, PROTOCOL_VERSION)).toThrow(/log.thread/);
    }
    expect(validateRunnerControl({ type: "log", level: "warn", text: "x", thread: 3 }, PROTOCOL_VERSION)).toEqual({ type: "log", level: "warn", text: "x", thread: 3 });
  });

  it("thread-exited is an error kind a runner may report", () => {
    const error = { kind: "thread-exited", name: "ThreadExitedError", message: "it exited with code 7", properties: { thread: 2 } };
    expect(validateSerializedError(error)).toMatchObject(error);
    expect(() => validateSerializedError({ ...error, kind: "thread-crashed" })).toThrow(/kind/);
  });
});
