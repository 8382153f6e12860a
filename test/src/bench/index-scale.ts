/**
 * The `index-scale` bench row: what one more stream costs a node. One on-disk node of its
 * own (a fresh temp data directory) gets one event in each of N distinct streams
 * (`account-<i>`, the bench's ~100-byte event, `inFlight` appends in flight). Its anonymous
 * resident memory (RssAnon of /proc/<pid>/status: not the page cache of mapped files) is
 * measured at `firstStreams` and at `totalStreams`; the slope between the two is
 * `bytes_per_stream`. Then the node is SIGKILLed and restarted on the same data directory:
 * `ready_ms` runs from the spawn until a read of the last stream returns its event.
 *
 * Each memory figure is taken after a settle, a full garbage collection requested through
 * the node's inspector (the node runs with `--inspect` on a free loopback port;
 * `HeapProfiler.collectGarbage`), and is the median of 3 readings 200 ms apart. `gc` says
 * whether the collection happened.
 */
import { ChorusClient } from "@chorus/client";
import { freePorts, getJson, startNode, waitFor, type TestNode } from "@chorus/testing";
import { once } from "node:events";
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import WebSocket from "ws";
import { event } from "./events.js";
import { medianRssAnonKiB } from "./proc.js";
import { round } from "./stats.js";

export interface IndexScaleOptions {
  /** Streams at the first memory reading. */
  firstStreams: number;
  /** Streams at the second memory reading (the last stream is `account-<totalStreams - 1>`). */
  totalStreams: number;
  /** Appends in flight. */
  inFlight: number;
  /** Extra `node` flags for the server (the profiler's). */
  nodeArgs?: string[];
  /** Told about each server process started (the first, then the restarted one). */
  onServer?: (pid: number | undefined, role: string) => void;
}

const START_TIMEOUT_MS = 120_000;
const READY_TIMEOUT_MS = 300_000;
const SETTLE_MS = 500;
const GC_TIMEOUT_MS = 30_000;
const OPERATION_TIMEOUT_MS = 30_000;

/** Appends one event to each of `account-<from>` .. `account-<to - 1>`, `inFlight` at a time. */
async function appendStreams(
  client: ChorusClient,
  from: number,
  to: number,
  inFlight: number,
): Promise<void> {
  let next = from;
  const worker = async () => {
    while (next < to) {
      const i = next++;
      await client.appendToStream(`account-${i}`, event(i));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** A full garbage collection in the process whose inspector listens on `port`. */
async function collectGarbage(port: number): Promise<void> {
  const { body } = await getJson(`http://127.0.0.1:${port}/json/list`, GC_TIMEOUT_MS);
  const target = Array.isArray(body) ? (body[0] as { webSocketDebuggerUrl?: unknown }) : undefined;
  const url = target?.webSocketDebuggerUrl;
  if (typeof url !== "string") throw new Error(`no inspector target on port ${port}`);
  const ws = new WebSocket(url);
  ws.on("error", () => undefined); // once() below rejects with it
  try {
    const signal = AbortSignal.timeout(GC_TIMEOUT_MS);
    await once(ws, "open", { signal });
    const reply = once(ws, "message", { signal });
    ws.send(JSON.stringify({ id: 1, method: "HeapProfiler.collectGarbage" }));
    const [data] = (await reply) as [WebSocket.RawData];
    const bytes = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data);
    const text = bytes.toString("utf8");
    const answer = JSON.parse(text) as { id?: number; error?: unknown };
    if (answer.id !== 1 || answer.error !== undefined) {
      throw new Error(`HeapProfiler.collectGarbage answered ${text}`);
    }
  } finally {
    ws.close();
  }
}

/** RssAnon of the node in KiB after a settle and, when it works, a forced GC. */
async function settledRssAnonKiB(
  node: TestNode,
  inspectPort: number,
): Promise<{ kib: number; gc: boolean }> {
  await delay(SETTLE_MS);
  let gc = true;
  try {
    await collectGarbage(inspectPort);
  } catch {
    gc = false;
  }
  const pid = node.pid;
  if (pid === undefined) throw new Error("index-scale: the node is not running");
  return { kib: await medianRssAnonKiB(pid), gc };
}

const mib = (kib: number) => round(kib / 1024, 1);

export async function indexScale(options: IndexScaleOptions): Promise<Record<string, unknown>> {
  const { firstStreams, totalStreams, inFlight } = options;
  const [inspectPort] = (await freePorts(1)) as [number];
  const node = await startNode({
    startTimeoutMs: START_TIMEOUT_MS,
    nodeArgs: [...(options.nodeArgs ?? []), `--inspect=127.0.0.1:${inspectPort}`],
  });
  options.onServer?.(node.pid, "index-scale node");
  const clients: ChorusClient[] = [];
  const newClient = () => {
    const c = new ChorusClient(`${node.connectionString}&operationTimeout=${OPERATION_TIMEOUT_MS}`);
    clients.push(c);
    return c;
  };
  try {
    const writer = newClient();
    await writer.connect();
    const appendStart = performance.now();
    await appendStreams(writer, 0, firstStreams, inFlight);
    let appendMs = performance.now() - appendStart;
    const first = await settledRssAnonKiB(node, inspectPort);
    const resumeAt = performance.now();
    await appendStreams(writer, firstStreams, totalStreams, inFlight);
    appendMs += performance.now() - resumeAt;
    const second = await settledRssAnonKiB(node, inspectPort);
    await writer.close();

    await node.kill();
    const spawnAt = performance.now();
    await node.restart(); // resolves when the server logs "node ready"
    const listeningMs = performance.now() - spawnAt;
    options.onServer?.(node.pid, "index-scale node, restarted after SIGKILL");
    const reader = newClient();
    const last = `account-${totalStreams - 1}`;
    await waitFor(
      async () => {
        for await (const e of reader.readStream(last, { maxCount: 1 })) {
          return (e.event.data as { n?: unknown }).n === totalStreams - 1;
        }
        return false;
      },
      { timeoutMs: READY_TIMEOUT_MS, intervalMs: 10, message: `a read of ${last}` },
    );
    const readyMs = performance.now() - spawnAt;
    const restarted = await settledRssAnonKiB(node, inspectPort);
    return {
      test: "index-scale",
      nodes: 1,
      n: totalStreams,
      in_flight: inFlight,
      ops_per_s: round(totalStreams / (appendMs / 1000)),
      n_first: firstStreams,
      rss_anon_mb_first: mib(first.kib),
      rss_anon_mb: mib(second.kib),
      bytes_per_stream: round(((second.kib - first.kib) * 1024) / (totalStreams - firstStreams)),
      ready_ms: round(readyMs),
      listening_ms: round(listeningMs),
      rss_anon_mb_restarted: mib(restarted.kib),
      gc: first.gc && second.gc && restarted.gc,
      after: "SIGKILL",
    };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await node.stop();
  }
}
