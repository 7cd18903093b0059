/**
 * A summary of durations for `pool.stats()`: count, sum and max since the pool
 * was made (monotonic, so a dashboard can take rates and means from two
 * readings), and the median and 99th percentile of the most recent samples
 * (a fixed window, so memory stays bounded and old traffic ages out).
 * Recording is a few writes into a preallocated ring; the percentiles are
 * computed only when read.
 */

/** What `pool.stats()` reports for a duration, in milliseconds. */
export interface DurationStats {
  /** Samples since the pool was made. */
  count: number;
  /** Their sum, in ms. */
  sum: number;
  /** The longest, in ms (0 before the first sample). */
  max: number;
  /** Median of the last RECENT_WINDOW samples, in ms (0 before the first sample). */
  p50: number;
  /** 99th percentile of the last RECENT_WINDOW samples, in ms (0 before the first sample). */
  p99: number;
}

/** How many of the latest samples the percentiles are taken over. */
export const RECENT_WINDOW = 1_024;

export class DurationSummary {
  private count = 0;
  private sum = 0;
  private max = 0;
  private readonly recent = new Float64Array(RECENT_WINDOW);

  /** Adds a duration, in ms. */
  record(milliseconds: number): void {
    this.recent[this.count % RECENT_WINDOW] = milliseconds;
    this.count += 1;
    this.sum += milliseconds;
    if (milliseconds > this.max) this.max = milliseconds;
  }

  snapshot(): DurationStats {
    const window = this.recent.slice(0, Math.min(this.count, RECENT_WINDOW)).sort();
    return { count: this.count, sum: this.sum, max: this.max, p50: nearestRank(window, 50), p99: nearestRank(window, 99) };
  }
}

/** The nearest-rank percentile of sorted `values`, 0 when there are none. */
function nearestRank(values: Float64Array, percentile: number): number {
  if (values.length === 0) return 0;
  return values[Math.max(0, Math.ceil((percentile / 100) * values.length) - 1)]!;
}
