/**
 * Rates and latency quantiles between two samples of the node's cumulative counters (pure).
 */
import type { NodeStats } from "./api.js";

/**
 * The value at quantile `q` (0..1) of a histogram given as cumulative counts per upper bound
 * (the last count is the total, the overflow included): linear within a bucket; the largest
 * bound when it falls in the overflow. null without observations.
 */
export function quantileOf(
  bounds: readonly number[],
  cumulative: readonly number[],
  total: number,
  q: number,
): number | null {
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  let lower = 0;
  for (let i = 0; i < bounds.length; i++) {
    const upTo = cumulative[i] ?? below;
    const upper = bounds[i] ?? lower;
    if (upTo >= rank) {
      const inBucket = upTo - below;
      return inBucket <= 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
    }
    below = upTo;
    lower = upper;
  }
  return bounds[bounds.length - 1] ?? null;
}

export interface Interval {
  /** Seconds since the Unix epoch at the end of the interval. */
  t: number;
  appendsPerSec: number;
  eventsPerSec: number;
  readsPerSec: number;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
}

/** What happened between two samples; null when they are not in order or the node restarted. */
export function interval(prev: NodeStats, next: NodeStats): Interval | null {
  const dt = (Date.parse(next.time) - Date.parse(prev.time)) / 1000;
  if (!(dt > 0) || prev.instanceId !== next.instanceId) return null;
  const rate = (a: number, b: number): number => Math.max(0, b - a) / dt;
  const bounds = next.appendLatency.bucketsMs.map((b) => b.le);
  const diff = next.appendLatency.bucketsMs.map(
    (b, i) => b.count - (prev.appendLatency.bucketsMs[i]?.count ?? 0),
  );
  const total = next.appendLatency.count - prev.appendLatency.count;
  return {
    t: Date.parse(next.time) / 1000,
    appendsPerSec: rate(prev.totals.appends, next.totals.appends),
    eventsPerSec: rate(prev.totals.eventsWritten, next.totals.eventsWritten),
    readsPerSec: rate(prev.totals.reads, next.totals.reads),
    p50Ms: quantileOf(bounds, diff, total, 0.5),
    p90Ms: quantileOf(bounds, diff, total, 0.9),
    p99Ms: quantileOf(bounds, diff, total, 0.99),
  };
}
