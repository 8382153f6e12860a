/**
 * `npm run bench`: one JSON object per line (rows and fields: README.md in this directory;
 * the design's quality.md). Options: --nodes 1|3, --quick (small counts, CI smoke),
 * --only NAME[,NAME], --profile (a V8 CPU profile of every process, see profile.ts),
 * --db postgres (the rows on instances sharing a PostgreSQL database, with floor rows of raw
 * INSERTs: postgres.ts; every row then carries db: "postgres"), --embedded (the rows a node
 * in the bench's own process serves through withInProcessNode, each beside the same row over
 * loopback to a node process: every row then carries transport and store).
 * `append-seq-floor` is the same sequential append through raw TCP and fdatasync alone
 * (floor.ts): the machine's ceiling for `append-seq`, to read that row as a ratio.
 * --peers: after those rows, `append-seq` and `append-pipelined` on JetStream, etcd and
 * PostgreSQL when installed (peers/runner.ts; every such row carries `peer`).
 * Every figure is from the durable configuration: an on-disk node (fsync before
 * acknowledging) and the client in separate processes.
 */
import { ChorusClient, ConnectionSettings, StreamNotFoundError } from "@chorus/client";
import {
  startCluster,
  startNode,
  waitFor,
  type TestCluster,
  type TestNode,
  type TestPostgresPrimary,
} from "@chorus/testing";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { event, sizedEvent } from "./events.js";
import { SeqFloor, seqFloor } from "./floor.js";
import { indexScale } from "./index-scale.js";
import { CpuMeter, processTree, type CpuColumns, type ServerPids } from "./proc.js";
import { FloorInserts, insertFloor, startPostgresBackend } from "./postgres.js";
import { runPeers } from "./peers/runner.js";
import { Profiling } from "./profile.js";
import { readAllFiltered } from "./read-all-filtered.js";
import {
  appendPipelined,
  PIPELINED_IN_FLIGHT,
  pipelinedSlice,
  subscribeLive,
  warmPipelined,
} from "./rows.js";
import { runPartitions } from "./partitions.js";
import { Latencies, median, round, rssMiB } from "./stats.js";

/** Rows on the shared node(s) of a run, by node count; index-scale starts its own node. */
const CLUSTER_ROWS = [
  "append-seq",
  "append-pipelined",
  "append-batch",
  "subscribe-live",
  "persistent-consume",
  "persistent-consume-awaited",
  "failover",
];
const SINGLE_NODE_ROWS = [
  ...CLUSTER_ROWS.filter((name) => name !== "failover"),
  "memory",
  "read-all",
  "read-all-filtered",
  "read-stream",
  "recovery",
];
const ROWS = new Set(["append-seq-floor", ...CLUSTER_ROWS, ...SINGLE_NODE_ROWS, "index-scale"]);

interface Args {
  nodes: number;
  quick: boolean;
  only: Set<string> | undefined;
  profile: boolean;
  /** "postgres": instances on a shared PostgreSQL database instead of nodes with a log. */
  db: "log" | "postgres";
  /** In-process rows beside loopback ones (runEmbedded). */
  embedded: boolean;
  /** --partitions N: the rows of partitions.ts (N groups beside one plain node). */
  partitions: number | undefined;
  /** After the rows, the same append rows on other systems (peers/runner.ts). */
  peers: boolean;
}

/** Rows of an --embedded run. */
const EMBEDDED_ROWS = new Set(["append-seq-floor", "append-seq", "subscribe-live", "read-all"]);

/** Rows on instances sharing a PostgreSQL database (--db postgres): no memory or recovery. */
const POSTGRES_ROWS = new Set([
  "append-seq-floor",
  ...SINGLE_NODE_ROWS.filter((name) => name !== "memory" && name !== "recovery"),
]);

