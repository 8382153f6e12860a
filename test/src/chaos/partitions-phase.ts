// The soak's partitioned phase (`--phases parts`): one deployment of two replication groups,
// `a` (three voters on disk) and `b` (three `--mem-db` voters), each under a fault schedule
// of its own drawn from the seed, while the workload runs through partitioned clients
// (ConnectionSettings.withPartitions): writers whose streams are spread over both groups by
// their owner, a merged `$all` subscriber, a subscriber on one stream of each group, and the
// consumers of one persistent group on `$all` (a state per group, consumed through one
// subscription object each). Then heal, wait until both groups are caught up, and check each
// group's log against the appends to its streams, and each subscriber per group.
import { partitionOf } from "@chorus/protocol";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { createNemesis, type InjectedFault, type Nemesis } from "./nemesis.js";
import {
  ELECTION_TIMEOUT_MS,
  FIRST_WRITES_TIMEOUT_MS,
  HEARTBEAT_INTERVAL_MS,
  NODES,
  PROGRESS_AFTER_HEAL_TIMEOUT_MS,
  PROGRESS_APPENDS,
  phaseResult,
  PhaseRun,
  saveLogs,
  START_TIMEOUT_MS,
  type PhaseResult,
} from "./phase.js";
import type { PlannedFault } from "./schedule.js";
import { partitionedClientsOf, STREAMS, streamName } from "./workload.js";

/** The groups' names, as every node's `--partitions` lists them. */
export const GROUPS = ["a", "b"] as const;
export type GroupName = (typeof GROUPS)[number];

type Lanes = { process: readonly PlannedFault[]; network: readonly PlannedFault[] };

export interface PartitionsPhaseOptions {
  readonly seed: number;
  /** Faults are injected for this long. */
  readonly faultMs: number;
  /** Each group's fault schedule. */
  readonly lanes: Readonly<Record<GroupName, Lanes>>;
  /** Group `a` takes iptables faults too, where the machine allows them. */
  readonly kernelFaults: boolean;
  readonly print: (line: string) => void;
  /** Registers a cleanup for an interrupt (SIGINT); returns its removal. */
  readonly onInterrupt: (cleanup: () => Promise<void>) => () => void;
}

const owners = new Map<string, GroupName>();
/**
 * The group that owns `streamId` (the partitioned client's and the nodes' rule), hashed once
 * per stream: the checks ask for every append, and the phase's own event loop also carries
 * every link proxy, so it must not spend seconds hashing.
 */
export function ownerOf(streamId: string): GroupName {
  let owner = owners.get(streamId);
  if (owner === undefined) {
    owner = partitionOf(streamId, GROUPS) as GroupName;
    owners.set(streamId, owner);
  }
  return owner;
}

