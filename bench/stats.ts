/** Latency summaries for the benchmark. All values are milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of ascending `sorted` values; `p` in (0, 100]. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  const index = Math.min(sorted.length - 1, Math.max(0, rank - 1));
  return sorted[index] ?? Number.NaN;
}

/** Summary of one or more batches of latencies (batches are merged, not averaged). */
export function summarize(batches: readonly ArrayLike<number>[]): LatencySummary {
  const total = batches.reduce((n, b) => n + b.length, 0);
  const all = new Float64Array(total);
  let offset = 0;
  for (const batch of batches) {
    all.set(Array.from(batch), offset);
    offset += batch.length;
  }
  all.sort();
  let sum = 0;
  for (const value of all) sum += value;
  return {
    count: total,
    mean: total > 0 ? sum / total : Number.NaN,
    p50: percentile(all, 50),
    p90: percentile(all, 90),
    p99: percentile(all, 99),
    max: total > 0 ? (all[total - 1] ?? Number.NaN) : Number.NaN,
  };
}

/** Rounds to `digits` decimals, for printing and JSON. */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
