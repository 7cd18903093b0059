/**
 * The measuring loops every case shares: sequential latency, closed-loop
 * throughput with a fixed number in flight, and interleaved repetitions.
 */
import { median, percentile } from "./stats.js";

/** Latencies of `count` sequential awaits of `operation`, in ms. */
export async function sequentialLatencies(count: number, operation: () => Promise<unknown>): Promise<number[]> {
  const latencies = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await operation();
    latencies[i] = performance.now() - start;
  }
  return latencies;
}

/** What one latency batch reduces to. */
export interface LatencySummary {
  median: number;
  p99: number;
  /** Parent CPU (user + system) spent on the batch, in ms per 10 000 operations. */
  cpuPer10k: number;
}

/** Runs `count` sequential operations and summarizes their latencies and the parent's CPU time. */
export async function latencyBatch(count: number, operation: () => Promise<unknown>): Promise<LatencySummary> {
  const cpu = process.cpuUsage();
  const latencies = await sequentialLatencies(count, operation);
  const used = process.cpuUsage(cpu);
  return { median: median(latencies), p99: percentile(latencies, 99), cpuPer10k: cpuPer10k(used, count) };
}

/** What one throughput batch reduces to. */
export interface RateSummary {
  /** Operations per second. */
  rate: number;
  /** Parent CPU (user + system) per 10 000 operations, in ms. */
  cpuPer10k: number;
}

/**
 * Keeps `inFlight` operations running until `total` have completed (each
 * completion starts the next), and returns the completion rate.
 */
export async function closedLoopRate(total: number, inFlight: number, operation: () => Promise<unknown>): Promise<RateSummary> {
  let started = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  const lane = async () => {
    while (started < total) {
      started += 1;
      await operation();
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, lane));
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { rate: (total / elapsed) * 1000, cpuPer10k: cpuPer10k(used, total) };
}

function cpuPer10k(used: NodeJS.CpuUsage, operations: number): number {
  return ((used.user + used.system) / 1000 / operations) * 10_000;
}

/**
 * Runs each contender once per repetition after `warmup` unmeasured rounds,
 * rotating which goes first so drift on a shared machine hits all of them alike.
 * Returns each contender's results, one per measured repetition, in order.
 */
export async function interleave<K extends string, T>(
  contenders: Record<K, () => Promise<T>>,
  repetitions: number,
  warmup = 1,
): Promise<Record<K, T[]>> {
  const names = Object.keys(contenders) as K[];
  const results = Object.fromEntries(names.map((name) => [name, [] as T[]])) as Record<K, T[]>;
  for (let round = 0; round < warmup + repetitions; round++) {
    const shift = round % names.length;
    const order = [...names.slice(shift), ...names.slice(0, shift)];
    for (const name of order) {
      const result = await contenders[name]();
      if (round >= warmup) results[name].push(result);
    }
  }
  return results;
}
