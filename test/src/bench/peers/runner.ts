/**
 * `npm run bench -- --peers`: after Chorus's rows, the same append workloads on other
 * systems (README.md, "Peers"), each row tagged `"peer": NAME`. A peer whose server is not
 * installed is skipped with one line on stderr.
 */
import type { EventData } from "@chorus/client";
import { performance } from "node:perf_hooks";
import { event } from "../events.js";
import { clockTicksPerSecond, ticksOfAll } from "../proc.js";
import { PIPELINED_IN_FLIGHT, PIPELINED_WARM } from "../rows.js";
import { Latencies, round } from "../stats.js";
import { etcd } from "./etcd.js";
import { jetstream } from "./jetstream.js";
import { postgresPeer } from "./postgres.js";

/** A running peer: one client connected to its server(s). */
export interface PeerSession {
  /** Extra fields of its rows (e.g. the durability setting). */
  readonly tags: Record<string, unknown>;
  /** Stores one event of `stream` as the peer defines it (README.md); resolves on its ack. */
  append(stream: string, event: EventData): Promise<void>;
  /** The processes of each server (one pid, or a database server's process tree), now. */
  servers(): number[][];
  /** Closes the client and stops every server (removing their directories). */
  stop(): Promise<void>;
}

export interface Peer {
  readonly name: string;
  /** Why it cannot run here (its server is not installed), or undefined. */
  missing(): string | undefined;
  /** Starts `nodes` servers on loopback in temp directories and connects a client. */
  start(nodes: 1 | 3): Promise<PeerSession>;
}

export const PEERS: readonly Peer[] = [jetstream, etcd, postgresPeer];

/** The rows a peer runs (names as Chorus's rows, for --only). */
export const PEER_ROWS = ["append-seq", "append-pipelined"] as const;

export interface PeerRunOptions {
  nodes: 1 | 3;
  quick: boolean;
  /** Event counts instead of those of the (quick) rows: tiny ones for a test. */
  counts?: Counts;
  only: (row: string) => boolean;
  emit: (row: Record<string, unknown>) => void;
}

/** Events of each row and of its warm-up (not measured). */
export interface Counts {
  seq: number;
  seqWarm: number;
  pipelined: number;
  pipelinedWarm: number;
}

/**
 * As Chorus's rows: main.ts's append-seq and rows.ts's append-pipelined. The pipelined
 * warm-up is a single Chorus node's: the peers' servers are native code with no JIT to settle,
 * and their client libraries run in this process as Chorus's client does.
 */
const FULL: Counts = {
  seq: 5000,
  seqWarm: 5000,
  pipelined: 100_000,
  pipelinedWarm: PIPELINED_WARM.single,
};
const QUICK: Counts = { seq: 500, seqWarm: 50, pipelined: 5000, pipelinedWarm: 500 };

/** Runs the selected rows on every installed peer, one peer at a time. */
export async function runPeers(options: PeerRunOptions): Promise<void> {
  if (!PEER_ROWS.some(options.only)) return;
  const cpu = new ServerCpu();
  const counts = options.counts ?? (options.quick ? QUICK : FULL);
  for (const peer of PEERS) {
    const missing = peer.missing();
    if (missing !== undefined) {
      process.stderr.write(`bench: peer ${peer.name} skipped: ${missing}\n`);
      continue;
    }
    const session = await peer.start(options.nodes);
    const row = (fields: Record<string, unknown>) =>
      options.emit({ ...fields, peer: peer.name, ...session.tags });
    try {
      if (options.only("append-seq")) row(await appendSeq(session, options.nodes, counts, cpu));
      if (options.only("append-pipelined"))
        row(await appendPipelined(session, options.nodes, counts, cpu));
    } finally {
      await session.stop();
    }
  }
}

/** As main.ts's append-seq: one awaited append at a time to one stream, after a warm-up. */
async function appendSeq(
  session: PeerSession,
  nodes: number,
  counts: Counts,
  cpu: ServerCpu,
): Promise<Record<string, unknown>> {
  const n = counts.seq;
  const lat = new Latencies();
  const stream = `seq-${Date.now()}`;
  // Warm up the connection, the stream and the processes; not measured.
  for (let i = 0; i < counts.seqWarm; i++) await session.append(stream, event(-1));
  const mark = cpu.start(session.servers());
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const e = event(i);
    const t0 = performance.now();
    await session.append(stream, e);
    lat.record(performance.now() - t0);
  }
  const s = (performance.now() - start) / 1000;
  return {
    test: "append-seq",
    nodes,
    n,
    ops_per_s: round(n / s),
    ...lat.summary(),
    ...cpu.stop(mark, n),
  };
}

/** As rows.ts's append-pipelined: 256 appends in flight over 1,000 streams, after a warm-up. */
async function appendPipelined(
  session: PeerSession,
  nodes: number,
  counts: Counts,
  cpu: ServerCpu,
): Promise<Record<string, unknown>> {
  const n = counts.pipelined;
  const inFlight = PIPELINED_IN_FLIGHT;
  const lat = new Latencies();
  const warm = counts.pipelinedWarm;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = w; i < warm; i += inFlight) await session.append(`pipe-${i % 1000}`, event(i));
    }),
  );
  const mark = cpu.start(session.servers());
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      await session.append(`pipe-${i % 1000}`, event(i));
      lat.record(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const s = (performance.now() - start) / 1000;
  return {
    test: "append-pipelined",
    nodes,
    n,
    in_flight: inFlight,
    ops_per_s: round(n / s),
    ...lat.summary(),
    ...cpu.stop(mark, n),
  };
}

interface ServerCpuMark {
  client: NodeJS.CpuUsage;
  servers: number[][];
  ticks: number[];
}

/**
 * CPU per event over a measured interval: the bench process (`client_cpu_us`) and the mean
 * of the servers (`server_cpu_us`), each server its processes' utime + stime (proc.ts).
 */
class ServerCpu {
  private readonly ticksPerSecond = clockTicksPerSecond();

  start(servers: number[][]): ServerCpuMark {
    return { servers, ticks: servers.map(ticksOfAll), client: process.cpuUsage() };
  }

  stop(mark: ServerCpuMark, events: number): { client_cpu_us: number; server_cpu_us: number } {
    const client = process.cpuUsage(mark.client);
    const used = mark.servers.map((pids, i) => ticksOfAll(pids) - mark.ticks[i]!);
    const meanTicks = used.reduce((a, b) => a + b, 0) / used.length;
    return {
      client_cpu_us: round((client.user + client.system) / events, 1),
      server_cpu_us: round((meanTicks * 1e6) / this.ticksPerSecond / events, 1),
    };
  }
}
