/**
 * The admin JSON endpoints (docs/http-api.md), the ones the admin UI at /ui/ reads, from a
 * script: a node's stats, the streams under a prefix, and every persistent subscription group
 * with parked events, whose parked events are replayed.
 *
 *   npm start                                        # in one terminal: a local cluster
 *   node examples/dist/admin-api.js order-           # in another; open the printed /ui/ URL too
 *
 * CHORUS_HTTP overrides the node's HTTP address; CHORUS_PASSWORD gives the admin password of a
 * node with authentication on.
 */
import { pathToFileURL } from "node:url";

export interface AdminOptions {
  /** The node's external HTTP address, e.g. http://127.0.0.1:2113 */
  readonly baseUrl: string;
  /** The admin password, when the node has authentication on. */
  readonly password?: string;
  /** Streams whose names start with this are listed. */
  readonly prefix: string;
  /** Replays the parked events of every group that has some. */
  readonly replayParked: boolean;
  /** Default 10,000 ms per request. */
  readonly timeoutMs?: number;
}

interface Stats {
  state: string;
  store: { events: number; streams: number; commitPosition: string };
  appendLatency: { count: number; p50Ms: number | null; p99Ms: number | null };
}
interface StreamList {
  streams: { streamId: string; lastRevision: string; lastEventType: string }[];
  next: string | null;
}
interface Groups {
  subscriptions: { streamId: string; group: string; consumers: unknown[]; parkedCount: number }[];
}

export async function run(options: AdminOptions, log: (line: string) => void): Promise<void> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.password !== undefined)
    headers["Authorization"] =
      `Basic ${Buffer.from(`admin:${options.password}`).toString("base64")}`;
  const call = async <T>(path: string, method = "GET"): Promise<T> => {
    const res = await fetch(new URL(path, options.baseUrl), {
      method,
      headers,
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    const body = (await res.json()) as T & { error?: string; message?: string };
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${body.error}: ${body.message}`);
    return body;
  };

  log(`admin UI: ${new URL("/ui/", options.baseUrl).href}`);
  const stats = await call<Stats>("/stats");
  log(
    `node ${stats.state}: ${stats.store.events} events in ${stats.store.streams} streams, ` +
      `commit position ${stats.store.commitPosition}, append p50 ${stats.appendLatency.p50Ms ?? "-"} ms, p99 ${stats.appendLatency.p99Ms ?? "-"} ms`,
  );

  // Every stream under the prefix, a page at a time.
  let after: string | null = null;
  do {
    const query = new URLSearchParams({ prefix: options.prefix, limit: "100" });
    if (after !== null) query.set("after", after);
    const page: StreamList = await call<StreamList>(`/streams?${query.toString()}`);
    for (const s of page.streams)
      log(`stream ${s.streamId}: last revision ${s.lastRevision} (${s.lastEventType})`);
    after = page.next;
  } while (after !== null);

  const { subscriptions } = await call<Groups>("/subscriptions");
  for (const g of subscriptions) {
    log(`group ${g.streamId}/${g.group}: ${g.consumers.length} consumers, ${g.parkedCount} parked`);
    if (options.replayParked && g.parkedCount > 0) {
      const path = `/subscriptions/${encodeURIComponent(g.streamId)}/${encodeURIComponent(g.group)}/replay-parked`;
      const { replayed } = await call<{ replayed: number }>(path, "POST");
      log(`group ${g.streamId}/${g.group}: replaying ${replayed} parked events`);
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await run(
    {
      baseUrl: process.env.CHORUS_HTTP ?? "http://127.0.0.1:21113",
      ...(process.env.CHORUS_PASSWORD !== undefined && { password: process.env.CHORUS_PASSWORD }),
      prefix: process.argv[2] ?? "",
      replayParked: process.argv.includes("--replay-parked"),
    },
    (line) => console.log(line),
  );
}
