/**
 * The diagnostics_channel events, as docs/observability.md documents them,
 * from a real pool on the process backend.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import { afterEach, describe, expect, it } from "vitest";
import { RemoteError } from "../../src/index.js";
import { poolsStoppedAfterEach } from "../support/pools.js";

const makePool = poolsStoppedAfterEach();
const brokenEntry = new URL("../fixtures/broken-app.ts", import.meta.url).pathname;

const LIFECYCLE = ["flame-ts:runner:boot:start", "flame-ts:runner:boot:end", "flame-ts:runner:shrink", "flame-ts:runner:exit"] as const;
const CALL_EVENTS = ["start", "end", "asyncStart", "asyncEnd", "error"] as const;

type Seen = { channel: string; message: Record<string, unknown> };

/** Subscribes to every flame-ts channel; each message is copied as it is published (a call's context changes afterwards). */
function listen() {
  const seen: Seen[] = [];
  const waiters: { channel: string; resolve: (message: Record<string, unknown>) => void }[] = [];
  const record = (channel: string, message: unknown) => {
    const copy = { ...(message as Record<string, unknown>) };
    seen.push({ channel, message: copy });
    for (const waiter of waiters.splice(0)) {
      if (waiter.channel === channel) waiter.resolve(copy);
      else waiters.push(waiter);
    }
  };
  const lifecycle = LIFECYCLE.map((name) => {
    const handler = (message: unknown) => record(name, message);
    diagnosticsChannel.subscribe(name, handler);
    return () => diagnosticsChannel.unsubscribe(name, handler);
  });
  const calls = diagnosticsChannel.tracingChannel("flame-ts:call");
  const handlers = Object.fromEntries(CALL_EVENTS.map((event) => [event, (message: unknown) => record(`call:${event}`, message)]));
  calls.subscribe(handlers as never);
  unsubscribers.push(() => {
    for (const stop of lifecycle) stop();
    calls.unsubscribe(handlers as never);
  });
  return {
    seen,
    of: (channel: string) => seen.filter((entry) => entry.channel === channel).map((entry) => entry.message),
    /** The next message on `channel` (or the first, if it came already). */
    next: (channel: string) => {
      const already = seen.find((entry) => entry.channel === channel);
      if (already) return Promise.resolve(already.message);
      return new Promise<Record<string, unknown>>((resolve) => waiters.push({ channel, resolve }));
    },
  };
}

const unsubscribers: (() => void)[] = [];
afterEach(() => {
  for (const stop of unsubscribers.splice(0)) stop();
});

describe("diagnostics_channel", () => {
  it("publishes a runner's boot, the calls on it, its shrink and its exit", async () => {
    const events = listen();
    const { pool, add, fail } = makePool({ name: "channels", min: 0, max: 1 });
    await expect(add(1, 2)).resolves.toBe(3);
    await expect(fail("boom")).rejects.toBeInstanceOf(RemoteError);
    await pool.stop();

    const [bootStart] = events.of("flame-ts:runner:boot:start");
    expect(bootStart).toEqual({ pool: "channels", runnerId: expect.stringMatching(/^channels-/), backend: "process" });
    const runnerId = bootStart!.runnerId;
    expect(events.of("flame-ts:runner:boot:end")).toEqual([{ pool: "channels", runnerId, backend: "process", outcome: "ok", duration: expect.any(Number) }]);

    // A call: start and end (synchronous), then asyncStart and asyncEnd when it settles, with the runner it ran on.
    const callEvents = events.seen.filter((entry) => entry.channel.startsWith("call:"));
    const ofAdd = callEvents.filter((entry) => entry.message.functionId === "add");
    expect(ofAdd.map((entry) => entry.channel)).toEqual(["call:start", "call:end", "call:asyncStart", "call:asyncEnd"]);
    expect(ofAdd[0]!.message).toEqual({ pool: "channels", functionId: "add", argsLength: 2, child: false });
    expect(ofAdd[2]!.message).toEqual({ pool: "channels", functionId: "add", argsLength: 2, child: false, runnerId, result: 3 });
    const ofFail = callEvents.filter((entry) => entry.message.functionId === "fail");
    expect(ofFail.map((entry) => entry.channel)).toEqual(["call:start", "call:end", "call:error", "call:asyncStart", "call:asyncEnd"]);
    expect(ofFail[2]!.message).toMatchObject({ functionId: "fail", argsLength: 1, runnerId, error: expect.any(RemoteError) });
    // The arguments themselves are never published (only the result and the error, as Node defines them).
    expect(JSON.stringify(ofAdd.map((entry) => entry.message))).not.toMatch(/"args"|\[1,2\]/);

    expect(events.of("flame-ts:runner:shrink")).toEqual([{ pool: "channels", runnerId, reason: "stopped" }]);
    expect(events.of("flame-ts:runner:exit")).toEqual([
      { pool: "channels", runnerId, reason: "stopped", expected: true, detail: expect.stringContaining("shut down (stopped)") },
    ]);
  });

  it("publishes a runner that dies on its own as an unexpected exit", async () => {
    const events = listen();
    const { crash } = makePool({ name: "channels-crash", min: 0, max: 1 });
    await expect(crash()).rejects.toMatchObject({ code: "FLAME_RUNNER_EXITED" });
    const exit = await events.next("flame-ts:runner:exit");
    expect(exit).toMatchObject({ pool: "channels-crash", reason: "exited", expected: false, detail: expect.any(String) });
    expect(events.of("flame-ts:runner:shrink")).toEqual([]);
  });

  it("publishes a failed boot with its error", async () => {
    const events = listen();
    const { echo } = makePool({ name: "channels-broken", entry: brokenEntry, min: 0, max: 1, bootTimeout: 10_000 });
    await expect(echo(1)).rejects.toMatchObject({ code: "FLAME_BOOT_FAILED" });
    const end = await events.next("flame-ts:runner:boot:end");
    expect(end).toMatchObject({ pool: "channels-broken", backend: "process", outcome: "error", duration: expect.any(Number), error: expect.any(Error) });
    expect(String((end.error as Error).message)).toMatch(/missing configuration XYZ/);
  });

  it("publishes calls only to subscribers that are there when the call is made", async () => {
    const { pool, add } = makePool({ name: "channels-late", min: 1, max: 1 });
    await pool.start();
    await add(1, 1);
    const events = listen();
    await add(2, 2);
    expect(events.of("call:start")).toEqual([{ pool: "channels-late", functionId: "add", argsLength: 2, child: false }]);
  });
});
