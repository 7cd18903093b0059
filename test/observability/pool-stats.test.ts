/**
 * pool.stats() for dashboards: boot counts and the queue-wait and
 * call-duration summaries, on the Scheduler's fast layer (a fake launch) and
 * on a real pool (ProcessBackend); and the boot span on the fast layer.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../../src/backends/backend.js";
import { BootError, type PoolOptions } from "../../src/index.js";
import { resolvePoolOptions } from "../../src/pool/options.js";
import { PendingCall } from "../../src/pool/pending-call.js";
import type { Runner } from "../../src/pool/runner.js";
import { Scheduler } from "../../src/pool/scheduler.js";
import { encodeMessage } from "../../src/protocol/codec.js";
import type { TraceContextCarrier } from "../../src/protocol/messages.js";
import { DurationSummary, RECENT_WINDOW } from "../../src/observability/duration-summary.js";
import { FakeConnection } from "../support/fake-connection.js";
import { makeTracedPool, finishedSpans, forgetSpans, registerTracing } from "../fixtures/traced-app.js";
import { testProcessBackend } from "../support/backends.js";
import { Deadlines } from "../../src/pool/deadlines.js";

const deadlines = new Deadlines();

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const backend: Backend = { name: "fake", provision: () => Promise.reject(new Error("unused")), terminate: async () => undefined, list: async () => [] };

/** A Scheduler whose boots are `launch`. */
function scheduler(launch: (runner: Runner, traceContext: TraceContextCarrier | undefined) => Promise<void>, options: Partial<PoolOptions> = {}) {
  const resolved = resolvePoolOptions({ name: "stats", max: 1, backend, log: false, ...options } as PoolOptions, { constructedIn: undefined, onRunner: false });
  return new Scheduler({ name: "stats", options: resolved, backend, bootTimeout: 30_000, appVersion: "test", log: silent, launch: (runner, _signal, traceContext) => launch(runner, traceContext) });
}

function connect(runner: Runner): FakeConnection {
  const connection = new FakeConnection();
  runner.markProvisioned({ runnerId: runner.id, providerId: runner.id });
  runner.attach(connection.asSocket(), 5_000);
  runner.markReady();
  return connection;
}

function submit(target: Scheduler, callId: number): Promise<unknown> {
  return new Promise((resolve, reject) =>
    target.submit(
      new PendingCall({
        callId,
        functionId: "work",
        frame: encodeMessage({ type: "call", callId, functionId: "work", args: [] }),
        poolName: "stats",
        child: false,
        executionTimeout: Infinity,
        deadlines,
        resolve,
        reject,
        onGiveUp: (call, reason) => target.giveUp(call, reason),
      }),
    ),
  );
}

beforeAll(async () => {
  await registerTracing();
});
afterAll(() => forgetSpans());

describe("DurationSummary", () => {
  it("keeps count, sum and max since the start, and percentiles over the recent window only", () => {
    const summary = new DurationSummary();
    expect(summary.snapshot()).toEqual({ count: 0, sum: 0, max: 0, p50: 0, p99: 0 });
    for (let i = 1; i <= 100; i++) summary.record(i);
    expect(summary.snapshot()).toEqual({ count: 100, sum: 5050, max: 100, p50: 50, p99: 99 });
    // A window's worth of fast samples pushes the slow ones out of the percentiles, not out of max.
    for (let i = 0; i < RECENT_WINDOW; i++) summary.record(1);
    expect(summary.snapshot()).toMatchObject({ count: 100 + RECENT_WINDOW, max: 100, p50: 1, p99: 1 });
  });
});

