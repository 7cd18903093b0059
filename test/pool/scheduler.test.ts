/**
 * The Scheduler's policies (routing, growth, idle shutdown, queue timeouts,
 * resize, stop) with a fake launch and fake connections under fake timers:
 * no process, no socket, milliseconds per test.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Backend, ProvisionedRunner } from "../../src/backends/backend.js";
import { BootError, PoolStoppedError, type PoolOptions } from "../../src/index.js";
import { resolvePoolOptions } from "../../src/pool/options.js";
import { PendingCall } from "../../src/pool/pending-call.js";
import type { Runner } from "../../src/pool/runner.js";
import { Scheduler } from "../../src/pool/scheduler.js";
import { encodeMessage } from "../../src/protocol/codec.js";
import { FakeConnection } from "../support/fake-connection.js";
import { Deadlines } from "../../src/pool/deadlines.js";

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A backend that only records what the Scheduler asks of it. */
function recordingBackend() {
  const terminated: string[] = [];
  const backend: Backend = {
    name: "fake",
    provision: () => Promise.reject(new Error("the fake launch provisions")),
    terminate: async (runner: ProvisionedRunner) => {
      terminated.push(runner.runnerId);
    },
    list: async () => [],
  };
  return { backend, terminated };
}

interface Rig {
  scheduler: Scheduler;
  connections: Map<string, FakeConnection>;
  terminated: string[];
  launches: number;
  /** Makes a call; resolves or rejects as the call settles. */
  call(): { id: number; settled: Promise<unknown> };
}

function rig(options: Partial<PoolOptions>, launch?: (runner: Runner) => Promise<void>): Rig {
  const { backend, terminated } = recordingBackend();
  const resolved = resolvePoolOptions({ name: "sched", max: 2, backend, log: false, ...options } as PoolOptions, { constructedIn: undefined, onRunner: false });
  const connections = new Map<string, FakeConnection>();
  const deadlines = new Deadlines();
  let nextCallId = 1;
  const state: Rig = {
    connections,
    terminated,
    launches: 0,
    scheduler: new Scheduler({
      name: "sched",
      options: resolved,
      backend,
      bootTimeout: options.bootTimeout ?? 30_000,
      appVersion: "test",
      log: silent,
      launch: async (runner) => {
        state.launches += 1;
        if (launch) return launch(runner);
        // A boot takes 100 ms, then the runner is connected.
        await new Promise((resolve) => setTimeout(resolve, 100));
        const connection = new FakeConnection();
        connections.set(runner.id, connection);
        runner.markProvisioned({ runnerId: runner.id, providerId: runner.id });
        runner.attach(connection.asSocket(), resolved.heartbeatInterval);
        runner.markReady();
      },
    }),
    call() {
      const id = nextCallId++;
      const settled = new Promise<unknown>((resolve, reject) => {
        state.scheduler.submit(
          new PendingCall({
            callId: id,
            functionId: "work",
            frame: encodeMessage({ type: "call", callId: id, functionId: "work", args: [] }),
            poolName: "sched",
            child: false,
            executionTimeout: Infinity,
            deadlines,
            resolve,
            reject,
            onGiveUp: (call, reason) => state.scheduler.giveUp(call, reason),
          }),
        );
      });
      settled.catch(() => undefined);
      return { id, settled };
    },
  };
  return state;
}

/** Calls running on each connection, in boot order. */
function loads(connections: Map<string, FakeConnection>): number[] {
  return [...connections.values()].map((connection) => connection.running.size);
}

