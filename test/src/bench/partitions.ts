/**
 * `npm run bench -- --partitions N`: `append-pipelined` and `subscribe-live` (over `$all`)
 * through a partitioned client over N groups of one on-disk node each, beside the same rows
 * through a plain client on one on-disk node of its own, in the same run, each under four
 * loads (`Load`). Every row carries `partitions`: 1 for the plain client, N for the
 * partitioned one, and `load`. With N, `leader_cpu_us` is every group's node together (each
 * is its group's leader), per event.
 */
import { ChorusClient, ConnectionSettings } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import {
  clockTicksPerSecond,
  cpuTicks,
  CpuMeter,
  type CpuColumns,
  type CpuMark,
  type ServerPids,
} from "./proc.js";
import {
  appendPipelined,
  LIVE_WRITERS,
  PIPELINED_IN_FLIGHT,
  subscribeLive,
  type Row,
  type RowCtx,
} from "./rows.js";
import { median, round } from "./stats.js";

/** The rows of a --partitions run. */
export const PARTITION_ROWS: ReadonlySet<string> = new Set(["append-pipelined", "subscribe-live"]);

export interface PartitionsRun {
  /** How many groups (2 and up). */
  readonly count: number;
  readonly quick: boolean;
  readonly only: (row: string) => boolean;
  readonly emit: (row: Row) => void;
  /** Flags for every server process (the profiler's with --profile). */
  readonly nodeArgs: readonly string[];
  readonly onServer?: (pid: number | undefined, role: string) => void;
}

/** CPU of the bench process, and of every server process together as `leader_cpu_us`. */
class EveryNodeCpu {
  readonly #ticksPerSecond = clockTicksPerSecond();

  start(pids: ServerPids): CpuMark {
    const all = [pids.leader, ...pids.followers];
    const ticks = all.reduce((sum, pid) => sum + cpuTicks(pid), 0);
    return {
      pids,
      leaderTicks: ticks,
      followerTicks: [],
      databaseTicks: 0,
      client: process.cpuUsage(),
    };
  }

