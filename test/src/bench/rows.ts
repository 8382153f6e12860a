/**
 * Rows that several runs share (main.ts's plain runs, partitions.ts): each returns its row
 * for the caller to emit with the run's tags.
 */
import type { ChorusClient } from "@chorus/client";
import { performance } from "node:perf_hooks";
import { event } from "./events.js";
import type { CpuColumns, CpuMark, ServerPids } from "./proc.js";
import { Latencies, round } from "./stats.js";

/** What a shared row needs of its run. */
export interface RowCtx {
  readonly args: { readonly quick: boolean };
  readonly client: ChorusClient;
  readonly nodes: number;
  readonly cpu: {
    start(pids: ServerPids): CpuMark;
    stop(mark: CpuMark, events: number): CpuColumns;
  };
  /** The server processes now: the leader's pid and the followers'. */
  servers(): Promise<ServerPids>;
}

export type Row = Record<string, unknown>;

/** Appends the pipelined row keeps in flight. */
export const PIPELINED_IN_FLIGHT = 256;

/** One client keeps `inFlight` (256) appends in flight over 1,000 streams; CPU columns. */
export async function appendPipelined(
  ctx: RowCtx,
  inFlight: number = PIPELINED_IN_FLIGHT,
): Promise<Row> {
  const n = ctx.args.quick ? 5000 : 100_000;
  const lat = new Latencies();
  await warmPipelined(ctx, inFlight);
  const servers = await ctx.servers();
  const cpu = ctx.cpu.start(servers);
  const s = await pipelinedSlice(ctx, n, lat, inFlight);
  const cpuColumns = ctx.cpu.stop(cpu, n);
  return {
    test: "append-pipelined",
    nodes: ctx.nodes,
    n,
    in_flight: inFlight,
    ops_per_s: round(n / s),
    ...lat.summary(),
    ...cpuColumns,
  };
}

/**
 * The pipelined row's warm-up, not measured: long enough for the servers' JIT to settle.
 * After 5,000 appends a single node still compiled on background threads and the row read
 * about a quarter more CPU per event than after 30,000 or more, which all read alike.
 * A follower settles later: it runs its code once per replicated batch (tens of events), not
 * once per append, so its functions reach the compiler's thresholds later. Measured in
 * windows of 50,000 appends after the start, followers spent 34, 23-25, 16-21 µs per event,
 * then 12-17 from about 200,000 on, while the V8 log showed optimizing compiles going on until
 * then; the leader and the client had settled by 100,000.
 */
export const PIPELINED_WARM = { single: 30_000, cluster: 200_000, quick: 500 } as const;

export async function warmPipelined(
  ctx: RowCtx,
  inFlight: number = PIPELINED_IN_FLIGHT,
): Promise<void> {
  const warm = ctx.args.quick
    ? PIPELINED_WARM.quick
    : ctx.nodes > 1
      ? PIPELINED_WARM.cluster
      : PIPELINED_WARM.single;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = w; i < warm; i += inFlight)
        await ctx.client.appendToStream(`pipe-${i % 1000}`, event(i));
    }),
  );
}

/** `count` appends, `inFlight` (256) at a time over 1,000 streams, each latency into `lat`; the seconds. */
export async function pipelinedSlice(
  ctx: RowCtx,
  count: number,
  lat: Latencies,
  inFlight: number = PIPELINED_IN_FLIGHT,
): Promise<number> {
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const t0 = performance.now();
      await ctx.client.appendToStream(`pipe-${i % 1000}`, event(i));
      lat.record(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return (performance.now() - start) / 1000;
}

/** The longest wait for a `$all` subscription to go live before the row starts. */
const LIVE_DEADLINE_MS = 30_000;

/** Writers of the subscribe-live row. */
export const LIVE_WRITERS = 32;

/**
 * Live delivery while `writers` (32) writers append. `over: "stream"` (the plain rows): a subscription
 * to the one stream they write. `over: "$all"`: a subscription to `$all` from its end (with
 * partitions, every group's, merged), live before the writers start, while they write over
 * 64 streams (with partitions, spread over the groups). CPU columns.
 */
export async function subscribeLive(
  ctx: RowCtx,
  over: "stream" | "$all" = "stream",
  writers: number = LIVE_WRITERS,
): Promise<Row> {
  // Warm-up, not measured: a short round of the same work first (the append rows warm up
  // too), so that the row measures the code as it runs, not as the JIT first meets it.
  await liveRound(ctx, over, ctx.args.quick ? 200 : 5000, writers);
  return liveRound(ctx, over, ctx.args.quick ? 2000 : 50_000, writers);
}

let liveRounds = 0;

async function liveRound(
  ctx: RowCtx,
  over: "stream" | "$all",
  n: number,
  writers: number,
): Promise<Row> {
  const prefix = `live-${Date.now()}-${++liveRounds}`;
  const streamOf = over === "stream" ? () => prefix : (i: number) => `${prefix}-${i % 64}`;
  const sub =
    over === "stream"
      ? ctx.client.subscribeToStream(prefix, { fromRevision: "start" })
      : ctx.client.subscribeToAll({ fromPosition: "end" });
  const live =
    over === "stream"
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`subscribe-live: $all not live within ${LIVE_DEADLINE_MS} ms`)),
            LIVE_DEADLINE_MS,
          );
          sub.once("caughtUp", () => {
            clearTimeout(timer);
            resolve();
          });
        });
  const lat = new Latencies();
  // When each event was sent, by its n (0: not sent, or received already). An array, not a
  // Map: an insert and a delete per event would rebuild a Map's table every few hundred
  // events and cost the bench process CPU that the row charges to the client.
  const sentAt = new Float64Array(n);
  let received = 0;
  let cpu: CpuMark | undefined;
  const servers = await ctx.servers();
  if (over === "stream") cpu = ctx.cpu.start(servers);
  let start = performance.now();
  const reader = (async () => {
    for await (const e of sub) {
      if (!e.event.streamId.startsWith(prefix)) continue;
      const data = e.event.data as { n: number };
      const t = sentAt[data.n] ?? 0;
      if (t > 0) {
        lat.record(performance.now() - t);
        sentAt[data.n] = 0;
      }
      if (++received >= n) break;
    }
  })();
  try {
    await live;
  } catch (err) {
    await sub.unsubscribe();
    await reader;
    throw err;
  }
  if (cpu === undefined) {
    cpu = ctx.cpu.start(servers);
    start = performance.now();
  }
  let next = 0;
  const writer = async () => {
    while (next < n) {
      const i = next++;
      sentAt[i] = performance.now();
      await ctx.client.appendToStream(streamOf(i), event(i));
    }
  };
  await Promise.all(Array.from({ length: writers }, writer));
  await reader;
  const s = (performance.now() - start) / 1000;
  return {
    test: "subscribe-live",
    nodes: ctx.nodes,
    n,
    writers,
    ...(over === "$all" && { over: "$all", streams: 64 }),
    ops_per_s: round(received / s),
    ...lat.summary(),
    ...ctx.cpu.stop(cpu, received),
  };
}
