import { describe, expect, it } from "vitest";
import {
  BootError,
  QueueTimeoutError,
  CallAbortedError,
  CallTimeoutError,
  RunnerExitedError,
  VersionMismatchError,
  type GrowResult,
  type ShrinkInfo,
} from "../../src/index.js";
import { testProcessBackend } from "../support/backends.js";
import { poolsStoppedAfterEach } from "../support/pools.js";
import { descendantPids, isAlive, waitFor } from "../support/processes.js";

const pool = poolsStoppedAfterEach();

const brokenEntry = new URL("../fixtures/broken-app.ts", import.meta.url).pathname;

describe("timeouts and aborts", () => {
  it("a call timeout rejects at once and aborts the remote signal", async () => {
    const { pool: p, waitForAbort, abortsSeen } = pool({ name: "timeout", max: 1 });
    await p.start();
    const started = Date.now();
    await expect(p.call(waitForAbort, [], { timeout: 200 })).rejects.toBeInstanceOf(CallTimeoutError);
    // At the timeout, not when the function ends (it never does on its own): generous for a loaded machine.
    expect(Date.now() - started).toBeLessThan(4_000);
    await waitFor(async () => (await abortsSeen()) === 1, "the runner's signal to fire");
  });

  it("a caller's signal cancels a queued call and a running call", async () => {
    const { pool: p, sleep, waitForAbort, abortsSeen } = pool({ name: "abort", min: 1, max: 1, maxConcurrency: 1 });
    await p.start();
    const running = new AbortController();
    const queued = new AbortController();
    const first = p.call(waitForAbort, [], { signal: running.signal });
    const second = p.call(sleep, [10], { signal: queued.signal });
    expect(p.stats().queued).toBe(1);
    queued.abort(new Error("changed my mind"));
    await expect(second).rejects.toBeInstanceOf(CallAbortedError);
    expect(p.stats().queued).toBe(0);
    running.abort();
    await expect(first).rejects.toBeInstanceOf(CallAbortedError);
    await waitFor(async () => (await abortsSeen()) === 1, "the running call's signal to fire on the runner");
    // An already-aborted signal never reaches a runner.
    await expect(p.call(sleep, [10], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CallAbortedError);
  });

  it("work that ignores its signal past the grace period gets its runner drained and replaced", async () => {
    const shrinks: ShrinkInfo[] = [];
    const { pool: p, stubborn, whoami } = pool({
      name: "stuck",
      min: 1,
      max: 2,
      abortGracePeriod: 200,
      onShrink: (info) => shrinks.push(info),
    });
    await p.start();
    const before = await whoami();
    await expect(p.call(stubborn, ["hang"], { timeout: 100 })).rejects.toBeInstanceOf(CallTimeoutError);
    await waitFor(() => shrinks.some((s) => s.reason === "stuck"), "the stuck runner to be retired");
    await waitFor(() => !isAlive(before.pid), "the stuck runner's process to end");
    const after = await whoami();
    expect(after.runnerId).not.toBe(before.runnerId);
    expect(p.stats().runners.ready).toBe(1);
  });
});

describe("runner death", () => {
  it("a runner killed mid-call fails its calls with RunnerExitedError at once and is replaced to keep min", async () => {
    const { pool: p, sleep, whoami } = pool({ name: "killed", min: 1, max: 1, timeout: 20_000 });
    await p.start();
    const victim = await whoami();
    const calls = [sleep(10_000), sleep(10_000)];
    await waitFor(() => p.stats().inFlight === 2, "two calls in flight");
    const killedAt = Date.now();
    process.kill(victim.pid, "SIGKILL");
    for (const call of calls) await expect(call).rejects.toBeInstanceOf(RunnerExitedError);
    expect(Date.now() - killedAt).toBeLessThan(2_000);
    await waitFor(() => p.stats().runners.ready === 1, "a replacement runner");
    const replacement = await whoami();
    expect(replacement.runnerId).not.toBe(victim.runnerId);
  });

  it("a call that crashes its runner fails with RunnerExitedError; queued callers go to the replacement", async () => {
    const { pool: p, crash, sleep } = pool({ name: "crash", max: 1, maxConcurrency: 1 });
    const crashing = crash();
    const queued = sleep(10);
    await expect(crashing).rejects.toBeInstanceOf(RunnerExitedError);
    await expect(queued).resolves.toMatchObject({ runnerId: expect.any(String) });
  });
});

describe("liveness", () => {
  it("a call that blocks the runner's event loop far past the heartbeat tolerance is not mistaken for a dead runner", async () => {
    const { pool: p, spin, whoami } = pool({ name: "cpu-bound", max: 1, heartbeatInterval: 150 });
    const before = await whoami();
    // 3 missed 150 ms heartbeats would be 450 ms: block for 1.5 s. (A shorter interval mistakes
    // a parent slowed by a loaded machine for a dead one, which is not what this test is about.)
    await expect(spin(1_500)).resolves.toBe(before.pid);
    expect((await whoami()).runnerId).toBe(before.runnerId);
    expect(p.stats().failed).toBe(0);
  });

  it("an idle runner that stops answering (frozen with SIGSTOP) is counted as exited and terminated", async () => {
    const shrinks: ShrinkInfo[] = [];
    const { pool: p, whoami } = pool({ name: "frozen", max: 1, heartbeatInterval: 100, onShrink: (s) => shrinks.push(s) });
    const frozen = await whoami();
    process.kill(frozen.pid, "SIGSTOP");
    await waitFor(() => shrinks.length === 1, "the frozen runner to be counted as exited", 5_000);
    expect(shrinks[0]!.reason).toBe("exited");
    await waitFor(() => !isAlive(frozen.pid), "the frozen runner to be terminated", 5_000);
    expect((await whoami()).runnerId).not.toBe(frozen.runnerId);
    expect(p.stats().runners.ready).toBe(1);
  });
});

describe("boot failures", () => {
  it("a runner whose app fails to load fails the caller after the same failure twice, with its output, logged once", async () => {
    const results: GrowResult[] = [];
    const warnings: string[] = [];
    const log = { debug: () => undefined, info: () => undefined, warn: (_: object, message: string) => warnings.push(message), error: () => undefined };
    const { pool: p, add } = pool({
      name: "broken",
      max: 1,
      entry: brokenEntry,
      // The default 30 s: the caller must not wait for it, nor for a dozen attempts.
      log,
      onGrowEnd: (result) => results.push(result),
    });
    const startedAt = Date.now();
    const error = await add(1, 2).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BootError);
    expect((error as Error).message).toMatch(/missing configuration XYZ/);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    // Tried again once, then taken as final: the second attempt ran the same code.
    expect(results).toHaveLength(2);
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(warnings.filter((message) => message.startsWith("runner boot failed"))).toHaveLength(1);
    await p.stop();
    expect(descendantPids()).toEqual([]);
  });

  it("a runner that never connects back times out, is terminated, and the error names the parent URL", async () => {
    const { pool: p, add } = pool({
      name: "silent",
      max: 1,
      bootTimeout: 800,
      // Node runs the -e program and ignores the agent: a machine that booted something that never dials back.
      backend: testProcessBackend({ execArgv: ["-e", "setInterval(() => {}, 1000)"] }),
    });
    const started = Date.now();
    const error = await add(1, 2).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueTimeoutError);
    expect((error as Error).message).toMatch(/not connected back to the parent at ws:\/\/127\.0\.0\.1:\d+/);
    expect(Date.now() - started).toBeLessThan(5_000);
    await waitFor(() => descendantPids().length === 0, "the silent runner process to be terminated");
    await p.stop();
  });

  it("a runner of another app version is refused with a clear error, never run", async () => {
    const { add } = pool({
      name: "mismatch",
      max: 1,
      backend: testProcessBackend({ env: { FLAME_BUILD_ID: "some-other-build" } }),
    });
    const error = await add(1, 2).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VersionMismatchError);
    expect((error as Error).message).toMatch(/app version .*\+some-other-build.*the parent runs/);
  });
});