describe("the Scheduler's boot counts", () => {
  it("count boots started, succeeded and failed, and a boot in progress is started only", async () => {
    const boots: Array<{ runner: Runner; succeed(): void; fail(error: Error): void }> = [];
    const connections: FakeConnection[] = [];
    const target = scheduler(
      (runner) =>
        new Promise<void>((resolve, reject) => {
          boots.push({ runner, succeed: () => (connections.push(connect(runner)), resolve()), fail: reject });
        }),
      { min: 0, max: 1 },
    );
    const call = submit(target, 1);
    call.catch(() => undefined);
    expect(target.bootCounts).toEqual({ started: 1, succeeded: 0, failed: 0 });
    boots[0]!.fail(new BootError("no capacity", { retryable: false }));
    await expect(call).rejects.toThrow("no capacity");
    expect(target.bootCounts).toEqual({ started: 1, succeeded: 0, failed: 1 });
    await target.growToMin(); // min 0: nothing
    const second = submit(target, 2);
    expect(target.bootCounts).toEqual({ started: 2, succeeded: 0, failed: 1 });
    boots[1]!.succeed();
    await new Promise((resolve) => setImmediate(resolve));
    expect(target.bootCounts).toEqual({ started: 2, succeeded: 1, failed: 1 });
    // Queued while the runner booted: one sample of its wait; a call placed at once adds a 0.
    expect(target.queueWait.snapshot().count).toBe(1);
    const third = submit(target, 3);
    expect(target.queueWait.snapshot()).toMatchObject({ count: 2, p50: 0 });
    expect(boots[1]!.runner.load).toBe(2);
    // The calls' frames leave at the end of the tick (protocol/coalesce.ts).
    await new Promise((resolve) => process.nextTick(resolve));
    connections[0]!.answerAll();
    await expect(Promise.all([second, third])).resolves.toEqual([2, 3]);
    await target.stop();
  });
});

describe("the boot span", () => {
  it("is started for each boot, its context handed to the launch, and ended with the outcome", async () => {
    forgetSpans();
    const seen: Array<TraceContextCarrier | undefined> = [];
    let attempt = 0;
    const connections: FakeConnection[] = [];
    const target = scheduler(async (runner, traceContext) => {
      seen.push(traceContext);
      attempt += 1;
      if (attempt === 1) throw new BootError("image not found", { retryable: false });
      connections.push(connect(runner));
    }, { min: 0, max: 1 });
    await expect(submit(target, 1)).rejects.toThrow("image not found");
    const second = submit(target, 2);
    await new Promise((resolve) => setImmediate(resolve));
    connections[0]!.answerAll();
    await expect(second).resolves.toBe(2);
    await target.stop();
    const boots = finishedSpans().filter((span) => span.scope === "flame-ts" && span.name === "flame.boot");
    expect(boots).toHaveLength(2);
    const [failed, ok] = boots;
    expect(failed!.status).toMatchObject({ code: 2, message: "image not found" });
    expect(failed!.attributes).toMatchObject({ "flame.pool": "stats", "flame.backend": "fake", "flame.boot.outcome": "error", "error.type": "FLAME_BOOT_FAILED" });
    expect(ok!.attributes).toMatchObject({ "flame.boot.outcome": "ok" });
    expect(ok!.attributes["error.type"]).toBeUndefined();
    // The launch got each boot's own span context, as W3C traceparent.
    expect(seen.map((carrier) => carrier?.traceparent)).toEqual([
      `00-${failed!.traceId}-${failed!.spanId}-01`,
      `00-${ok!.traceId}-${ok!.spanId}-01`,
    ]);
  });
});

describe("pool.stats() on a real pool", () => {
  let stop: (() => Promise<void>) | undefined;
  afterEach(() => stop?.());

  it("counts boots and summarizes queue waits and call durations", async () => {
    const { pool, echo, fail } = makeTracedPool({ name: "stats-real", backend: testProcessBackend(), min: 0, max: 1 });
    stop = () => pool.stop();
    expect(pool.stats()).toMatchObject({ boots: { started: 0, succeeded: 0, failed: 0 }, queueWait: { count: 0 }, callDuration: { count: 0 } });
    await echo(1); // queued while the runner booted
    await echo(2); // placed at once
    await expect(fail("no")).rejects.toThrow("no");
    const stats = pool.stats();
    expect(stats.boots).toEqual({ started: 1, succeeded: 1, failed: 0 });
    expect(stats.runners).toEqual({ total: 1, booting: 0, ready: 1, busy: 0, idle: 1, draining: 0, stopping: 0 });
    expect(stats.queueWait.count).toBe(3);
    // The first call waited for the boot (tens of ms at least); the others not at all.
    expect(stats.queueWait.max).toBeGreaterThan(10);
    expect(stats.queueWait.p50).toBe(0);
    expect(stats.queueWait.p99).toBe(stats.queueWait.max);
    expect(stats.callDuration.count).toBe(3);
    expect(stats.callDuration.max).toBeGreaterThanOrEqual(stats.queueWait.max);
    expect(stats.callDuration.sum).toBeGreaterThan(stats.callDuration.max);
    expect(stats.callDuration.p50).toBeGreaterThan(0);
    expect(stats.callDuration.p50).toBeLessThan(stats.callDuration.max);
  });
});
