/**
 * `npm run bench -- --partitions N`: `append-pipelined` and `subscribe-live` (over `$all`)
 * through a partitioned client over N groups of one on-disk node each, beside the same rows
 * through a plain client on one on-disk node of its own, in the same run. Every row carries
 * `partitions`: 1 for the plain client, N for the partitioned one. With N, `leader_cpu_us`
 * is every group's node together (each is its group's leader), per event.
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
import { appendPipelined, subscribeLive, type Row, type RowCtx } from "./rows.js";
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
  const variants: { partitions: number; ctx: RowCtx }[] = [
    {
      partitions: 1,
      ctx: {
        args: { quick: run.quick },
        client: plain,
        nodes: 1,
        cpu: new CpuMeter(),
        servers: () => Promise.resolve({ leader: pidOf(plainNode, "the node"), followers: [] }),
      },
    },
    {
      partitions: run.count,
      ctx: {
        args: { quick: run.quick },
        client: partitioned,
        nodes: 1,
        cpu: new EveryNodeCpu(),
        servers: () =>
          Promise.resolve({
            leader: pidOf(groupNodes[0]!, `group ${names[0]}'s node`),
            followers: groupNodes.slice(1).map((n, i) => pidOf(n, `group ${names[i + 1]}'s node`)),
          }),
      },
    },
  ];
  try {
    await Promise.all([plain.connect(), partitioned.connect()]);
    // Each row three times per client, alternating (plain, partitioned; partitioned, plain;
    // plain, partitioned): a row's CPU per event depends on when in the process it runs (JIT,
    // heap), so each client gets early and late places. The ratios compare medians.
    const cpuOf = new Map<string, number[]>();
    let events = 0;
    for (const test of selected) {
      for (const round of [1, 2, 3]) {
        for (const { partitions, ctx } of round === 2 ? [...variants].reverse() : variants) {
          const row =
            test === "append-pipelined"
              ? await appendPipelined(ctx)
              : await subscribeLive(ctx, "$all");
          run.emit({ ...row, partitions, round });
          events += Number(row.n);
          const key = `${test}/${partitions}`;
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
    for (const test of selected)
      ratios[`${test}_ratio`] = round(
        median(cpuOf.get(`${test}/${run.count}`)!) / median(cpuOf.get(`${test}/1`)!),
        2,
      );
    run.emit(ratios);
  } finally {
    await Promise.allSettled([plain.close(), partitioned.close()]);
    await Promise.allSettled(nodes.map((n) => n.stop()));
  }
}