function parseArgs(argv: string[]): Args {
  const args: Args = {
    nodes: 1,
    quick: false,
    only: undefined,
    profile: false,
    db: "log",
    embedded: false,
    partitions: undefined,
    peers: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i] ?? "";
    if (name === "--quick") args.quick = true;
    else if (name === "--profile") args.profile = true;
    else if (name === "--nodes") args.nodes = Number(value());
    else if (name === "--embedded") args.embedded = true;
    else if (name === "--peers") args.peers = true;
    else if (name === "--partitions") args.partitions = Number(value());
    else if (name === "--only") args.only = new Set(value().split(","));
    else if (name === "--db") {
      const db = value();
      if (db !== "postgres") throw new Error(`--db takes postgres, got ${db}`);
      args.db = db;
    } else
      throw new Error(
        `unknown option ${arg} (known: --nodes 1|3, --quick, --only NAME, --profile, --db postgres, --embedded, --partitions N, --peers)`,
      );
  }
  if (args.nodes !== 1 && args.nodes !== 3) throw new Error("--nodes takes 1 or 3");
  if (args.embedded && (args.nodes !== 1 || args.db !== "log"))
    throw new Error("--embedded runs one node on its log: not with --nodes 3 or --db");
  if (args.partitions !== undefined) {
    if (!Number.isInteger(args.partitions) || args.partitions < 2 || args.partitions > 16)
      throw new Error(`--partitions takes a number of groups in 2..16, got ${args.partitions}`);
    if (args.nodes !== 1 || args.db !== "log" || args.embedded)
      throw new Error(
        "--partitions runs single-node groups on their log: not with --nodes 3, --db or --embedded",
      );
  }
  if (args.peers && (args.db !== "log" || args.embedded || args.partitions !== undefined))
    throw new Error(
      "--peers runs beside the plain rows: not with --db, --embedded or --partitions",
    );
  const unknown = [...(args.only ?? [])].filter((name) => !ROWS.has(name));
  if (unknown.length > 0) {
    throw new Error(`unknown row ${unknown.join(", ")} (known: ${[...ROWS].join(", ")})`);
  }
  return args;
}

/** Fields every row of this run carries (db: "postgres" with --db postgres). */
const rowTags: Record<string, unknown> = {};

function emit(row: Record<string, unknown>): void {
  const cpu = embeddedCpu(row);
  process.stdout.write(JSON.stringify({ ...row, ...cpu, ...rowTags }) + "\n");
}

/**
 * --embedded rows: `cpu_us` is all the CPU per event, client and node together. In process
 * they are one process (the client column already holds both; the leader column, the same
 * process again, is dropped); over loopback, the bench process plus the node's.
 */
function embeddedCpu(row: Record<string, unknown>): Record<string, unknown> {
  if (rowTags.transport === undefined || typeof row.client_cpu_us !== "number") return {};
  if (rowTags.transport === "in-process") {
    delete row.leader_cpu_us;
    return { cpu_us: row.client_cpu_us };
  }
  return { cpu_us: round(row.client_cpu_us + Number(row.leader_cpu_us ?? 0), 1) };
}

interface Ctx {
  args: Args;
  /** The node process (undefined for a node in this process). */
  node: TestNode | undefined;
  client: ChorusClient;
  nodes: number;
  cpu: CpuMeter;
  /** The server processes now: the leader's pid and the followers'. */
  servers(): Promise<ServerPids>;
  /** The floor's processes, when `append-seq` runs in slices alternating with them. */
  seqFloor?: SeqFloor;
}

/** The pids of `nodes` with `nodes[leader]` as the leader. */
function serverPids(nodes: readonly TestNode[], leader: number): ServerPids {
  const pidOf = (node: TestNode, i: number): number => {
    if (node.pid === undefined) throw new Error(`node ${i} is not running`);
    return node.pid;
  };
  return {
    leader: pidOf(nodes[leader]!, leader),
    followers: nodes.flatMap((node, i) => (i === leader ? [] : [pidOf(node, i)])),
  };
}

async function appendSeq(ctx: Ctx): Promise<void> {
  const n = ctx.args.quick ? 500 : 5000;
  if (ctx.seqFloor !== undefined) {
    let stream = "";
    await rowBesideFloor(ctx, ctx.seqFloor, {
      test: "append-seq",
      n,
      warm: async () => void (stream = await warmAppendSeq(ctx)),
      slice: (k, count, lat) => appendSeqSlice(ctx, stream, k * count, count, lat),
      fields: {},
      floor: { test: "append-seq-floor", n, fields: {} },
    });
    return;
  }
  const lat = new Latencies();
  const stream = await warmAppendSeq(ctx);
  const servers = await ctx.servers();
  const cpu = ctx.cpu.start(servers);
  const s = await appendSeqSlice(ctx, stream, 0, n, lat);
  const cpuColumns = ctx.cpu.stop(cpu, n);
  emit({
    test: "append-seq",
    nodes: ctx.nodes,
    n,
    ops_per_s: round(n / s),
    ...lat.summary(),
    ...cpuColumns,
  });
}

/**
 * The floor of `append-seq`, open for the run when both rows are selected (they then
 * alternate: appendSeqBesideFloor); otherwise the floor row alone, now, when selected.
 */
async function seqFloorFor(
  args: Args,
  only: (name: string) => boolean,
): Promise<SeqFloor | undefined> {
  if (!only("append-seq-floor")) return undefined;
  if (only("append-seq")) return SeqFloor.open(args.nodes - 1);
  await appendSeqFloor(args);
  return undefined;
}

async function warmAppendSeq(ctx: Ctx): Promise<string> {
  const stream = `seq-${Date.now()}`;
  for (let i = 0; i < (ctx.args.quick ? 50 : 5000); i++)
    await ctx.client.appendToStream(stream, event(-1));
  return stream;
}

