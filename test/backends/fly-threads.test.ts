/**
 * A pool with runner threads on the Fly Machines API emulator: each machine
 * is a real runner process whose calls spread over its worker threads, and
 * whose output is forwarded over the connection (remote backends cannot read
 * a machine's pipes), tagged with the thread that wrote it.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FlyEmulator } from "../../src/emulators/fly/emulator.js";
import { ThreadExitedError } from "../../src/index.js";
import { makeThreadedPool, threadedEntry } from "../fixtures/threaded-app.js";
import { pretendParentOnFly, runnerCommand, startTestEmulator, testFlyBackend } from "../support/fly.js";
import { waitFor } from "../support/processes.js";

pretendParentOnFly();

let emulator: FlyEmulator;
beforeEach(async () => {
  emulator = await startTestEmulator();
});
afterEach(async () => {
  const violations = emulator.violations();
  await emulator.close();
  expect(violations).toEqual([]);
});

describe("runner threads on the Fly emulator", () => {
  it("one machine runs calls on both its threads, forwards each thread's output with its thread, and survives a crashed thread", async () => {
    const lines: { fields: Record<string, unknown>; message: string }[] = [];
    const record = (fields: Record<string, unknown>, message: string) => void lines.push({ fields, message });
    const { pool, sleep, shout, crashThread } = makeThreadedPool({
      name: "fly-threads",
      max: 1,
      runnerThreads: 2,
      bootTimeout: 10_000,
      log: { debug: record, info: record, warn: record, error: record },
      backend: testFlyBackend(emulator, { guest: { cpuKind: "performance", cpus: 2, memoryMb: 4096 }, init: { cmd: runnerCommand(threadedEntry) } }),
    });
    try {
      const [first, second] = await Promise.all([sleep(100), sleep(100)]);
      expect(new Set([first.thread, second.thread])).toEqual(new Set([1, 2]));
      expect(first.pid).toBe(second.pid);
      expect(emulator.machines()).toHaveLength(1);

      const thread = await shout("over the wire");
      await waitFor(() => lines.some((line) => line.message === `over the wire from thread ${thread}`), "the thread's forwarded line");
      const line = lines.find((candidate) => candidate.message === `over the wire from thread ${thread}`)!;
      // console.warn keeps its level, and the thread is a field of the line, not part of its text.
      expect(line.fields).toMatchObject({ stream: "runner", thread });

      const bystander = sleep(800);
      await expect(crashThread("exit")).rejects.toBeInstanceOf(ThreadExitedError);
      expect((await bystander).pid).toBe(first.pid);
      // The replaced thread takes calls again once it has loaded the app.
      let after: Array<{ thread: number; pid: number }> = [];
      await waitFor(async () => {
        after = await Promise.all([sleep(50), sleep(50)]);
        return new Set(after.map((call) => call.thread)).size === 2;
      }, "both threads to take calls again");
      expect(after.every((call) => call.pid === first.pid)).toBe(true);
      expect(emulator.machines()).toHaveLength(1);
    } finally {
      await pool.stop();
    }
  });
});
