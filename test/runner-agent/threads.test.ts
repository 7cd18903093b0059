/**
 * Runner threads (pool option `runnerThreads`): a runner process spreads its
 * calls over worker threads, each of which imports the app, and a thread is a
 * unit of failure of its own. Real runner processes (ProcessBackend) with
 * real worker threads; the Fly emulator case is in test/backends/fly-threads.test.ts.
 */
import { availableParallelism } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { CallAbortedError, CallTimeoutError, InvalidOptionError, RemoteError, LocalBackend, Pool, ThreadExitedError } from "../../src/index.js";
import { makeThreadedPool } from "../fixtures/threaded-app.js";
import { testProcessBackend } from "../support/backends.js";
import { waitFor } from "../support/processes.js";

interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger() {
  const lines: LogLine[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, message: string) => void lines.push({ level, fields, message });
  return { lines, logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") } };
}

const pools: Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.stop()));
});

/**
 * Waits until two concurrent calls run on both threads again (a replaced
 * thread takes calls once it has loaded the app; until then the other takes
 * them all), and returns where they ran.
 */
async function bothThreadsServe(sleep: (ms: number) => Promise<{ thread: number; pid: number; threadId: number }>) {
  let spread: Array<{ thread: number; pid: number; threadId: number }> = [];
  await waitFor(async () => {
    spread = await Promise.all([sleep(50), sleep(50)]);
    return new Set(spread.map((call) => call.thread)).size === 2;
  }, "both threads to take calls again");
  return spread;
}

function threadedPool(options: Partial<Parameters<typeof makeThreadedPool>[0]> = {}) {
  const recorded = recordingLogger();
  const made = makeThreadedPool({
    name: `threads-${pools.length + 1}-${process.pid}`,
    max: 1,
    runnerThreads: 2,
    backend: testProcessBackend(),
    log: recorded.logger,
    ...options,
  });
  pools.push(made.pool);
  return { ...made, lines: recorded.lines };
}