/** `count` awaited appends to `stream`, one at a time, each latency into `lat`; the seconds. */
async function appendSeqSlice(
  ctx: Ctx,
  stream: string,
  first: number,
  count: number,
  lat: Latencies,
): Promise<number> {
  const start = performance.now();
  for (let i = first; i < first + count; i++) {
    const t0 = performance.now();
    await ctx.client.appendToStream(stream, event(i));
    lat.record(performance.now() - t0);
  }
  return (performance.now() - start) / 1000;
}

/** The machine's ceiling for append-seq (floor.ts); run before the nodes start. */
async function appendSeqFloor(args: Args): Promise<void> {
  const n = args.quick ? 500 : 5000;
  const result = await seqFloor(args.nodes - 1, n, args.quick ? 50 : 1000);
  emit({ test: "append-seq-floor", nodes: args.nodes, n, ...result });
}

async function appendBatch(ctx: Ctx): Promise<void> {
  const batches = ctx.args.quick ? 50 : 1000;
  const size = 100;
  const lat = new Latencies();
  const start = performance.now();
  for (let b = 0; b < batches; b++) {
    const events = Array.from({ length: size }, (_, i) => event(b * size + i));
    const t0 = performance.now();
    await ctx.client.appendToStream(`batch-${b % 100}`, events);
    lat.record(performance.now() - t0);
  }
  const s = (performance.now() - start) / 1000;
  emit({
    test: "append-batch",
    nodes: ctx.nodes,
    n: batches * size,
    batch: size,
    ops_per_s: round((batches * size) / s),
    ...lat.summary(),
  });
}

/**
 * persistent-consume and persistent-consume-awaited: one consumer on a persistent
 * subscription group over a stream that holds `n` events; timed from subscribe until every
 * ack is confirmed durable. Acks not awaited (the consumer keeps going; acks are batched),
 * then every ack awaited. Each first consumes a tenth as many events on a stream of its own,
 * not measured (the other rows warm up too): the row measures the code as it runs, not as
 * the JIT first meets it.
 */
async function persistentConsume(ctx: Ctx, only: (name: string) => boolean): Promise<void> {
  const settings = { readBatchSize: 500, historyBufferSize: 2_000, liveBufferSize: 2_000 };
  for (const mode of ["ack-not-awaited", "ack-awaited"] as const) {
    const awaited = mode === "ack-awaited";
    if (!only(awaited ? "persistent-consume-awaited" : "persistent-consume")) continue;
    const n = ctx.args.quick ? (awaited ? 300 : 5_000) : awaited ? 3_000 : 100_000;
    const bufferSize = awaited ? 10 : 1_000;
    await consumeOnce(ctx, awaited, settings, bufferSize, Math.ceil(n / 10));
    const s = await consumeOnce(ctx, awaited, settings, bufferSize, n);
    emit({
      test: awaited ? "persistent-consume-awaited" : "persistent-consume",
      nodes: ctx.nodes,
      n,
      buffer_size: bufferSize,
      ...settings,
      ops_per_s: round(n / s),
    });
  }
}

/** The longest a persistent-consume run may take (the full row takes seconds). */
const CONSUME_DEADLINE_MS = 300_000;

/** Writes `n` events to a new stream and consumes them once through a new group; the seconds. */
async function consumeOnce(
  ctx: Ctx,
  awaited: boolean,
  settings: { readBatchSize: number; historyBufferSize: number; liveBufferSize: number },
  bufferSize: number,
  n: number,
): Promise<number> {
  const ps = ctx.client.persistentSubscriptions;
  const stream = `pc-${awaited ? "ack-awaited" : "ack-not-awaited"}-${Date.now()}-${n}`;
  for (let i = 0; i < n; i += 500) {
    const count = Math.min(500, n - i);
    await ctx.client.appendToStream(
      stream,
      Array.from({ length: count }, (_, k) => event(i + k)),
    );
  }
  await ps.create(stream, "bench", settings);
  const start = performance.now();
  const sub = ps.subscribe(stream, "bench", { bufferSize });
  let handled = 0;
  let confirmed = 0;
  let allConfirmed: () => void = () => undefined;
  let failed: (err: unknown) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    allConfirmed = resolve;
    failed = reject;
  });
  done.catch(() => undefined); // awaited below; a failure during the loop must not go unhandled
  const onConfirmed = (): void => {
    if (++confirmed === n) allConfirmed();
  };
  // A consumer that stops receiving, or acks that never confirm, end the row with an error.
  const deadline = setTimeout(() => {
    failed(
      new Error(
        `persistent-consume: ${n} events not consumed and acked within ${CONSUME_DEADLINE_MS} ms`,
      ),
    );
    void sub.unsubscribe();
  }, CONSUME_DEADLINE_MS);
  try {
    for await (const e of sub) {
      if (awaited) {
        await sub.ack(e);
        onConfirmed();
      } else {
        sub.ack(e).then(onConfirmed, failed);
      }
      if (++handled === n) break;
    }
    await done;
  } finally {
    clearTimeout(deadline);
  }
  const s = (performance.now() - start) / 1000;
  await ps.delete(stream, "bench");
  return s;
}

