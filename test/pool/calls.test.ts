import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CallAbortedError,
  PoolStoppedError,
  RemoteError,
  SerializationError,
  UnknownFunctionError,
} from "../../src/index.js";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "../support/backends.js";
import { keepProcessesAcrossTests } from "../support/no-leftover-processes.js";
import { waitFor } from "../support/processes.js";

keepProcessesAcrossTests();

const castErrors: Error[] = [];
const made = makePool({
  name: "calls",
  min: 1,
  max: 1,
  backend: testProcessBackend(),
  onCastError: (error) => castErrors.push(error),
});
const { pool, echo, add, fail, returnFunction, sleep, waitForAbort } = made;
// Defined only in the parent: the runner's copy of the app does not have it.
const parentOnly = pool.define("parentOnly", () => "never runs");

beforeAll(() => pool.start());
afterAll(() => pool.stop());

describe("values cross the wire with structured-clone fidelity", () => {
  it("round-trips Date, Map, Set, BigInt, typed arrays, Buffers, undefined and nesting", async () => {
    const value = {
      date: new Date("2024-02-29T12:00:00Z"),
      map: new Map<unknown, unknown>([["k", { nested: [1, undefined, null] }], [2, new Set([3n])]]),
      set: new Set(["a", "b"]),
      big: 2n ** 70n,
      floats: new Float64Array([1.5, -0]),
      bytes: new Uint8Array([0, 255]),
      buffer: Buffer.from("héllo"),
      missing: undefined,
      regexp: /fl(a)me/giu,
      deep: { a: { b: { c: [new Date(0)] } } },
    };
    const back = (await echo(value)) as typeof value;
    expect(back).toEqual(value);
    expect(Buffer.isBuffer(back.buffer)).toBe(true);
    expect(back.floats).toBeInstanceOf(Float64Array);
    expect("missing" in back).toBe(true);
    const big = Buffer.alloc(1024 * 1024, 7);
    expect(((await echo(big)) as Buffer).equals(big)).toBe(true);
  });

  it("rejects unsendable arguments with SerializationError before anything is sent", async () => {
    const before = pool.stats().completed;
    await expect(echo({ callback: () => 1 } as unknown)).rejects.toBeInstanceOf(SerializationError);
    await expect(echo(Symbol("nope") as unknown)).rejects.toThrow(/cannot serialize the arguments of "echo"/);
    expect(pool.stats().completed).toBe(before);
    expect(pool.stats().inFlight).toBe(0);
  });

  it("rejects an unsendable result with SerializationError", async () => {
    await expect(returnFunction()).rejects.toBeInstanceOf(SerializationError);
    await expect(add(2, 3)).resolves.toBe(5);
  });
});

describe("errors keep what users debug with", () => {
  it("a thrown error keeps its name, message, stack, cause and own properties", async () => {
    const error = (await fail("teapot").catch((e: unknown) => e)) as RemoteError & Record<string, unknown>;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error.code).toBe("FLAME_REMOTE_ERROR");
    expect(error.remoteName).toBe("TypeError");
    expect(error.message).toBe("teapot");
    expect(error.remoteCode).toBe("E_TEAPOT");
    expect(error.statusCode).toBe(418);
    expect(error.details).toEqual({ when: new Date(0), tags: new Set(["a"]) });
    expect(error.remoteStack).toMatch(/fixtures\/app\.ts/);
    expect(error.stack).toMatch(/RemoteError \[TypeError\]: teapot/);
    expect(error.cause).toBeInstanceOf(RemoteError);
    expect((error.cause as RemoteError).remoteName).toBe("RangeError");
    expect((error.cause as RemoteError).message).toBe("root cause");
  });

  it("calling an id the runner does not have names the id", async () => {
    const error = await parentOnly().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownFunctionError);
    expect((error as Error).message).toMatch(/no function "parentOnly"/);
  });
});

describe("cast and placeChild", () => {
  it("cast runs without waiting and reports failures to onCastError, never as unhandled rejections", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const completed = pool.stats().completed;
      pool.cast(add, [1, 1]);
      pool.cast(fail, ["cast failure"]);
      await waitFor(() => pool.stats().completed === completed + 1 && castErrors.length === 1, "both casts to finish");
      expect(castErrors[0]).toBeInstanceOf(RemoteError);
      expect(castErrors[0]!.message).toBe("cast failure");
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("placeChild holds a slot until stopped, and its signal aborts on the runner", async () => {
    const child = await pool.placeChild(waitForAbort, []);
    expect(child.runnerId).toMatch(/^calls-/);
    expect(pool.stats().inFlight).toBe(1);
    child.stop();
    await expect(child.done).rejects.toBeInstanceOf(CallAbortedError);
    await waitFor(() => pool.stats().inFlight === 0, "the child's slot to free up");
  });

  it("a child whose function returns resolves done; the caller's signal also stops a child", async () => {
    const finished = await pool.placeChild(sleep, [20]);
    await expect(finished.done).resolves.toMatchObject({ runnerId: finished.runnerId });
    const controller = new AbortController();
    const child = await pool.placeChild(waitForAbort, [], { signal: controller.signal });
    controller.abort();
    await expect(child.done).rejects.toBeInstanceOf(CallAbortedError);
  });
});

describe("stats and stop", () => {
  it("stats count runners, in-flight, queued, completed and failed", async () => {
    const before = pool.stats();
    await add(1, 1);
    await fail("x").catch(() => undefined);
    const after = pool.stats();
    expect(after.completed).toBe(before.completed + 1);
    expect(after.failed).toBe(before.failed + 1);
    expect(after.runners).toEqual({ total: 1, booting: 0, ready: 1, busy: 0, idle: 1, draining: 0, stopping: 0 });
  });

  it("stop lets in-flight calls finish, then refuses new calls with PoolStoppedError", async () => {
    const { pool: other, sleep: otherSleep } = makePool({ name: "stopping", max: 1, backend: testProcessBackend() });
    const running = otherSleep(200);
    await waitFor(() => other.stats().inFlight === 1, "the call to start");
    await other.stop();
    await expect(running).resolves.toMatchObject({ runnerId: expect.any(String) });
    await expect(otherSleep(1)).rejects.toBeInstanceOf(PoolStoppedError);
    expect(other.stats().runners.ready).toBe(0);
  });

  it("Symbol.asyncDispose stops the pool", async () => {
    let stoppedRunners = 0;
    {
      await using disposable = makePool({ name: "disposable", max: 1, backend: testProcessBackend(), onShrink: () => (stoppedRunners += 1) }).pool;
      await disposable.start();
      await disposable.resize({ min: 1 });
    }
    expect(stoppedRunners).toBe(1);
  });
});
