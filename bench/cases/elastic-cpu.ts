/**
 * Case 5, elastic CPU work: many CPU-bound calls of a few ms each on a pool
 * starting from zero runners (boot time included), against the same work in
 * this one process and on piscina with 2 threads (thread start included).
 * flame-ts runs in three shapes, all measured in the same repetitions:
 * 2 runners of 1 thread (max 2, maxConcurrency 1: parallel processes),
 * 1 runner of 2 threads (max 1, runnerThreads 2, maxConcurrency 4: parallel
 * worker threads in one runner, each with a call queued behind the one it
 * runs, so no thread waits idle while a result travels to the parent and the
 * next call back; with maxConcurrency 2 it read 1.26x piscina against 1.19x),
 * and 1 runner of 1 thread (no parallelism: what one remote process costs
 * against doing the work here).
 */
import { availableParallelism } from "node:os";
import type { PoolOptions } from "flame-ts";
import type { BenchContext } from "../lib/context.js";
import { interleave } from "../lib/measure.js";
import { startPiscina } from "../lib/peers.js";
import { compare, type CaseResult } from "../lib/report.js";
import { median, ratios } from "../lib/stats.js";
// A plain JavaScript module, shared with the runners and the piscina threads so all run the same code.
import { burn as burnWork } from "../fixtures/work.mjs";

/** Iterations of `burn` that take about `milliseconds` here (after warming it up). */
function calibrate(milliseconds: number): number {
  let iterations = 100_000;
  for (;;) {
    const start = performance.now();
    burnWork(iterations);
    const elapsed = performance.now() - start;
    if (elapsed > 50) return Math.round((iterations / elapsed) * milliseconds);
    iterations *= 2;
  }
}

/** A flame-ts pool shape this case runs: how many runners, and how many threads each. */
type PoolShape = Pick<PoolOptions, "max" | "maxConcurrency" | "runnerThreads">;

export async function elasticCpuCase(context: BenchContext): Promise<CaseResult[]> {
  const calls = context.quick ? 500 : 2_000;
  const callMilliseconds = 3;
  const repetitions = context.quick ? 2 : 5;
  const workers = 2;
  const iterations = calibrate(callMilliseconds);
  context.progress(
    `elastic CPU: ${repetitions} x ${calls} calls of ~${callMilliseconds} ms; flame-ts as ${workers} runners x 1 thread, 1 runner x ${workers} threads and 1 runner x 1 thread (${availableParallelism()} cores here)`,
  );
  let poolNumber = 0;
  // Wall time of all calls on a fresh pool of `shape`, from zero runners: boots and thread starts are in it.
  const onFlame = async (shape: PoolShape): Promise<number> => {
    const { pool, burn: remoteBurn } = context.flame.makePool({ name: `bench-elastic-${++poolNumber}`, min: 0, ...shape });
    try {
      const start = performance.now();
      await Promise.all(Array.from({ length: calls }, () => remoteBurn(iterations)));
      return (performance.now() - start) / 1000;
    } finally {
      await pool.stop();
    }
  };
  const samples = await interleave(
    {
      flame: () => onFlame({ max: workers, maxConcurrency: 1 }),
      flameThreads: () => onFlame({ max: 1, runnerThreads: workers, maxConcurrency: 2 * workers }),
      flameOneThread: () => onFlame({ max: 1, maxConcurrency: 1 }),
      oneProcess: async () => {
        const start = performance.now();
        for (let i = 0; i < calls; i++) burnWork(iterations);
        return (performance.now() - start) / 1000;
      },
      piscina: async () => {
        const start = performance.now();
        const piscina = startPiscina(workers);
        try {
          await Promise.all(Array.from({ length: calls }, () => piscina.run(iterations, { name: "burn" })));
          return (performance.now() - start) / 1000;
        } finally {
          await piscina.destroy();
        }
      },
    },
    repetitions,
  );
  const speedUp = (ratio: number) => `speed-up ${(1 / ratio).toFixed(2)}x`;
  const piscinaVsOne = median(ratios(samples.piscina, samples.oneProcess));
  const piscinaNote = () => `piscina's ${speedUp(piscinaVsOne)}`;
  // One result per flame-ts shape (the flame-ts column is that shape's figure); they print in this order.
  const result = (id: string, shape: string, comparisons: CaseResult["comparisons"]): CaseResult => ({
    id,
    title: "5. Elastic CPU work",
    metric: `${calls} x ~${callMilliseconds} ms, wall time incl. boot, ${shape}`,
    unit: "s",
    better: "lower",
    repetitions,
    perRepetition: `${calls} calls from an empty pool`,
    comparisons,
  });
  return [
    result("elastic-cpu", `${workers} runners x 1 thread`, [
      compare("one process", samples.flame, samples.oneProcess, { note: speedUp }),
      compare(`piscina, ${workers} threads`, samples.flame, samples.piscina, { note: piscinaNote }),
    ]),
    result("elastic-cpu-threads", `1 runner x ${workers} threads`, [
      compare("one process", samples.flameThreads, samples.oneProcess, { note: speedUp }),
      // The target: a runner's threads come within 10% of piscina's threads, boot and thread start included.
      compare(`piscina, ${workers} threads`, samples.flameThreads, samples.piscina, {
        note: piscinaNote,
        target: (ratio) => ({ text: "<= 1.1x", met: ratio <= 1.1 }),
      }),
      compare(`flame-ts, ${workers} runners x 1 thread`, samples.flameThreads, samples.flame),
      compare("flame-ts, 1 runner x 1 thread", samples.flameThreads, samples.flameOneThread, { note: speedUp }),
    ]),
    result("elastic-cpu-one-thread", "1 runner x 1 thread", [compare("one process", samples.flameOneThread, samples.oneProcess, { note: speedUp })]),
  ];
}