/**
 * Writes `total` events (rounded up to whole batches) spread over 10,000 streams (batches of
 * 100, 8 in flight); the events written and the seconds it took.
 */
async function populate(ctx: Ctx, total: number): Promise<{ written: number; seconds: number }> {
  const batch = 100;
  let written = 0;
  let b = 0;
  const start = performance.now();
  const worker = async () => {
    while (written < total) {
      const k = b++;
      written += batch;
      const events = Array.from({ length: batch }, (_, i) => event(k * batch + i));
      await ctx.client.appendToStream(`fill-${k % 10_000}`, events);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { written, seconds: (performance.now() - start) / 1000 };
}

async function countAll(ctx: Ctx): Promise<number> {
  let count = 0;
  for await (const _ of ctx.client.readAll({
    direction: "forwards",
    fromPosition: "start",
    maxCount: Number.MAX_SAFE_INTEGER,
  }))
    count++;
  return count;
}

/** Whether `populate` has written here (its stream `fill-42`, which the filter matches). */
async function hasFillStreams(ctx: Ctx): Promise<boolean> {
  try {
    for await (const _ of ctx.client.readStream("fill-42", { maxCount: 1 })) return true;
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return false;
}

/**
 * `read-stream`: one stream of n events, written by one writer in appends of 100 (as an
 * aggregate or a batch import writes), read forwards whole; median of 3 runs; a row per
 * payload size. Then the interleaved row. The events it wrote.
 */
async function readStreamRows(ctx: Ctx): Promise<number> {
  const n = ctx.args.quick ? 2_000 : 20_000;
  for (const payloadBytes of [100, 2_000]) {
    const stream = `read-stream-${payloadBytes}-${Date.now()}`;
    for (let i = 0; i < n; i += 100) {
      const batch = Array.from({ length: 100 }, (_, k) => sizedEvent(i + k, payloadBytes));
      await ctx.client.appendToStream(stream, batch);
    }
    emit({
      test: "read-stream",
      nodes: ctx.nodes,
      n,
      layout: "runs",
      payload_bytes: payloadBytes,
      ...(await readRuns(ctx, n, [stream])),
    });
  }
  return 2 * n + (await readInterleavedRow(ctx));
}

/**
 * `read-stream` with `layout: "interleaved"`: aggregates, many streams of a few events each,
 * written a round at a time (one event per stream per round, as a service's aggregates change),
 * so each stream's events lie far apart in the log; every stream read whole, in turn. The
 * events it wrote.
 */
async function readInterleavedRow(ctx: Ctx): Promise<number> {
  const count = ctx.args.quick ? 200 : 2_000;
  const perStream = ctx.args.quick ? 10 : 25;
  const prefix = `aggregate-${Date.now()}`;
  const streams = Array.from({ length: count }, (_, s) => `${prefix}-${s}`);
  for (let round = 0; round < perStream; round++) {
    for (let s = 0; s < count; s += 64) {
      await Promise.all(
        streams
          .slice(s, s + 64)
          .map((stream) => ctx.client.appendToStream(stream, sizedEvent(round, 100))),
      );
    }
  }
  const n = count * perStream;
  emit({
    test: "read-stream",
    nodes: ctx.nodes,
    n,
    layout: "interleaved",
    streams: count,
    payload_bytes: 100,
    ...(await readRuns(ctx, n, streams)),
  });
  return n;
}

/**
 * Reads `streams` whole, one after the other (`n` events in all), once unmeasured and then 3
 * times: the median's events per second, every run's, and the CPU columns.
 */
async function readRuns(
  ctx: Ctx,
  n: number,
  streams: readonly string[],
): Promise<Record<string, unknown>> {
  const readOnce = async (): Promise<number> => {
    const start = performance.now();
    let count = 0;
    for (const stream of streams) {
      for await (const _ of ctx.client.readStream(stream, { maxCount: Number.MAX_SAFE_INTEGER }))
        count++;
    }
    if (count !== n) throw new Error(`read-stream read ${count} of ${n} events`);
    return n / ((performance.now() - start) / 1000);
  };
  await readOnce(); // warm-up, unmeasured
  const runs: number[] = [];
  const cpu = ctx.cpu.start(await ctx.servers());
  for (let r = 0; r < 3; r++) runs.push(await readOnce());
  const cpuColumns = ctx.cpu.stop(cpu, 3 * n);
  runs.sort((a, b) => a - b);
  return { ops_per_s: round(runs[1]!), runs: runs.map((v) => round(v)), ...cpuColumns };
}

async function readAllAndMemory(ctx: Ctx, only: (name: string) => boolean): Promise<void> {
  /** The events in $all. */
  let total = 0;
  if (["read-all", "read-all-filtered", "memory", "recovery"].some(only))
    total = await readAllRows(ctx, only);
  // After the $all rows, whose data set it would change; before `recovery` closes the client.
  if (only("read-stream")) total += await readStreamRows(ctx);
  if (only("recovery")) {
    if (ctx.node === undefined) throw new Error("recovery needs a node process");
    await ctx.client.close();
    await ctx.node.kill();
    const start = performance.now();
    await ctx.node.restart();
    const readyMs = performance.now() - start;
    emit({
      test: "recovery",
      nodes: ctx.nodes,
      n: total,
      ready_ms: round(readyMs),
      after: "SIGKILL",
    });
  }
}

/**
 * `memory`, `read-all`, `read-all-filtered` over a data set of 1M events (quick 20k); the
 * events in $all.
 */
async function readAllRows(ctx: Ctx, only: (name: string) => boolean): Promise<number> {
  const target = ctx.args.quick ? 20_000 : 1_000_000;
  const existing = await countAll(ctx);
  // The filtered row reads the fill streams (fill-42, fill-142, ...): with --quick, the
  // other rows' events make up most of the target, and a top-up alone would not reach them.
  const topUp = Math.max(0, target - existing);
  const toFill =
    only("read-all-filtered") && !(await hasFillStreams(ctx)) ? Math.max(topUp, target) : topUp;
  const fill = toFill > 0 ? await populate(ctx, toFill) : { written: 0, seconds: 0 };
  /** The events in $all now. */
  const total = existing + fill.written;
  if (only("memory")) {
    const pid = ctx.node?.pid;
    if (pid !== undefined) {
      emit({
        test: "memory",
        nodes: ctx.nodes,
        n: total,
        streams: 10_000,
        ...(await rssMiB(pid)),
        fill_s: round(fill.seconds, 1),
      });
    }
  }
  if (only("read-all")) {
    const runs: number[] = [];
    let n = 0;
    const cpu = ctx.cpu.start(await ctx.servers());
    for (let r = 0; r < 3; r++) {
      const start = performance.now();
      n = await countAll(ctx);
      runs.push(n / ((performance.now() - start) / 1000));
    }
    const cpuColumns = ctx.cpu.stop(cpu, 3 * n);
    runs.sort((a, b) => a - b);
    emit({
      test: "read-all",
      nodes: ctx.nodes,
      n,
      ops_per_s: round(runs[1]!),
      runs: runs.map((v) => round(v)),
      ...cpuColumns,
    });
  }
  if (only("read-all-filtered"))
    emit({ nodes: ctx.nodes, ...(await readAllFiltered(ctx.client, await countAll(ctx))) });
  return total;
}

/**
 * Sequential appends while the leader is SIGKILLed `kills` times (the killed node is
 * restarted and caught up before the next kill). The gap of a kill is the time between the
 * last acknowledgement before the leader's process exited and the first one after.
 */
async function failover(args: Args, cluster: TestCluster): Promise<void> {
  const kills = args.quick ? 2 : 10;
  const client = new ChorusClient(
    `${cluster.connectionString}&operationTimeout=30000&reconnectionDelay=20&discoverDelay=20` +
      "&maxReconnections=10000&maxDiscoverAttempts=1000&heartbeatInterval=200&heartbeatTimeout=500",
  );
  const stream = `failover-${Date.now()}`;
  const acked: number[] = [];
  const ackTimes: number[] = [];
  let failed = 0;
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        await client.appendToStream(stream, event(i));
        acked.push(i);
        ackTimes.push(performance.now());
      } catch {
        failed++;
      }
    }
  })();
  const gaps: number[] = [];
  try {
    for (let k = 0; k < kills; k++) {
      const before = acked.length;
      await waitFor(() => acked.length >= before + 200, {
        timeoutMs: 30_000,
        message: "steady writes",
      });
      // Ask right before the kill: leadership may have moved while the writes went on.
      const leader = await cluster.leader({ timeoutMs: 30_000 });
      await cluster.kill(leader);
      // The process has exited: acknowledgements up to now came from the old leader (the
      // signal takes a moment to land), the next one from the new leader.
      const diedAt = performance.now();
      const lastBefore = ackTimes.filter((t) => t <= diedAt).at(-1) ?? diedAt;
      await waitFor(() => (ackTimes.at(-1) ?? 0) > diedAt, {
        timeoutMs: 30_000,
        message: "writes resume",
      });
      const firstAfter = ackTimes.find((t) => t > diedAt) ?? performance.now();
      gaps.push(firstAfter - lastBefore);
      await cluster.restart(leader);
      await waitFor(async () => (await cluster.stateOf(leader)) === "Follower", {
        timeoutMs: 60_000,
        message: "the killed node caught up",
      });
    }
  } finally {
    stop = true;
    await writer;
  }
  const stored: number[] = [];
  for await (const e of client.readStream(stream, {
    direction: "forwards",
    fromRevision: "start",
  })) {
    stored.push((e.event.data as { n: number }).n);
  }
  await client.close();
  const seen = new Set(stored);
  const sorted = [...gaps].sort((a, b) => a - b);
  emit({
    test: "failover",
    nodes: 3,
    n: acked.length,
    kills,
    median_gap_ms: round(median(sorted)),
    max_gap_ms: round(sorted.at(-1) ?? 0),
    gaps_ms: gaps.map((g) => round(g)),
    lost_acked: acked.filter((i) => !seen.has(i)).length,
    duplicates: stored.length - seen.size,
    failed_appends: failed,
  });
}

