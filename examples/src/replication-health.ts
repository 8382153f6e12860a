/**
 * Replication health from the nodes' Prometheus metrics (docs/metrics.md): finds the leader
 * among the nodes, and reports for each follower how far behind it is (bytes, and the age of
 * the oldest record it has not acknowledged) and the leader's replication round trip p99,
 * estimated from the histogram's buckets the way PromQL's `histogram_quantile` does. Exits
 * with 1 when a follower is further behind than the limits.
 *
 *   npm start                                       # in one terminal: a local three-node cluster
 *   node examples/dist/replication-health.js        # in another
 *
 * CHORUS_HTTP overrides the nodes' HTTP addresses (comma-separated), MAX_LAG_SECONDS (10) and
 * MAX_LAG_BYTES (64 MiB) the limits. The same checks as Prometheus alerting rules:
 * examples/prometheus/chorus-alerts.yml.
 */
import { pathToFileURL } from "node:url";

export interface HealthOptions {
  /** Every node's external HTTP address, e.g. http://127.0.0.1:21113 */
  readonly nodes: readonly string[];
  /** A follower whose oldest unacknowledged record is older is unhealthy. Default 10. */
  readonly maxLagSeconds?: number;
  /** A follower further behind in bytes is unhealthy. Default 64 MiB. */
  readonly maxLagBytes?: number;
  /** Deadline of each scrape. Default 10,000 ms. */
  readonly timeoutMs?: number;
}

export interface FollowerHealth {
  /** The follower's internal TCP endpoint, as the `follower` label gives it. */
  readonly follower: string;
  readonly lagBytes: number;
  readonly lagSeconds: number;
  readonly healthy: boolean;
}

export interface ReplicationHealth {
  /** The leader's HTTP address. */
  readonly leader: string;
  /** p99 of the leader's replication round trips since it started; null before any. */
  readonly roundTripP99Seconds: number | null;
  readonly followers: readonly FollowerHealth[];
  readonly healthy: boolean;
}

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a text exposition (comments skipped). */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]!.replace(/inf/i, "Infinity")) });
  }
  return out;
}

/**
 * The q-quantile of a histogram from its cumulative buckets (`le` -> count, +Inf included),
 * as PromQL's histogram_quantile: linear within the bucket that holds it; the highest finite
 * bound when it falls in +Inf. null for an empty histogram.
 */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted[sorted.length - 1]?.[1] ?? 0;
  if (total === 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      if (count === lowerCount) return le;
      return lowerBound + ((le - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}

async function scrape(node: string, timeoutMs: number): Promise<Sample[] | undefined> {
  try {
    const res = await fetch(new URL("/metrics", node), { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok ? parseSamples(await res.text()) : undefined;
  } catch {
    return undefined; // a node that is down is simply not the leader
  }
}

export async function run(
  options: HealthOptions,
  log: (line: string) => void,
): Promise<ReplicationHealth> {
  const maxLagSeconds = options.maxLagSeconds ?? 10;
  const maxLagBytes = options.maxLagBytes ?? 64 * 1024 * 1024;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const scrapes = await Promise.all(options.nodes.map((n) => scrape(n, timeoutMs)));
  const index = scrapes.findIndex((s) =>
    s?.some((x) => x.name === "chorus_node_role" && x.labels.role === "Leader" && x.value === 1),
  );
  const samples = scrapes[index];
  if (samples === undefined) throw new Error(`no leader among ${options.nodes.join(", ")}`);
  const leader = options.nodes[index]!;

  const buckets = new Map<number, number>();
  for (const s of samples) {
    if (s.name === "chorus_replication_round_trip_seconds_bucket") {
      buckets.set(Number((s.labels.le ?? "").replace(/inf/i, "Infinity")), s.value);
    }
  }
  const roundTripP99Seconds = histogramQuantile(0.99, buckets);
  const lagOf = (name: string) =>
    new Map(samples.filter((s) => s.name === name).map((s) => [s.labels.follower!, s.value]));
  const bytes = lagOf("chorus_replication_lag_bytes");
  const seconds = lagOf("chorus_replication_lag_seconds");
  const followers = [...bytes.keys()].sort().map((follower) => {
    const lagBytes = bytes.get(follower)!;
    const lagSeconds = seconds.get(follower) ?? 0;
    const healthy = lagBytes <= maxLagBytes && lagSeconds <= maxLagSeconds;
    return { follower, lagBytes, lagSeconds, healthy };
  });

  const p99 = roundTripP99Seconds === null ? "-" : `${(roundTripP99Seconds * 1000).toFixed(1)} ms`;
  log(`leader ${leader}: replication round trip p99 ${p99}`);
  for (const f of followers) {
    log(
      `follower ${f.follower}: ${f.lagBytes} bytes, ${f.lagSeconds.toFixed(3)} s behind` +
        (f.healthy ? "" : "  <- LAGGING"),
    );
  }
  const healthy = followers.every((f) => f.healthy);
  return { leader, roundTripP99Seconds, followers, healthy };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const nodes = (
    process.env.CHORUS_HTTP ??
    "http://127.0.0.1:21113,http://127.0.0.1:22113,http://127.0.0.1:23113"
  ).split(",");
  const health = await run(
    {
      nodes,
      ...(process.env.MAX_LAG_SECONDS !== undefined && {
        maxLagSeconds: Number(process.env.MAX_LAG_SECONDS),
      }),
      ...(process.env.MAX_LAG_BYTES !== undefined && {
        maxLagBytes: Number(process.env.MAX_LAG_BYTES),
      }),
    },
    (line) => console.log(line),
  );
  process.exitCode = health.healthy ? 0 : 1;
}
