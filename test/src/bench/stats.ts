import * as hdr from "hdr-histogram-js";

/** Latency recorder in microseconds, reported in milliseconds. */
export class Latencies {
  private readonly histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });

  record(ms: number): void {
    this.histogram.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  get count(): number {
    return this.histogram.totalCount;
  }

  percentileMs(p: number): number {
    return round(this.histogram.getValueAtPercentile(p) / 1000, 3);
  }

  summary(): { p50_ms: number; p99_ms: number } {
    return { p50_ms: this.percentileMs(50), p99_ms: this.percentileMs(99) };
  }
}

export function round(value: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Resident memory of a process, from /proc, in MiB: all of it (VmRSS), its anonymous part
 * (RssAnon: heaps, buffers) and the pages of mapped files (RssFile: the index's memory map,
 * the node binary), which the kernel reclaims under memory pressure.
 */
export async function rssMiB(
  pid: number,
): Promise<{ rss_mb: number; rss_anon_mb: number; rss_file_mb: number }> {
  const { readFile } = await import("node:fs/promises");
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string): number => {
    const match = new RegExp(`${name}:\\s+(\\d+)\\s+kB`).exec(status);
    if (!match?.[1]) throw new Error(`no ${name} for pid ${pid}`);
    return round(Number(match[1]) / 1024, 1);
  };
  return { rss_mb: field("VmRSS"), rss_anon_mb: field("RssAnon"), rss_file_mb: field("RssFile") };
}
