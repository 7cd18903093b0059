/**
 * Case 6b, parent CPU: the parent's CPU time (user + system, process.cpuUsage)
 * per 10 000 calls, taken from the round-trip and throughput repetitions,
 * against what the parent spends on the raw ws echo (and on workerpool, whose
 * worker is also another process) for as many messages.
 */
import type { LatencySummary, RateSummary } from "../lib/measure.js";
import { compare, type CaseResult } from "../lib/report.js";
import { IN_FLIGHT } from "../lib/warm-rig.js";

export function parentCpuCase(
  sequential: Record<"flame" | "ws", LatencySummary[]>,
  concurrent: Record<"flame" | "ws" | "workerpool", RateSummary[]>,
): CaseResult {
  const cpu = (samples: Array<{ cpuPer10k: number }>) => samples.map((s) => s.cpuPer10k);
  return {
    id: "parent-cpu",
    title: "6b. Parent CPU",
    metric: "CPU ms per 10 000 calls",
    unit: "ms",
    better: "lower",
    repetitions: sequential.flame.length,
    perRepetition: "the round-trip and throughput repetitions",
    comparisons: [
      compare("raw ws echo, sequential", cpu(sequential.flame), cpu(sequential.ws)),
      compare(`raw ws echo, ${IN_FLIGHT} in flight`, cpu(concurrent.flame), cpu(concurrent.ws), { target: (ratio) => ({ text: "<= 1x", met: ratio <= 1 }) }),
      compare(`workerpool, ${IN_FLIGHT} in flight`, cpu(concurrent.flame), cpu(concurrent.workerpool)),
    ],
  };
}
