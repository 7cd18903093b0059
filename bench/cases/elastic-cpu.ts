/**
 * Case 5, elastic CPU work: many CPU-bound calls of a few ms each on a pool
 * of max 2 runners starting from zero (boot time included), against the same
 * work in this one process and on piscina with 2 threads (thread start included).
 */
import { availableParallelism } from "node:os";
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

export async function elasticCpuCase(context: BenchContext): Promise<CaseResult> {
  const calls = context.quick ? 500 : 2_000;
  const callMilliseconds = 3;
  const repetitions = context.quick ? 2 : 5;
  const workers = 2;
  const iterations = calibrate(callMilliseconds);
  context.progress(`elastic CPU: ${repetitions} x ${calls} calls of ~${callMilliseconds} ms, max ${workers} runners (${availableParallelism()} cores here)`);
  let poolNumber = 0;
  const samples = await interleave(
    {
      flame: async () => {
        const { pool, burn: remoteBurn } = context.flame.makePool({ name: `bench-elastic-${++poolNumber}`, min: 0, max: workers, maxConcurrency: 1 });
        try {
          const start = performance.now();
          await Promise.all(Array.from({ length: calls }, () => remoteBurn(iterations)));
          return (performance.now() - start) / 1000;
        } finally {
          await pool.stop();
        }
      },
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
  return {
    id: "elastic-cpu",
    title: "5. Elastic CPU work",
    metric: `${calls} x ~${callMilliseconds} ms, wall time incl. boot`,
    unit: "s",
    better: "lower",
    repetitions,
    perRepetition: `${calls} calls from an empty pool`,
    comparisons: [
      compare("one process", samples.flame, samples.oneProcess, { note: speedUp }),
      compare(`piscina, ${workers} threads`, samples.flame, samples.piscina, { note: () => `piscina's ${speedUp(piscinaVsOne)}` }),
    ],
  };
}