describe("runner threads", () => {
  it("spreads calls over the threads of one runner, least loaded first, and they run at the same time", async () => {
    const { pool, sleep, spin } = threadedPool();
    const [first, second] = await Promise.all([sleep(100), sleep(100)]);
    expect(new Set([first.thread, second.thread])).toEqual(new Set([1, 2]));
    expect(first.pid).toBe(second.pid);
    expect(first.threadId).not.toBe(second.threadId);
    // CPU-bound calls overlap: each holds its own thread, not the runner's one event loop.
    const [a, b] = await Promise.all([spin(250), spin(250)]);
    expect(a.thread).not.toBe(b.thread);
    expect(Math.max(a.startedAt, b.startedAt)).toBeLessThan(Math.min(a.endedAt, b.endedAt));
    const stats = pool.stats();
    expect(stats.runners.total).toBe(1);
    expect(stats.threads).toEqual({ total: 2, runners: [{ runnerId: first.runnerId, threads: 2, load: 0 }] });
  });

  it('"auto" starts one thread per core of the runner\'s machine', async () => {
    const { pool, where } = threadedPool({ runnerThreads: "auto" });
    await where();
    const expected = availableParallelism() > 1 ? availableParallelism() : 0;
    expect(pool.stats().threads.total).toBe(expected);
  });

  it("an error thrown on a thread reaches the caller as a RemoteError with its stack and properties", async () => {
    const { fail } = threadedPool();
    const error = (await fail("bad input").catch((thrown: unknown) => thrown)) as RemoteError;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({ remoteName: "TypeError", message: "bad input", remoteCode: "E_ON_THREAD", thread: 1 });
    expect(error.remoteStack).toMatch(/threaded-app\.ts/);
  });

  it("moves Buffers both ways intact", async () => {
    const { reverse } = threadedPool();
    const bytes = Buffer.alloc(1024 * 1024, 0);
    for (let index = 0; index < bytes.length; index += 1) bytes[index] = index % 251;
    const reversed = await reverse(bytes);
    expect(Buffer.isBuffer(reversed)).toBe(true);
    expect(Buffer.compare(reversed, Buffer.from(bytes).reverse())).toBe(0);
  });

  it("a timeout cancels the call on its thread: its signal aborts there and the thread stays", async () => {
    const { pool, sleep, where, lines } = threadedPool();
    const before = await Promise.all([where(), where()]);
    await expect(pool.call(sleep, [10_000], { timeout: 150 })).rejects.toBeInstanceOf(CallTimeoutError);
    await waitFor(() => lines.some((line) => /aborted on thread [12]/.test(line.message)), "the abort on the thread");
    await waitFor(() => pool.stats().inFlight === 0, "the cancelled call to end on the runner");
    const after = await Promise.all([where(), where()]);
    expect(after.map((call) => call.threadId).sort()).toEqual(before.map((call) => call.threadId).sort());
  });

  it("a caller's abort cancels the call on its thread", async () => {
    const { pool, sleep, lines } = threadedPool();
    const controller = new AbortController();
    const call = pool.call(sleep, [10_000], { signal: controller.signal });
    await waitFor(() => pool.stats().inFlight === 1, "the call to reach its thread");
    controller.abort(new Error("the user left"));
    await expect(call).rejects.toBeInstanceOf(CallAbortedError);
    await waitFor(() => lines.some((line) => /aborted on thread 1/.test(line.message)), "the abort on the thread");
    await waitFor(() => pool.stats().inFlight === 0, "the aborted call to end on the runner");
  });

  it("a thread stuck past abortGracePeriod is terminated and replaced; its runner and the other thread carry on", async () => {
    const shrinks: string[] = [];
    const { pool, holdForever, sleep, where, lines } = threadedPool({ abortGracePeriod: 300, onShrink: (info) => shrinks.push(info.reason) });
    const other = sleep(1_500);
    const stuck = pool.call(holdForever, [], { timeout: 100 });
    await expect(stuck).rejects.toBeInstanceOf(CallTimeoutError);
    await waitFor(() => lines.some((line) => /terminating and replacing the thread/.test(line.message)), "the runner to replace its stuck thread");
    await waitFor(() => pool.stats().inFlight === 1, "the stuck call's slot to be freed");
    const survivor = await other;
    const after = await bothThreadsServe(sleep);
    expect(after.every((call) => call.pid === survivor.pid)).toBe(true);
    expect(shrinks).toEqual([]);
    expect(pool.stats().runners.total).toBe(1);
  });

  for (const [mode, cause] of [
    ["throw", /uncaught exception: RangeError: thrown outside any call/],
    ["exit", /exited with code 7/],
    ["oom", /ran out of memory/],
  ] as const) {
    it(`a thread that crashes (${mode}) fails only its own calls with ThreadExitedError and is replaced`, async () => {
      const { crashThread, sleep } = threadedPool({ threadResourceLimits: { maxOldGenerationSizeMb: 48 } });
      const bystander = sleep(1_000);
      const crashed = crashThread(mode).then(
        () => undefined,
        (error: unknown) => error,
      );
      const error = (await crashed) as ThreadExitedError;
      expect(error).toBeInstanceOf(ThreadExitedError);
      expect(error.code).toBe("FLAME_THREAD_EXITED");
      expect(error.thread).toBe(2);
      expect(error.message).toMatch(cause);
      const survivor = await bystander;
      expect(survivor.thread).toBe(1);
      const after = await bothThreadsServe(sleep);
      expect(after.every((call) => call.pid === survivor.pid)).toBe(true);
    });
  }

  it("placeChild runs on a thread, keeps its slot, and stops on its thread", async () => {
    const { pool, child, where, lines } = threadedPool();
    const placed = await pool.placeChild(child, []);
    // The child holds thread 1: the next call goes to the other thread.
    expect((await where()).thread).toBe(2);
    expect(pool.stats().threads.runners[0]).toMatchObject({ threads: 2, load: 1 });
    placed.stop();
    await expect(placed.done).rejects.toThrow();
    await waitFor(() => lines.some((line) => line.message.includes("aborted on thread 1")), "the child's abort on its thread");
  });

  it("a thread's console output reaches the parent's log tagged with the thread", async () => {
    const { shout, lines } = threadedPool();
    const thread = await shout("hello");
    await waitFor(() => lines.some((line) => line.message.includes("hello from thread")), "the thread's line");
    const line = lines.find((candidate) => candidate.message.includes("hello from thread"))!;
    // ProcessBackend reads the runner's stderr: the line carries its thread as a tag.
    expect(line.message).toBe(`[thread ${thread}] hello from thread ${thread}`);
  });

  it("the idle check asks every thread: one that vetoes keeps the runner up", async () => {
    const shrinks: string[] = [];
    const { setIdleVeto, where, lines } = threadedPool({ idleCheck: true, idleShutdownAfter: 150, onShrink: (info) => shrinks.push(info.reason) });
    const vetoed = await setIdleVeto(true);
    await waitFor(() => lines.filter((line) => line.message.includes("idle check refused")).length >= 2, "two refused idle checks");
    expect(shrinks).toEqual([]);
    // Both threads idle: the least loaded first is thread 1 again, the one that holds the veto.
    expect(await setIdleVeto(false)).toBe(vetoed);
    await waitFor(() => shrinks.includes("idle"), "the runner to idle down");
    // And the pool boots a fresh one on demand.
    expect((await where()).thread).toBeGreaterThan(0);
  });

  it("a thread that cannot load the app fails the boot with the entry's error", async () => {
    const pool = new Pool({
      name: `threads-broken-${process.pid}`,
      max: 1,
      runnerThreads: 2,
      entry: new URL("../fixtures/broken-app.ts", import.meta.url).pathname,
      backend: testProcessBackend(),
      log: false,
      bootTimeout: 10_000,
    });
    pools.push(pool);
    const noop = pool.define("noop", () => undefined);
    await expect(noop()).rejects.toThrow(/could not load the app: .*missing configuration XYZ/s);
  });

  it("validates runnerThreads and threadResourceLimits", () => {
    const base = { name: "threads-options", max: 1, log: false as const };
    for (const runnerThreads of [0, 1.5, -1, "many", 5_000]) {
      expect(() => new Pool({ ...base, runnerThreads: runnerThreads as never })).toThrow(InvalidOptionError);
    }
    expect(() => new Pool({ ...base, threadResourceLimits: { maxOldGenerationSizeMb: 64 } })).toThrow(/threadResourceLimits applies to worker threads/);
    expect(() => new Pool({ ...base, runnerThreads: 2, threadResourceLimits: { maxOldGenerationSizeMb: -1 } })).toThrow(InvalidOptionError);
    expect(() => new Pool({ ...base, runnerThreads: 2, threadResourceLimits: { heap: 1 } as never })).toThrow(InvalidOptionError);
    expect(() => new Pool({ ...base, runnerThreads: 2, backend: new LocalBackend() })).toThrow(/LocalBackend runs calls on the parent's own thread/);
  });
});