/** Runs the selected rows; servers get `nodeArgs` (the profiler's flags with --profile). */
async function run(args: Args, profiling: Profiling | undefined): Promise<void> {
  const only = (name: string) => !args.only || args.only.has(name);
  const nodeArgs = profiling?.nodeArgs ?? [];
  const cpu = new CpuMeter();
  if (args.partitions !== undefined) {
    const count = args.partitions;
    await runPartitions({
      count,
      quick: args.quick,
      only,
      emit,
      nodeArgs,
      onServer: (pid, role) => profiling?.note(pid, role),
    });
    return;
  }
  if (args.embedded) {
    await runEmbedded(args, (name) => EMBEDDED_ROWS.has(name) && only(name), cpu);
    return;
  }
  if (args.db === "postgres") {
    rowTags.db = "postgres";
    await runOnPostgres(args, only, nodeArgs, cpu, profiling);
    return;
  }
  const floor = await seqFloorFor(args, only);
  try {
    await runOnNodes(args, only, nodeArgs, cpu, profiling, floor);
  } finally {
    await floor?.close();
  }
}

/** The rows on a cluster (--nodes 3) or a single node, and index-scale. */
async function runOnNodes(
  args: Args,
  only: (name: string) => boolean,
  nodeArgs: string[],
  cpu: CpuMeter,
  profiling: Profiling | undefined,
  seqFloor: SeqFloor | undefined,
): Promise<void> {
  if (args.nodes === 3) {
    if (!CLUSTER_ROWS.some(only)) return;
    const cluster = await startCluster({ size: 3, startTimeoutMs: 60_000, nodeArgs });
    const client = new ChorusClient(`${cluster.connectionString}&operationTimeout=30000`);
    const ctx: Ctx = {
      args,
      node: cluster.nodes[0]!,
      client,
      nodes: 3,
      cpu,
      servers: async () => serverPids(cluster.nodes, await cluster.leader({ timeoutMs: 30_000 })),
      ...(seqFloor && { seqFloor }),
    };
    try {
      const leader = await cluster.leader({ timeoutMs: 30_000 });
      cluster.nodes.forEach((node, i) =>
        profiling?.note(node.pid, `node ${i} of 3${i === leader ? ", leader at the start" : ""}`),
      );
      await client.connect();
      await sharedRows(ctx, only);
      await client.close();
      if (only("failover")) await failover(args, cluster);
    } finally {
      await client.close().catch(() => undefined);
      await cluster.stop();
    }
    return;
  }
  if (SINGLE_NODE_ROWS.some(only)) {
    const node = await startNode({ startTimeoutMs: 60_000, nodeArgs });
    profiling?.note(node.pid, "node");
    const client = new ChorusClient(node.connectionString);
    const ctx: Ctx = {
      args,
      node,
      client,
      nodes: args.nodes,
      cpu,
      servers: async () => serverPids([node], 0),
      ...(seqFloor && { seqFloor }),
    };
    try {
      await client.connect();
      await sharedRows(ctx, only);
      if (["read-all", "read-all-filtered", "read-stream", "memory", "recovery"].some(only))
        await readAllAndMemory(ctx, only);
    } finally {
      await client.close().catch(() => undefined);
      await node.stop();
    }
  }
  if (only("index-scale")) {
    const row = await indexScale({
      firstStreams: args.quick ? 20_000 : 500_000,
      totalStreams: args.quick ? 80_000 : 2_000_000,
      inFlight: 256,
      nodeArgs,
      onServer: (pid, role) => profiling?.note(pid, role),
    });
    emit(row);
  }
}

