/**
 * Case 7, runner memory by thread count: the resident memory (VmRSS) of an
 * idle runner process after its first call, with `runnerThreads` 1, 2 and 4,
 * each a fresh runner booted from an empty pool. With 1 the calls run on the
 * runner's main thread; with N above 1 the runner adds N worker threads, each
 * a V8 isolate that imports the app again, so this is what a thread costs a
 * machine. The ratios are against the 1-thread runner of the same repetition.
 * Linux only: the reading is /proc/<pid>/status, whose VmRSS counts every
 * thread of the process.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import type { BenchContext } from "../lib/context.js";
import { interleave } from "../lib/measure.js";
import { compare, type CaseResult, type SkippedCase } from "../lib/report.js";
import { median } from "../lib/stats.js";

/**
 * After the first result, the runner still finishes work of its own (its
 * reply, the end of the call's bookkeeping); a short pause lets the reading
 * be of an idle runner, not one caught mid-call.
 */
const SETTLE_MS = 200;

/** A process's resident memory in MiB, from the VmRSS line (in kB) of its /proc status. */
async function residentMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kilobytes = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (kilobytes === undefined) throw new Error(`no VmRSS line in /proc/${pid}/status`);
  return Number(kilobytes) / 1024;
}

export interface RunnerMemoryOutcome {
  results: CaseResult[];
  skipped: SkippedCase[];
}

export async function runnerMemoryCase(context: BenchContext): Promise<RunnerMemoryOutcome> {
  if (!existsSync("/proc/self/status")) return { results: [], skipped: [{ id: "runner-memory", reason: "needs Linux's /proc/<pid>/status" }] };
  const repetitions = context.quick ? 2 : 5;
  context.progress(`runner memory: ${repetitions} x (an idle runner after its first call, runnerThreads 1, 2 and 4)`);
  let poolNumber = 0;
  const idleRunnerMiB = async (threads: number): Promise<number> => {
    const { pool, pid } = context.flame.makePool({ name: `bench-runner-memory-${++poolNumber}`, min: 0, max: 1, runnerThreads: threads });
    try {
      const runnerPid = await pid();
      // Check the runner really started its threads (1 means calls on the main thread: 0 worker threads).
      const started = pool.stats().threads.runners[0]?.threads ?? 0;
      const expected = threads === 1 ? 0 : threads;
      if (started !== expected) throw new Error(`a runner with runnerThreads ${threads} reported ${started} worker threads`);
      await delay(SETTLE_MS);
      return await residentMiB(runnerPid);
    } finally {
      await pool.stop();
    }
  };
  const samples = await interleave({ threads1: () => idleRunnerMiB(1), threads2: () => idleRunnerMiB(2), threads4: () => idleRunnerMiB(4) }, repetitions);
  const oneThread = samples.threads1;
  const results = ([2, 4] as const).map((threads): CaseResult => {
    const flame = samples[`threads${threads}`];
    // runnerThreads 1 runs calls on the main thread; N above 1 adds N worker threads beside it, so divide by N.
    const perWorkerThread = (median(flame) - median(oneThread)) / threads;
    return {
      id: `runner-memory-${threads}-threads`,
      title: "7. Runner memory",
      metric: `idle runner RSS after its first call, runnerThreads ${threads}`,
      unit: "MiB",
      better: "lower",
      repetitions,
      perRepetition: "one fresh runner per thread count",
      comparisons: [compare("runner, runnerThreads 1", flame, oneThread, { note: () => `+${perWorkerThread.toFixed(1)} MiB per worker thread` })],
    };
  });
  return { results, skipped: [] };
}
