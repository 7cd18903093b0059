import { describe, expect, it } from "vitest";
import { QueueFullError, type ShrinkInfo } from "../../src/index.js";
import { poolsStoppedAfterEach } from "../support/pools.js";
import { isAlive, waitFor } from "../support/processes.js";

const pool = poolsStoppedAfterEach();

describe("scaling", () => {
  it("scales from 0 to max under a burst and back to 0 when idle", async () => {
    const shrinks: ShrinkInfo[] = [];
    let peakRunners = 0;
    const { pool: p, sleep } = pool({
      name: "burst",
      min: 0,
      max: 3,
      maxConcurrency: 2,
      idleShutdownAfter: 300,
      onShrink: (info) => shrinks.push(info),
      onGrowStart: (info) => (peakRunners = Math.max(peakRunners, info.count)),
    });
    expect(p.stats().runners.ready).toBe(0);
    // Calls long enough to outlast any runner's boot on a loaded machine, so all three are needed.
    const results = await Promise.all(Array.from({ length: 12 }, () => sleep(700)));
    const runnersUsed = new Set(results.map((r) => r.runnerId));
    expect(runnersUsed.size).toBe(3);
    expect(peakRunners).toBe(3);
    const pids = [...new Set(results.map((r) => r.pid))];
    await waitFor(() => p.stats().runners.ready === 0 && shrinks.length === 3, "all runners to idle down");
    expect(shrinks.map((s) => s.reason)).toEqual(["idle", "idle", "idle"]);
    expect(shrinks.at(-1)!.count).toBe(0);
    for (const pid of pids) await waitFor(() => !isAlive(pid), `runner ${pid} to exit`);
  });

  it("boots exactly one runner for a burst that one runner can serve", async () => {
    let boots = 0;
    const { pool: p, sleep } = pool({ name: "one-boot", max: 5, maxConcurrency: 10, onGrowStart: () => (boots += 1) });
    const results = await Promise.all(Array.from({ length: 10 }, () => sleep(50)));
    expect(boots).toBe(1);
    expect(new Set(results.map((r) => r.runnerId)).size).toBe(1);
    expect(p.stats().completed).toBe(10);
  });

  it("routes each call to the least-loaded runner", async () => {
    const { pool: p, sleep, whoami } = pool({ name: "least-loaded", min: 2, max: 2, maxConcurrency: 10 });
    await p.start();
    // Three calls over two empty runners: 1st to one, 2nd to the other, 3rd to either: loads 2 and 1.
    const busy = Array.from({ length: 3 }, () => sleep(1_500));
    await waitFor(() => p.stats().inFlight === 3, "three calls in flight");
    // The next call goes to the runner with one call, not the one with two.
    const next = await whoami();
    const results = await Promise.all(busy);
    const perRunner = new Map<string, number>();
    for (const r of results) perRunner.set(r.runnerId!, (perRunner.get(r.runnerId!) ?? 0) + 1);
    expect([...perRunner.values()].sort()).toEqual([1, 2]);
    expect(perRunner.get(next.runnerId)).toBe(1);
  });

  it("queues callers beyond capacity in order and rejects past maxQueue with QueueFullError", async () => {
    const { pool: p, sleep } = pool({ name: "queue", min: 1, max: 1, maxConcurrency: 1, maxQueue: 2 });
    await p.start();
    const order: number[] = [];
    const first = sleep(200).then(() => order.push(1));
    const second = sleep(10).then(() => order.push(2));
    const third = sleep(10).then(() => order.push(3));
    expect(p.stats().queued).toBe(2);
    await expect(sleep(10)).rejects.toBeInstanceOf(QueueFullError);
    await Promise.all([first, second, third]);
    expect(order).toEqual([1, 2, 3]);
    // Still usable after the rejection.
    await expect(sleep(1)).resolves.toMatchObject({ runnerId: expect.any(String) });
  });

  it("singleUse: every call gets a fresh runner and the pool stays at min", async () => {
    const shrinks: ShrinkInfo[] = [];
    const { pool: p, whoami } = pool({ name: "single", min: 1, max: 2, singleUse: true, onShrink: (s) => shrinks.push(s) });
    await p.start();
    const first = await whoami();
    const second = await whoami();
    expect(first.runnerId).not.toBe(second.runnerId);
    await waitFor(() => shrinks.length >= 2 && p.stats().runners.ready === 1, "single-use runners to end and min to be restored");
    expect(shrinks.every((s) => s.reason === "single-use")).toBe(true);
  });

  it("resize grows to the new min and shrinks by retiring idle runners first, never failing calls", async () => {
    const { pool: p, sleep } = pool({ name: "resize", min: 0, max: 3, maxConcurrency: 1 });
    await p.resize({ min: 3 });
    expect(p.stats().runners.ready).toBe(3);
    const busy = sleep(1_500);
    await waitFor(() => p.stats().inFlight === 1, "a call in flight");
    await p.resize({ min: 0, max: 1 });
    // The two idle runners went at once; the busy one keeps running its call.
    expect(p.stats().runners.ready + p.stats().runners.draining).toBe(1);
    await expect(busy).resolves.toMatchObject({ runnerId: expect.any(String) });
    expect(p.stats().failed).toBe(0);
    await expect(p.resize({ min: 2, max: 1 })).rejects.toThrow(/min \(2\) is greater than max \(1\)/);
  });

  it("min runners stay up by default, shut down after minIdleShutdownAfter when set, and come back on demand", async () => {
    const shrinks: ShrinkInfo[] = [];
    const kept = pool({ name: "min-kept", min: 1, max: 1, idleShutdownAfter: 50 });
    await kept.pool.start();
    const { pool: p, whoami } = pool({
      name: "min-idle",
      min: 1,
      max: 1,
      idleShutdownAfter: 50,
      minIdleShutdownAfter: 300,
      onShrink: (info) => shrinks.push(info),
    });
    await p.start();
    await waitFor(() => shrinks.length === 1, "the min runner to idle down after minIdleShutdownAfter");
    expect(shrinks[0]!.reason).toBe("idle");
    // Deliberate: not replaced while nothing is asked of the pool.
    expect(p.stats().runners.booting + p.stats().runners.ready).toBe(0);
    await expect(whoami()).resolves.toMatchObject({ isRunner: true });
    // The pool without minIdleShutdownAfter kept its min runner all along (idleShutdownAfter applies above min only).
    expect(kept.pool.stats().runners.ready).toBe(1);
  });

  it("a runner does not idle down while a placed child lives on it", async () => {
    const { pool: p, waitForAbort } = pool({ name: "child-idle", max: 1, idleShutdownAfter: 100 });
    const child = await p.placeChild(waitForAbort, []);
    // Several idle periods pass: the child holds its runner (a negative, so it needs time to pass).
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(p.stats().runners).toMatchObject({ ready: 1, busy: 1 });
    child.stop();
    await expect(child.done).rejects.toThrow();
    await waitFor(() => p.stats().runners.ready === 0, "the runner to idle down once its child ended");
  });

  it("idle check on the runner can keep a runner up", async () => {
    const kept: string[] = [];
    const log = {
      debug: (_fields: object, message: string) => void (message.includes("idle check kept") && kept.push(message)),
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    };
    const { pool: p, setIdleVeto } = pool({ name: "idle-check", max: 1, idleShutdownAfter: 100, idleCheck: true, log });
    await setIdleVeto(true);
    await waitFor(() => kept.length >= 2, "the runner's idle check to refuse twice");
    expect(p.stats().runners.ready).toBe(1);
    await setIdleVeto(false);
    await waitFor(() => p.stats().runners.ready === 0, "the runner to idle down once its check agrees");
  });
});