/** A floor row's workload, run in slices (floor.ts's SeqFloor, postgres.ts's FloorInserts). */
interface Floor {
  /** `count` operations, each latency into `lat` when given; the seconds they took. */
  run(count: number, lat?: Latencies): Promise<number>;
}

/** A row measured beside its floor row. */
interface BesideFloor {
  readonly test: string;
  readonly n: number;
  /** Warms up the row (not measured). */
  warm(): Promise<void>;
  /** Slice `k` of the row: `count` events, each latency into `lat`; the seconds. */
  slice(k: number, count: number, lat: Latencies): Promise<number>;
  readonly fields: Record<string, unknown>;
  readonly floor: {
    readonly test: string;
    readonly n: number;
    readonly fields: Record<string, unknown>;
  };
}

/**
 * A row and its floor row in interleaved slices (floor, row, floor, row, ...), so that both
 * see the same machine. On the development VM the fsync latency drifts by up to 2x within
 * minutes, and so does the CPU's speed (a CPU-bound loop took 0.8 s, then 1.7 s a few minutes
 * later): the ratio of two rows measured one after the other moved with it. With the
 * shared database, append-seq over its floor read 0.49 to 1.1 in three runs of one hour, and
 * 0.49 to 0.53 interleaved.
 */
async function rowBesideFloor(ctx: Ctx, floor: Floor, spec: BesideFloor): Promise<void> {
  const slices = 5;
  await floor.run(spec.floor.n / 10);
  await spec.warm();
  const floorLat = new Latencies();
  const rowLat = new Latencies();
  let floorSeconds = 0;
  let rowSeconds = 0;
  const cpuSlices: CpuColumns[] = [];
  for (let k = 0; k < slices; k++) {
    floorSeconds += await floor.run(spec.floor.n / slices, floorLat);
    const cpu = ctx.cpu.start(await ctx.servers());
    rowSeconds += await spec.slice(k, spec.n / slices, rowLat);
    cpuSlices.push(ctx.cpu.stop(cpu, spec.n / slices));
  }
  emit({
    test: spec.floor.test,
    nodes: ctx.nodes,
    n: spec.floor.n,
    ...spec.floor.fields,
    interleaved: slices,
    ops_per_s: round(spec.floor.n / floorSeconds),
    ...floorLat.summary(),
  });
  emit({
    test: spec.test,
    nodes: ctx.nodes,
    n: spec.n,
    ...spec.fields,
    interleaved: slices,
    ops_per_s: round(spec.n / rowSeconds),
    ...rowLat.summary(),
    ...meanColumns(cpuSlices),
  });
}

