/**
 * The `append-seq-floor` bench row: sequential appends through the least a quorum append can
 * cost here (floor-node.ts: raw TCP between processes, a write into preallocated zeros and
 * an fdatasync per node, the leader answering after its own sync and one follower's), with no
 * protocol, index or consensus. It is the ceiling of `append-seq` on the machine of the run, so the two compare
 * as a ratio within one run, whatever the machine's speed that day.
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { once } from "node:events";
import { Latencies } from "./stats.js";

/** Bytes of one record: about an event of the other rows as the log stores it. */
export const RECORD_BYTES = 200;
/**
 * Zeros each floor process writes and syncs ahead of its records before the row starts: the
 * disk log's default preallocation (more than a row's records take).
 */
export const PREALLOCATE_BYTES = 4 * 1024 * 1024;
const START_TIMEOUT_MS = 10_000;
const REPLY_TIMEOUT_MS = 10_000;

async function startProcess(args: string[], children: ChildProcess[]): Promise<number> {
  const child = fork(new URL("./floor-node.js", import.meta.url), args, { stdio: "ignore" });
  children.push(child);
  const port = once(child, "message", { signal: AbortSignal.timeout(START_TIMEOUT_MS) });
  const [value] = (await port) as [unknown];
  if (typeof value !== "number" || value <= 0) throw new Error("floor node did not listen");
  return value;
}

/**
 * The floor's processes, kept running so that its slices can alternate with another row's
 * (main.ts): a leader with `followers` followers, and a client connection to it.
 */
export class SeqFloor {
  private constructor(
    private readonly dir: string,
    private readonly children: ChildProcess[],
    private readonly socket: Socket,
  ) {}

  static async open(followers: number): Promise<SeqFloor> {
    const dir = await mkdtemp(join(tmpdir(), "chorus-floor-"));
    const children: ChildProcess[] = [];
    try {
      const ports: number[] = [];
      for (let i = 0; i < followers; i++) {
        ports.push(await startProcess(["follower", join(dir, `f${i}.log`)], children));
      }
      const leader = await startProcess(
        ["leader", join(dir, "leader.log"), ...ports.map(String)],
        children,
      );
      const socket = createConnection({ host: "127.0.0.1", port: leader, noDelay: true });
      const floor = new SeqFloor(dir, children, socket);
      try {
        await once(socket, "connect", { signal: AbortSignal.timeout(START_TIMEOUT_MS) });
      } catch (err) {
        await floor.close();
        throw err;
      }
      return floor;
    } catch (err) {
      await stopAll(children);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** `n` records, one at a time, each latency into `lat` when given; the seconds they took. */
  async run(n: number, lat?: Latencies): Promise<number> {
    const record = Buffer.alloc(RECORD_BYTES, 7);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const reply = once(this.socket, "data", { signal: AbortSignal.timeout(REPLY_TIMEOUT_MS) });
      this.socket.write(record);
      await reply;
      lat?.record(performance.now() - t0);
    }
    return (performance.now() - start) / 1000;
  }

  async close(): Promise<void> {
    this.socket.destroy();
    await stopAll(this.children);
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function stopAll(children: readonly ChildProcess[]): Promise<void> {
  const exits = children
    .filter((c) => c.exitCode === null && c.signalCode === null)
    .map((c) => once(c, "exit"));
  for (const child of children) child.kill();
  await Promise.all(exits);
}

/** One record at a time through a leader with `followers` followers; `n` measured, `warm` not. */
export async function seqFloor(
  followers: number,
  n: number,
  warm: number,
): Promise<{ ops_per_s: number; p50_ms: number; p99_ms: number }> {
  const floor = await SeqFloor.open(followers);
  try {
    await floor.run(warm);
    const lat = new Latencies();
    const s = await floor.run(n, lat);
    const { p50_ms, p99_ms } = lat.summary();
    return { ops_per_s: Math.round(n / s), p50_ms, p99_ms };
  } finally {
    await floor.close();
  }
}