/** Frames leave at the end of the tick they were sent in (protocol/coalesce.ts): resolves once they have. */
function sent(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve));
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Scheduler", () => {
  it("boots one runner per maxConcurrency waiting callers, within max, and spreads the queue over them", async () => {
    const r = rig({ max: 3, maxConcurrency: 2 });
    const calls = Array.from({ length: 7 }, () => r.call());
    expect(r.launches).toBe(3);
    await vi.advanceTimersByTimeAsync(100);
    expect(loads(r.connections)).toEqual([2, 2, 2]);
    expect(r.scheduler.queue.size).toBe(1);
    // A slot frees up: the oldest waiting call takes it.
    const first = [...r.connections.values()][0]!;
    const [callId] = first.running.keys();
    first.answer(callId!, "done");
    await expect(calls[callId! - 1]!.settled).resolves.toBe("done");
    await sent();
    expect(r.scheduler.queue.size).toBe(0);
    expect(first.running.has(7)).toBe(true);
  });

  it("routes a call to the least-loaded ready runner", async () => {
    const r = rig({ min: 2, max: 2, maxConcurrency: 10 });
    const growing = r.scheduler.growToMin();
    await vi.advanceTimersByTimeAsync(100);
    await growing;
    for (let i = 0; i < 5; i++) r.call();
    await sent();
    expect(loads(r.connections).sort()).toEqual([2, 3]);
    const [a, b] = r.connections.values();
    a!.answerAll();
    const before = b!.running.size;
    r.call();
    r.call();
    await sent();
    // Both went to the runner that had emptied: it is still the less loaded one after the first.
    expect(a!.running.size).toBe(2);
    expect(b!.running.size).toBe(before);
  });

  it("an idle runner above min shuts down after idleShutdownAfter; the min runner stays", async () => {
    const r = rig({ min: 1, max: 2, maxConcurrency: 1, idleShutdownAfter: 1_000 });
    const growing = r.scheduler.growToMin();
    await vi.advanceTimersByTimeAsync(100);
    await growing;
    r.call();
    r.call();
    await vi.advanceTimersByTimeAsync(100);
    for (const connection of r.connections.values()) connection.answerAll();
    await vi.advanceTimersByTimeAsync(999);
    expect(r.terminated).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(r.terminated).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(r.terminated).toHaveLength(1);
    expect(r.scheduler.runners.countByState().ready).toBe(1);
  });

  it("a caller that waits past bootTimeout fails with the last boot failure in its error", async () => {
    const r = rig({ max: 1, bootTimeout: 5_000 }, async () => {
      throw new BootError("the image cannot be pulled");
    });
    const { settled } = r.call();
    const failure = settled.catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(5_000);
    const error = (await failure) as Error;
    expect(error.message).toContain("the image cannot be pulled");
    // Retried with backoff in the meantime, not in a tight loop.
    expect(r.launches).toBeGreaterThan(1);
    expect(r.launches).toBeLessThan(20);
  });

  it("a boot failure that retrying cannot fix fails waiting callers at once", async () => {
    const r = rig({ max: 1 }, async () => {
      throw new BootError("bad credentials", { retryable: false });
    });
    const { settled } = r.call();
    await expect(settled).rejects.toThrow("bad credentials");
    expect(r.launches).toBe(1);
  });

  it("resize down retires idle runners first and lets a busy one finish its call", async () => {
    const r = rig({ min: 3, max: 3, maxConcurrency: 1 });
    const growing = r.scheduler.growToMin();
    await vi.advanceTimersByTimeAsync(100);
    await growing;
    const busy = r.call();
    await sent();
    const busyRunner = [...r.connections.entries()].find(([, connection]) => connection.running.size > 0)![0];
    await r.scheduler.resize({ min: 0, max: 1 });
    expect(r.terminated).toHaveLength(2);
    expect(r.terminated).not.toContain(busyRunner);
    r.connections.get(busyRunner)!.answerAll();
    await expect(busy.settled).resolves.toBe(busy.id);
  });

  it("stop() is one promise: queued callers fail with PoolStoppedError, every runner is retired", async () => {
    const r = rig({ min: 1, max: 1, maxConcurrency: 1, shutdownTimeout: 1_000 });
    const growing = r.scheduler.growToMin();
    await vi.advanceTimersByTimeAsync(100);
    await growing;
    const running = r.call();
    const queued = r.call();
    await sent();
    const stopping = r.scheduler.stop();
    expect(r.scheduler.stop()).toBe(stopping);
    expect(r.scheduler.accepting).toBe(false);
    await expect(queued.settled).rejects.toBeInstanceOf(PoolStoppedError);
    // The running call gets up to shutdownTimeout to finish.
    [...r.connections.values()][0]!.answerAll();
    await expect(running.settled).resolves.toBe(running.id);
    await vi.advanceTimersByTimeAsync(0);
    await stopping;
    expect(r.terminated).toHaveLength(1);
  });
});