/** rowBesideFloor on the shared database's floor: `connections` sessions of raw INSERTs. */
async function rowBesideInserts(
  ctx: Ctx,
  pg: TestPostgresPrimary,
  connections: number,
  spec: BesideFloor,
): Promise<void> {
  const floor = await FloorInserts.open(pg, connections);
  try {
    await rowBesideFloor(ctx, floor, spec);
  } finally {
    await floor.close();
  }
}

/** The mean of each CPU column over slices of equal size. */
function meanColumns(slices: readonly CpuColumns[]): Record<string, number> {
  const sums = new Map<string, number>();
  for (const columns of slices)
    for (const [key, value] of Object.entries(columns))
      if (typeof value === "number") sums.set(key, (sums.get(key) ?? 0) + value);
  return Object.fromEntries([...sums].map(([key, sum]) => [key, round(sum / slices.length, 1)]));
}

/** --db postgres: floor rows of raw INSERTs, then the rows on instances sharing the database. */
async function runOnPostgres(
  args: Args,
  only: (name: string) => boolean,
  nodeArgs: string[],
  cpu: CpuMeter,
  profiling: Profiling | undefined,
): Promise<void> {
  const selected = (name: string): boolean => POSTGRES_ROWS.has(name) && only(name);
  const backend = await startPostgresBackend(args.nodes, nodeArgs);
  backend.nodes.forEach((node, i) => profiling?.note(node.pid, `instance ${i} on PostgreSQL`));
  const client = new ChorusClient(`${backend.connectionString}&operationTimeout=30000`);
  try {
    if (selected("append-seq-floor") && !selected("append-seq")) {
      const n = args.quick ? 500 : 5000;
      const floor = await insertFloor(backend.pg, { n, warm: n / 10, connections: 1 });
      emit({ test: "append-seq-floor", nodes: args.nodes, n, ...floor });
    }
    const ctx: Ctx = {
      args,
      node: backend.nodes[0]!,
      client,
      nodes: args.nodes,
      cpu,
      // Every instance takes writes: the first one is counted as the "leader" (with one
      // instance, the one); the database's processes as db_cpu_us.
      servers: () =>
        Promise.resolve({
          ...serverPids(backend.nodes, 0),
          database: backend.pg.pid === undefined ? [] : processTree(backend.pg.pid),
        }),
    };
    await client.connect();
    // Each append row beside its floor row (the floor of append-seq when both are selected).
    const besideFloor = new Set<string>();
    if (selected("append-seq") && selected("append-seq-floor")) {
      let stream = "";
      await rowBesideInserts(ctx, backend.pg, 1, {
        test: "append-seq",
        n: args.quick ? 500 : 5000,
        warm: async () => void (stream = await warmAppendSeq(ctx)),
        slice: (k, count, lat) => appendSeqSlice(ctx, stream, k * count, count, lat),
        fields: {},
        floor: { test: "append-seq-floor", n: args.quick ? 500 : 5000, fields: {} },
      });
      besideFloor.add("append-seq");
    }
    if (selected("append-pipelined")) {
      await rowBesideInserts(ctx, backend.pg, 32, {
        test: "append-pipelined",
        n: args.quick ? 5000 : 100_000,
        warm: () => warmPipelined(ctx),
        slice: (_k, count, lat) => pipelinedSlice(ctx, count, lat),
        fields: { in_flight: PIPELINED_IN_FLIGHT },
        floor: {
          test: "append-pipelined-floor",
          n: args.quick ? 5000 : 50_000,
          fields: { connections: 32 },
        },
      });
      besideFloor.add("append-pipelined");
    }
    await sharedRows(ctx, (name) => selected(name) && !besideFloor.has(name));
    const reads = (name: string) => name.startsWith("read-") && selected(name);
    if (["read-all", "read-all-filtered", "read-stream"].some(reads))
      await readAllAndMemory(ctx, reads);
  } finally {
    await client.close().catch(() => undefined);
    await backend.stop();
  }
}