export async function runPartitionsPhase(options: PartitionsPhaseOptions): Promise<PhaseResult> {
  const { print } = options;
  const tag = "chaos[parts]";
  const run = new PhaseRun(tag, print);
  const { violation, violations } = run;
  const clusters = new Map<GroupName, TestCluster>();
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      await run.stopWorkload();
      await Promise.all([...clusters.values()].map((c) => c.stop().catch(() => undefined)));
      delete process.env["CHORUS_TEST_SYNC_STALL"];
    })();
    return cleaned;
  };
  const removeInterrupt = options.onInterrupt(cleanup);
  await run.noteOwnDescriptors();
  try {
    const owned = (g: GroupName) =>
      Array.from({ length: STREAMS }, (_, k) => streamName(k)).filter((s) => ownerOf(s) === g);
    for (const g of GROUPS) {
      if (owned(g).length === 0) throw new Error(`group ${g} owns none of the writers' streams`);
    }
    print(
      `${tag}: starting group a (3 voters on disk, link proxies${options.kernelFaults ? ", iptables" : ""}; ` +
        `streams ${owned("a").join(", ")}) and group b (3 voters with --mem-db, link proxies; ` +
        `streams ${owned("b").join(", ")})`,
    );
    // Group a's stall faults: its nodes take the test hook of the server's storage/sync-stall.ts.
    process.env["CHORUS_TEST_SYNC_STALL"] = "1";
    for (const g of GROUPS) {
      clusters.set(
        g,
        await startCluster({
          size: NODES,
          memDb: g === "b",
          linkProxies: true,
          kernelFaults: g === "a" && options.kernelFaults,
          args: ["--partition", g, "--partitions", GROUPS.join(",")],
          timings: {
            heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
            electionTimeoutMs: ELECTION_TIMEOUT_MS,
          },
          startTimeoutMs: START_TIMEOUT_MS,
        }),
      );
    }
    const clusterOf = (g: GroupName) => clusters.get(g) as TestCluster;
    for (const g of GROUPS) await clusterOf(g).leader({ timeoutMs: START_TIMEOUT_MS });
    const clientOf = partitionedClientsOf(
      Object.fromEntries(GROUPS.map((g) => [g, clusterOf(g).connectionString])),
    );
    const { writers: w, strategy } = await run.startWorkload(clientOf, options.seed, "parts", [
      { name: "merged $all subscriber", partitions: GROUPS },
      ...GROUPS.map((g) => ({
        name: `${owned(g)[0]!} subscriber (group ${g}, follower reads)`,
        streamId: owned(g)[0]!,
        nodePreference: "follower" as const,
      })),
    ]);
    /**
     * Appends acknowledged by each group so far, counted as the writers record them (each
     * record once: polled while tens of thousands accumulate).
     */
    const acknowledged: Record<GroupName, number> = { a: 0, b: 0 };
    let counted = 0;
    const acknowledgedBy = (g: GroupName) => {
      for (; counted < w.appends.length; counted++) {
        const a = w.appends[counted]!;
        if (a.outcome.kind === "acknowledged") acknowledged[ownerOf(a.streamId)]++;
      }
      return acknowledged[g];
    };
    const progress = async (deadlineMs: number, what: string) => {
      const before = new Map(GROUPS.map((g) => [g, acknowledgedBy(g)]));
      await Promise.all(
        GROUPS.map((g) =>
          waitFor(() => acknowledgedBy(g) >= (before.get(g) ?? 0) + PROGRESS_APPENDS, {
            timeoutMs: deadlineMs,
            message: `${what} in group ${g}`,
          }),
        ),
      );
    };
    await progress(FIRST_WRITES_TIMEOUT_MS, "the first appends acknowledged");

    for (const g of GROUPS) await run.noteNodeDescriptors(clusterOf(g), `group ${g}: `);
    const nemeses = new Map<GroupName, Nemesis>(
      GROUPS.map((g) => [
        g,
        createNemesis({
          cluster: clusterOf(g),
          phase: `parts ${g}`,
          memDb: g === "b",
          disk: undefined,
          faultyDisk: undefined,
          signal: run.controller.signal,
          print,
          violation: (text) => violation(`group ${g}: ${text}`),
        }),
      ]),
    );
    const injectedCount = () => [...nemeses.values()].reduce((n, x) => n + x.injected.length, 0);
    run.startProgress(
      () => ({
        count: injectedCount(),
        active: GROUPS.flatMap((g) =>
          [...(nemeses.get(g) as Nemesis).active].map((f) => `${g}: ${f}`),
        ),
      }),
      () => ` (a ${acknowledgedBy("a")}, b ${acknowledgedBy("b")})`,
    );
    const stopFaults = setTimeout(() => run.controller.abort(), options.faultMs);
    await Promise.all(GROUPS.map((g) => (nemeses.get(g) as Nemesis).run(options.lanes[g])));
    clearTimeout(stopFaults);
    run.stopProgress();

    // Heal both groups; a node that exited without being killed crashed.
    for (const g of GROUPS) {
      await (nemeses.get(g) as Nemesis).healAll();
      await run.restartExited(clusterOf(g), `group ${g}: `);
    }
    print(`${tag}: healed after ${injectedCount()} faults; waiting for progress in both groups`);
    await progress(PROGRESS_AFTER_HEAL_TIMEOUT_MS, "appends acknowledged after healing").catch(
      (err: unknown) =>
        violation(
          `no progress: ${err instanceof Error ? err.message : String(err)} ` +
            `(${PROGRESS_APPENDS} appends within ${PROGRESS_AFTER_HEAL_TIMEOUT_MS} ms of healing)`,
        ),
    );
    for (const v of await w.stop()) violation(v);

    const settled = new Map<GroupName, Awaited<ReturnType<PhaseRun["settledLogs"]>>>();
    for (const g of GROUPS) {
      settled.set(g, await run.settledLogs(clusterOf(g), `group ${g}: `));
    }
    const longestOf = (g: GroupName) => settled.get(g)?.longest ?? [];
    const { byTwo } = await run.checkReaders(
      strategy,
      GROUPS.map((g) => ({ partition: g, log: longestOf(g) })),
    );
    for (const g of GROUPS) {
      await run.checkNodeDescriptors(clusterOf(g), `group ${g}: `);
      run.checkClusterHistory(
        clusterOf(g),
        settled.get(g) ?? { logs: [], longest: [] },
        w.appends.filter((a) => ownerOf(a.streamId) === g),
        `group ${g}: `,
      );
    }

    const logsDir =
      violations.length > 0
        ? await saveLogs(
            `${options.seed}-parts`,
            GROUPS.flatMap((g) =>
              clusterOf(g).nodes.map(
                (node, i) => [`group-${g}-node-${i}.log`, node.output()] as const,
              ),
            ),
          )
        : undefined;
    const injected: InjectedFault[] = GROUPS.flatMap((g) =>
      (nemeses.get(g) as Nemesis).injected.map((f) => ({
        ...f,
        note: f.note === "" ? `group ${g}` : `group ${g}, ${f.note}`,
      })),
    ).sort((x, y) => x.atMs - y.atMs);
    return phaseResult({
      name: "parts",
      run,
      injected,
      strategy,
      byTwo,
      longest: GROUPS.flatMap((g) => longestOf(g)),
      logsDir,
    });
  } finally {
    removeInterrupt();
    await cleanup();
    await run.checkOwnDescriptors();
  }
}
