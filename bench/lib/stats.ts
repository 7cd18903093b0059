/** Small statistics for benchmark samples: medians, percentiles, ratios. */

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The nearest-rank percentile `p` (0-100) of `values`; with few samples the p99 is the maximum. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** Per-repetition ratios `numerator[i] / denominator[i]` (the repetitions were interleaved pairwise). */
export function ratios(numerator: readonly number[], denominator: readonly number[]): number[] {
  return numerator.map((value, index) => value / denominator[index]!);
}