/**
 * --embedded: for each store (memory, then disk), the rows over loopback to a node process,
 * then the same rows in process (a node in this process, reached with withInProcessNode).
 * The floor row first, as in a plain run.
 */
async function runEmbedded(
  args: Args,
  selected: (name: string) => boolean,
  cpu: CpuMeter,
): Promise<void> {
  if (selected("append-seq-floor")) await appendSeqFloor(args);
  // Loaded here only: in other runs the node's modules (and their heap) stay out of the
  // bench process, whose CPU per event is the client's.
  const { createNode } = await import("@chorus/server");
  for (const store of ["mem-db", "disk"] as const) {
    for (const transport of ["loopback", "in-process"] as const) {
      // In process: a node of this process that opens no port, as an embedding application
      // runs it, on a temp data directory for "disk".
      const dir = store === "disk" ? await mkdtemp(join(tmpdir(), "chorus-bench-")) : undefined;
      const embedded =
        transport === "in-process"
          ? await createNode({
              ...(dir === undefined ? { memDb: true } : { db: dir }),
              listen: false,
              logLevel: "silent",
            })
          : undefined;
      const node =
        embedded === undefined
          ? await startNode({ startTimeoutMs: 60_000, memDb: store === "mem-db" })
          : undefined;
      const client = new ChorusClient(
        embedded
          ? ConnectionSettings.create()
              .withInProcessNode(embedded)
              .withOperationTimeout(30_000)
              .build()
          : `${node!.connectionString}&operationTimeout=30000`,
      );
      rowTags.transport = transport;
      rowTags.store = store;
      const ctx: Ctx = {
        args,
        node,
        client,
        nodes: 1,
        cpu,
        servers: async () =>
          node === undefined ? { leader: process.pid, followers: [] } : serverPids([node], 0),
      };
      try {
        await client.connect();
        if (selected("append-seq")) await appendSeq(ctx);
        if (selected("subscribe-live")) emit(await subscribeLive(ctx));
        if (selected("read-all")) await readAllAndMemory(ctx, (name) => name === "read-all");
      } finally {
        await client.close().catch(() => undefined);
        await node?.stop();
        await embedded?.close();
        if (dir !== undefined) await rm(dir, { recursive: true, force: true });
        delete rowTags.transport;
        delete rowTags.store;
      }
    }
  }
}

/** The rows both a single node and a cluster run, in this order. */
async function sharedRows(ctx: Ctx, only: (row: string) => boolean): Promise<void> {
  if (only("append-seq")) await appendSeq(ctx);
  if (only("append-pipelined")) emit(await appendPipelined(ctx));
  if (only("append-batch")) await appendBatch(ctx);
  if (only("subscribe-live")) emit(await subscribeLive(ctx));
  await persistentConsume(ctx, only);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const profiling = args.profile ? await Profiling.start() : undefined;
  try {
    await run(args, profiling);
    if (args.peers)
      await runPeers({
        nodes: args.nodes === 3 ? 3 : 1,
        quick: args.quick,
        only: (name) => !args.only || args.only.has(name),
        emit,
      });
  } finally {
    if (profiling) {
      await profiling.stop();
      process.stderr.write(`bench: CPU profiles in ${profiling.dir}\n`);
    }
  }
}

await main();
