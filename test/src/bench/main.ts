/**
 * `npm run bench`: one JSON object per line (see the design's quality.md).
 * Options: --nodes 1|3, --quick (small counts, CI smoke), --only NAME[,NAME].
 * Every figure is from the durable configuration: an on-disk node (fsync before
 * acknowledging) and the client in separate processes.
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { performance } from "node:perf_hooks";
import { Latencies, round, rssMiB } from "./stats.js";

interface Args {
  nodes: number;
  quick: boolean;
  only: Set<string> | undefined;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { nodes: 1, quick: false, only: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i] ?? "";
    if (name === "--quick") args.quick = true;
    else if (name === "--nodes") args.nodes = Number(value());
    else if (name === "--only") args.only = new Set(value().split(","));
    else throw new Error(`unknown option ${arg} (known: --nodes 1|3, --quick, --only NAME)`);
  }
  if (args.nodes !== 1 && args.nodes !== 3) throw new Error("--nodes takes 1 or 3");
  return args;
}

const payload = { kind: "bench", text: "x".repeat(60), n: 0 }; // ~100 bytes of JSON

function event(n: number) {
  return jsonEvent({ type: "BenchEvent", data: { ...payload, n } });
}

function emit(row: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(row) + "\n");
}

interface Ctx {
  args: Args;
  node: TestNode;
  client: ChorusClient;
  nodes: number;
}

async function appendSeq(ctx: Ctx): Promise<void> {
  const n = ctx.args.quick ? 500 : 5000;
  const lat = new Latencies();
  const stream = `seq-${Date.now()}`;
  // Warm up the connection, the stream and both processes' JIT; not measured.
  for (let i = 0; i < (ctx.args.quick ? 50 : 5000); i++)
    await ctx.client.appendToStream(stream, event(-1));
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await ctx.client.appendToStream(stream, event(i));
    lat.record(performance.now() - t0);
  }
  const s = (performance.now() - start) / 1000;
  emit({ test: "append-seq", nodes: ctx.nodes, n, ops_per_s: round(n / s), ...lat.summary() });
}

async function appendPipelined(ctx: Ctx): Promise<void> {
  const n = ctx.args.quick ? 5000 : 100_000;
  const inFlight = 256;
  const lat = new Latencies();
  let next = 0;
  // Warm-up, not measured.
  const warm = ctx.args.quick ? 500 : 5000;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = w; i < warm; i += inFlight)
        await ctx.client.appendToStream(`pipe-${i % 1000}`, event(i));
    }),
  );
  const start = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      await ctx.client.appendToStream(`pipe-${i % 1000}`, event(i));
      lat.record(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const s = (performance.now() - start) / 1000;
  emit({
    test: "append-pipelined",
    nodes: ctx.nodes,
    n,
    in_flight: inFlight,
    ops_per_s: round(n / s),
    ...lat.summary(),
  });
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

async function subscribeLive(ctx: Ctx): Promise<void> {
  const n = ctx.args.quick ? 2000 : 50_000;
  const stream = `live-${Date.now()}`;
  const sub = ctx.client.subscribeToStream(stream, { fromRevision: "start" });
  const lat = new Latencies();
  const sentAt = new Map<number, number>();
  let received = 0;
  const start = performance.now();
  const reader = (async () => {
    for await (const e of sub) {
      const data = e.event.data as { n: number };
      const t = sentAt.get(data.n);
      if (t !== undefined) lat.record(performance.now() - t);
      sentAt.delete(data.n);
      if (++received >= n) break;
    }
  })();
  let next = 0;
  const writer = async () => {
    while (next < n) {
      const i = next++;
      sentAt.set(i, performance.now());
      await ctx.client.appendToStream(stream, event(i));
    }
  };
  await Promise.all(Array.from({ length: 32 }, writer));
  await reader;
  const s = (performance.now() - start) / 1000;
  emit({
    test: "subscribe-live",
    nodes: ctx.nodes,
    n,
    ops_per_s: round(received / s),
    ...lat.summary(),
  });
}

/** Fills the node to `total` events spread over 10,000 streams (batches of 100, 8 in flight). */
async function populate(ctx: Ctx, total: number): Promise<number> {
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
  return (performance.now() - start) / 1000;
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

async function readAllAndMemory(ctx: Ctx, only: (name: string) => boolean): Promise<void> {
  const target = ctx.args.quick ? 20_000 : 1_000_000;
  const existing = await countAll(ctx);
  const fillSeconds = existing < target ? await populate(ctx, target - existing) : 0;
  if (only("memory")) {
    const pid = ctx.node.pid;
    if (pid !== undefined) {
      emit({
        test: "memory",
        nodes: ctx.nodes,
        n: target,
        streams: 10_000,
        rss_mb: await rssMiB(pid),
        fill_s: round(fillSeconds, 1),
      });
    }
  }
  if (only("read-all")) {
    const runs: number[] = [];
    let n = 0;
    for (let r = 0; r < 3; r++) {
      const start = performance.now();
      n = await countAll(ctx);
      runs.push(n / ((performance.now() - start) / 1000));
    }
    runs.sort((a, b) => a - b);
    emit({
      test: "read-all",
      nodes: ctx.nodes,
      n,
      ops_per_s: round(runs[1]!),
      runs: runs.map((v) => round(v)),
    });
  }
  if (only("recovery")) {
    await ctx.client.close();
    await ctx.node.kill();
    const start = performance.now();
    await ctx.node.restart();
    const readyMs = performance.now() - start;
    emit({
      test: "recovery",
      nodes: ctx.nodes,
      n: target,
      ready_ms: round(readyMs),
      after: "SIGKILL",
    });
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.nodes === 3) {
    process.stderr.write("bench: --nodes 3 needs the cluster; it is not available yet\n");
    process.exitCode = 2;
    return;
  }
  const only = (name: string) => !args.only || args.only.has(name);
  const node = await startNode({ startTimeoutMs: 60_000 });
  const client = new ChorusClient(node.connectionString);
  const ctx: Ctx = { args, node, client, nodes: args.nodes };
  try {
    await client.connect();
    if (only("append-seq")) await appendSeq(ctx);
    if (only("append-pipelined")) await appendPipelined(ctx);
    if (only("append-batch")) await appendBatch(ctx);
    if (only("subscribe-live")) await subscribeLive(ctx);
    if (only("read-all") || only("memory") || only("recovery")) await readAllAndMemory(ctx, only);
  } finally {
    await client.close().catch(() => undefined);
    await node.stop();
  }
}

await main();