  stop(mark: CpuMark, events: number): CpuColumns {
    const client = process.cpuUsage(mark.client);
    const all = [mark.pids.leader, ...mark.pids.followers];
    const ticks = all.reduce((sum, pid) => sum + cpuTicks(pid), 0) - mark.leaderTicks;
    return {
      client_cpu_us: round((client.user + client.system) / events, 1),
      leader_cpu_us: round((ticks * 1e6) / this.#ticksPerSecond / events, 1),
    };
  }
}

/**
 * How much load a variant puts on each connection, the row's load being L (256 appends in
 * flight, 32 writers) and N the groups:
 * - `whole`: the plain client, L on its one node;
 * - `spread`: the partitioned client, L in all, so about L / N on each group;
 * - `per-group`: the partitioned client, N × L in all, so about L on each group, as the
 *   plain client's node gets: what the routing and the merge cost;
 * - `share`: the plain client, L / N on its node: what a connection carrying a group's share
 *   of the load costs without any partitioning (fewer events per message, per write, per
 *   read; compare with `spread`).
 */
type Load = "whole" | "spread" | "per-group" | "share";

interface LoadVariant {
  readonly load: Load;
  readonly partitions: number;
  readonly ctx: RowCtx;
  /** The row's in-flight appends or writers for this variant, of the row's `whole`. */
  readonly share: (whole: number) => number;
}

function loadVariants(count: number, plain: RowCtx, partitioned: RowCtx): LoadVariant[] {
  return [
    { load: "whole", partitions: 1, ctx: plain, share: (l) => l },
    { load: "spread", partitions: count, ctx: partitioned, share: (l) => l },
    { load: "per-group", partitions: count, ctx: partitioned, share: (l) => l * count },
    { load: "share", partitions: 1, ctx: plain, share: (l) => Math.max(1, Math.round(l / count)) },
  ];
}

function pidOf(node: TestNode, role: string): number {
  if (node.pid === undefined) throw new Error(`${role} is not running`);
  return node.pid;
}

export async function runPartitions(run: PartitionsRun): Promise<void> {
  const selected = [...PARTITION_ROWS].filter(run.only);
  if (selected.length === 0) return;
  const names = Array.from({ length: run.count }, (_, i) => `p${i + 1}`);
  const groupArgs = (name: string) => ["--partition", name, "--partitions", names.join(",")];
  const started = await Promise.allSettled([
    startNode({ startTimeoutMs: 60_000, nodeArgs: [...run.nodeArgs] }),
    ...names.map((name) =>
      startNode({ startTimeoutMs: 60_000, nodeArgs: [...run.nodeArgs], args: groupArgs(name) }),
    ),
  ]);
  const nodes = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    throw failed.reason;
  }
  const [plainNode, ...groupNodes] = nodes as [TestNode, ...TestNode[]];
  run.onServer?.(plainNode.pid, "node of the plain client");
  groupNodes.forEach((node, i) => run.onServer?.(node.pid, `node of group ${names[i]}`));
  const plain = new ChorusClient(`${plainNode.connectionString}&operationTimeout=30000`);
  const partitioned = new ChorusClient(
    ConnectionSettings.create()
      .withPartitions(
        Object.fromEntries(
          names.map((name, i) => [
            name,
            `${groupNodes[i]!.connectionString}&operationTimeout=30000`,
          ]),
        ),
      )
      .build(),
  );
  const plainCtx: RowCtx = {
    args: { quick: run.quick },
    client: plain,
    nodes: 1,
    cpu: new CpuMeter(),
    servers: () => Promise.resolve({ leader: pidOf(plainNode, "the node"), followers: [] }),
  };
  const partitionedCtx: RowCtx = {
    args: { quick: run.quick },
    client: partitioned,
    nodes: 1,
    cpu: new EveryNodeCpu(),
    servers: () =>
      Promise.resolve({
        leader: pidOf(groupNodes[0]!, `group ${names[0]}'s node`),
        followers: groupNodes.slice(1).map((n, i) => pidOf(n, `group ${names[i + 1]}'s node`)),
      }),
  };
  const variants = loadVariants(run.count, plainCtx, partitionedCtx);
  try {
    await Promise.all([plain.connect(), partitioned.connect()]);
    // Each row five times per variant, alternating (in order, reversed, ...): a row's CPU per
    // event depends on when in the process it runs (JIT, heap), so each variant gets early and
    // late places. The ratios compare medians: one row's client CPU per event varies by about
    // a fifth around its median on this machine, three rows left the ratios as noisy.
    const cpuOf = new Map<string, number[]>();
    let events = 0;
    for (const test of selected) {
      for (const round of [1, 2, 3, 4, 5]) {
        for (const variant of round % 2 === 0 ? [...variants].reverse() : variants) {
          const share = variant.share(
            test === "append-pipelined" ? PIPELINED_IN_FLIGHT : LIVE_WRITERS,
          );
          const row =
            test === "append-pipelined"
              ? await appendPipelined(variant.ctx, share)
              : await subscribeLive(variant.ctx, "$all", share);
          run.emit({ ...row, partitions: variant.partitions, load: variant.load, round });
          events += Number(row.n);
          const key = `${test}/${variant.load}`;
          const cpu = cpuOf.get(key) ?? [];
          cpu.push(Number(row.client_cpu_us));
          cpuOf.set(key, cpu);
        }
      }
    }
    const ratios: Row = {
      test: "partitions-client-cpu",
      nodes: 1,
      n: events,
      partitions: run.count,
    };
    const cpu = (test: string, load: Load) => median(cpuOf.get(`${test}/${load}`)!);
    for (const test of selected) {
      const one = cpu(test, "whole");
      ratios[`${test}_ratio`] = round(cpu(test, "spread") / one, 2);
      ratios[`${test}_per_group_ratio`] = round(cpu(test, "per-group") / one, 2);
      ratios[`${test}_share_ratio`] = round(cpu(test, "share") / one, 2);
    }
    run.emit(ratios);
  } finally {
    await Promise.allSettled([plain.close(), partitioned.close()]);
    await Promise.allSettled(nodes.map((n) => n.stop()));
  }
}
