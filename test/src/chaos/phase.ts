// One phase of the real-process soak: a fresh 3-node cluster (on disk, or `--mem-db` voters),
// writers and subscribers, the nemesis for the phase's time, then heal, wait until every node
// is up and caught up, and check the histories.
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  checkAppendHistory,
  checkLogsAgree,
  checkPersistentHistory,
  checkSubscriptionHistory,
  committedLogOn,
  leadersByEpoch,
  type LogEntry,
} from "../cluster/write-checker.js";
import { createNemesis, moveToTmpfs, type InjectedFault, type TmpfsDisk } from "./nemesis.js";
import { deriveSeed, pick, seededRandom, type FaultKind, type PlannedFault } from "./schedule.js";
import {
  OPERATION_TIMEOUT_MS,
  SETTLE_GRACE_MS,
  startPersistentConsumers,
  startSubscriber,
  startWriters,
  STREAM_PREFIX,
  streamName,
  type PersistentConsumers,
  type Subscriber,
  type Writers,
} from "./workload.js";

export const NODES = 3;
export const WRITERS = 3;
export const HEARTBEAT_INTERVAL_MS = 50;
export const ELECTION_TIMEOUT_MS = 500;
/** Deadlines of the steps around the faults. */
export const START_TIMEOUT_MS = 60_000;
export const FIRST_WRITES_TIMEOUT_MS = 60_000;
export const PROGRESS_AFTER_HEAL_TIMEOUT_MS = 60_000;
export const CAUGHT_UP_TIMEOUT_MS = 90_000;
/** Appends that must be acknowledged at the start, and again after healing. */
export const PROGRESS_APPENDS = 20;
export const PROGRESS_LINE_INTERVAL_MS = 5_000;
/** The node whose data directory moves to a tmpfs for disk-full faults (disk phase). */
export const TMPFS_NODE = 2;
/** The persistent group on `$all`; its strategy is drawn from the seed. */
export const PERSISTENT_GROUP = "chaos";
export const STRATEGIES = ["RoundRobin", "DispatchToSingle", "Pinned"] as const;

export type PhaseName = "disk" | "mem" | "pg";

export interface PhaseOptions {
  readonly name: PhaseName;
  readonly seed: number;
  /** Faults are injected for this long. */
  readonly faultMs: number;
  readonly lanes: { process: readonly PlannedFault[]; network: readonly PlannedFault[] };
  readonly kinds: readonly FaultKind[];
  readonly kernelFaults: boolean;
  readonly tmpfs: boolean;
  readonly print: (line: string) => void;
  /** Registers a cleanup for an interrupt (SIGINT); returns its removal. */
  readonly onInterrupt: (cleanup: () => Promise<void>) => () => void;
}

export interface PhaseResult {
  readonly name: PhaseName;
  readonly injected: readonly InjectedFault[];
  readonly acknowledged: number;
  readonly failed: number;
  readonly unknown: number;
  readonly unknownReasons: ReadonlyMap<string, number>;
  /** Events handed to each subscriber. */
  readonly delivered: ReadonlyMap<string, number>;
  readonly resubscribes: number;
  /** The persistent group's consumers: its strategy, handings, events two consumers handled, drops. */
  readonly persistent: {
    readonly strategy: string;
    readonly handed: number;
    readonly byTwo: number;
    readonly drops: ReadonlyMap<string, number>;
    readonly ackRetries: number;
  };
  readonly logEntries: number;
  readonly violations: readonly string[];
  /** Where the nodes' output went, when there were violations. */
  readonly logsDir: string | undefined;
}

const seconds = (ms: number) => `${(ms / 1_000).toFixed(1)}s`;

export async function runPhase(options: PhaseOptions): Promise<PhaseResult> {
  const { name, print } = options;
  const tag = `chaos[${name}]`;
  const violations: string[] = [];
  const violation = (text: string) => {
    violations.push(text);
    print(`${tag}: VIOLATION ${text}`);
  };
  let cluster: TestCluster | undefined;
  let disk: TmpfsDisk | undefined;
  let writers: Writers | undefined;
  const subscribers: Subscriber[] = [];
  let persistent: PersistentConsumers | undefined;
  let progressTimer: NodeJS.Timeout | undefined;
  const controller = new AbortController();
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      controller.abort();
      clearInterval(progressTimer);
      await writers?.stop().catch(() => []);
      await Promise.all(subscribers.map((s) => s.stop().catch(() => undefined)));
      await persistent?.stop().catch(() => undefined);
      await cluster?.stop().catch(() => undefined);
      delete process.env["CHORUS_TEST_SYNC_STALL"];
      await disk?.close().catch(() => undefined);
    })();
    return cleaned;
  };
  const removeInterrupt = options.onInterrupt(cleanup);
  try {
    print(
      `${tag}: starting 3 voters${name === "mem" ? " with --mem-db" : " on disk"}, link proxies` +
        `${options.kernelFaults ? ", iptables" : ""}${options.tmpfs ? `, node ${TMPFS_NODE} on a tmpfs` : ""}`,
    );
    // The disk phase's stall faults: its nodes, restarts included, take the test hook of
    // the server's storage/sync-stall.ts (a file in the data directory stalls the log syncs).
    if (name === "disk") process.env["CHORUS_TEST_SYNC_STALL"] = "1";
    cluster = await startCluster({
      size: NODES,
      memDb: name === "mem",
      linkProxies: true,
      kernelFaults: options.kernelFaults,
      timings: {
        heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
        electionTimeoutMs: ELECTION_TIMEOUT_MS,
      },
      startTimeoutMs: START_TIMEOUT_MS,
    });
    const c = cluster;
    if (options.tmpfs) disk = await moveToTmpfs(c, TMPFS_NODE);
    await c.leader({ timeoutMs: START_TIMEOUT_MS });
    const strategy = pick(seededRandom(deriveSeed(options.seed, name, "persistent")), STRATEGIES);
    persistent = await startPersistentConsumers(c.connectionString, {
      group: PERSISTENT_GROUP,
      strategy,
    });
    const p = persistent;
    const random = seededRandom(deriveSeed(options.seed, name, "workload"));
    writers = startWriters(c.connectionString, WRITERS, random);
    const w = writers;
    subscribers.push(
      startSubscriber(c.connectionString, { name: "$all subscriber" }),
      startSubscriber(c.connectionString, {
        name: `${streamName(0)} subscriber (follower reads)`,
        streamId: streamName(0),
        nodePreference: "follower",
      }),
    );
    await waitFor(() => w.acknowledged >= PROGRESS_APPENDS, {
      timeoutMs: FIRST_WRITES_TIMEOUT_MS,
      message: "the first appends acknowledged",
    });

    const nemesis = createNemesis({
      cluster: c,
      phase: name,
      memDb: name === "mem",
      disk,
      signal: controller.signal,
      print,
      violation,
    });
    const faultsStart = performance.now();
    progressTimer = setInterval(() => {
      const delivered = subscribers.map((s) => s.delivered.length).join("/");
      const active = [...nemesis.active].join(", ") || "none";
      print(
        `${tag} ${seconds(performance.now() - faultsStart)}: acknowledged ${w.acknowledged}, ` +
          `failed ${w.failed}, unknown ${w.unknown}; delivered ${delivered}, ` +
          `persistent ${p.handings.length}; ` +
          `faults ${nemesis.injected.length}, now: ${active}` +
          (w.oldestPendingMs() > OPERATION_TIMEOUT_MS + SETTLE_GRACE_MS
            ? `; an append pending for ${(w.oldestPendingMs() / 1_000).toFixed(0)}s`
            : ""),
      );
    }, PROGRESS_LINE_INTERVAL_MS);
    const stopFaults = setTimeout(() => controller.abort(), options.faultMs);
    await nemesis.run(options.lanes);
    clearTimeout(stopFaults);
    clearInterval(progressTimer);

    // Heal everything; a node that exited without being killed crashed.
    await nemesis.healAll();
    for (const [i, node] of c.nodes.entries()) {
      if (!node.running) {
        const exit = node.lastExit;
        violation(
          `node ${i} exited on its own (code ${exit?.code ?? "?"}, signal ${exit?.signal ?? "none"}): ` +
            node.output().trim().split("\n").slice(-3).join(" | "),
        );
        await c
          .restart(i)
          .catch((err: unknown) => violation(`node ${i} did not start again: ${String(err)}`));
      }
    }
    print(`${tag}: healed after ${nemesis.injected.length} faults; waiting for progress`);
    const before = w.acknowledged;
    await waitFor(() => w.acknowledged >= before + PROGRESS_APPENDS, {
      timeoutMs: PROGRESS_AFTER_HEAL_TIMEOUT_MS,
      message: "appends acknowledged after healing",
    }).catch(() =>
      violation(
        `no progress: fewer than ${PROGRESS_APPENDS} appends acknowledged within ${PROGRESS_AFTER_HEAL_TIMEOUT_MS} ms of healing`,
      ),
    );
    for (const v of await w.stop()) violation(v);

    // Every node up, one leader, the others following, and one log on every voter.
    await waitFor(
      async () => {
        const states = await Promise.all(c.nodes.map((_, i) => c.stateOf(i)));
        return (
          states.filter((s) => s === "Leader").length === 1 &&
          states.every((s) => s === "Leader" || s === "Follower")
        );
      },
      {
        timeoutMs: CAUGHT_UP_TIMEOUT_MS,
        intervalMs: 200,
        message: "one leader, every other node a Follower",
      },
    ).catch(async () => {
      const states = await Promise.all(c.nodes.map((_, i) => c.stateOf(i)));
      violation(`not every node is up after healing: states ${states.join(", ")}`);
    });
    let logs: LogEntry[][] = [];
    await waitFor(
      async () => {
        logs = await Promise.all(c.nodes.map((node) => committedLogOn(node)));
        return checkLogsAgree(logs).length === 0;
      },
      { timeoutMs: CAUGHT_UP_TIMEOUT_MS, intervalMs: 500, message: "every voter holds one log" },
    ).catch(() => undefined);
    const disagree = checkLogsAgree(logs);
    for (const v of disagree) violation(v);
    if (disagree.length > 0) for (const line of await describeNodes(c)) print(`${tag}: ${line}`);
    const longest = logs.reduce<LogEntry[]>((a, b) => (b.length > a.length ? b : a), []);

    const { byTwo } = await checkReaders({
      tag,
      print,
      violation,
      subscribers,
      persistent: p,
      strategy,
      longest,
    });

    // The checkers.
    // On the longest log, and on any log that is not a prefix of it (a lagging node is
    // reported above; its missing tail would only repeat that here).
    const isPrefix = (log: LogEntry[]) =>
      log.every((e, k) => e.id === longest[k]!.id && e.position === longest[k]!.position);
    for (const [i, log] of logs.entries()) {
      if (log !== longest && isPrefix(log)) continue;
      const where = log === longest ? "the longest log" : `node ${i}`;
      for (const v of checkAppendHistory(w.appends, log)) violation(`${where}: ${v}`);
    }
    for (const [epoch, leaders] of leadersByEpoch(c.nodes)) {
      if (leaders.size > 1)
        violation(`epoch ${epoch} had ${leaders.size} leaders: ${[...leaders].join(", ")}`);
    }

    const logsDir =
      violations.length > 0
        ? await saveLogs(
            `${options.seed}-${name}`,
            c.nodes.map((node, i) => [`node-${i}.log`, node.output()]),
          )
        : undefined;
    return phaseResult({
      name,
      injected: nemesis.injected,
      writers: w,
      subscribers,
      persistent: p,
      strategy,
      byTwo,
      longest,
      violations,
      logsDir,
    });
  } finally {
    removeInterrupt();
    await cleanup();
  }
}

/**
 * What each node says of itself when the logs disagree after healing: its state, commit
 * position and log size (`/stats`), and a leader's view of each follower's lag (`/metrics`).
 */
async function describeNodes(c: TestCluster): Promise<string[]> {
  const get = async (url: string): Promise<string> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return await res.text();
    } catch (err) {
      return `(no answer: ${String(err)})`;
    }
  };
  return Promise.all(
    c.nodes.map(async (node, i) => {
      const base = `http://${node.httpEndpoint}`;
      const stats = await get(`${base}/stats`);
      let summary = stats;
      try {
        const s = JSON.parse(stats) as { state?: string; store?: object };
        summary = JSON.stringify({ state: s.state, ...s.store });
      } catch {
        // Not JSON: printed as it came.
      }
      const lag = (await get(`${base}/metrics`))
        .split("\n")
        .filter((l) => l.startsWith("chorus_replication_lag_bytes{"))
        .join(" ");
      return `node ${i}: ${summary}${lag ? ` ${lag}` : ""}`;
    }),
  );
}

/** What checkReaders needs: the phase's readers, and the committed log after healing. */
export interface Readers {
  readonly tag: string;
  readonly print: (line: string) => void;
  readonly violation: (text: string) => void;
  readonly subscribers: readonly Subscriber[];
  readonly persistent: PersistentConsumers;
  readonly strategy: string;
  /** The committed log, in `$all` order. */
  readonly longest: readonly LogEntry[];
}

/**
 * Waits (with deadlines) until the catch-up subscribers and the persistent group's consumers
 * were handed the committed events that are theirs, stops them, and checks what they were
 * handed; returns how many events two consumers of the group handled.
 */
export async function checkReaders(r: Readers): Promise<{ byTwo: number }> {
  const { subscribers, persistent: p, longest } = r;
  const expectedFor = (s: Subscriber) =>
    longest.filter((e) =>
      s.streamId === undefined ? e.streamId.startsWith(STREAM_PREFIX) : e.streamId === s.streamId,
    );
  await waitFor(() => subscribers.every((s) => s.delivered.length >= expectedFor(s).length), {
    timeoutMs: CAUGHT_UP_TIMEOUT_MS,
    message: "subscribers caught up",
  }).catch(() => undefined);
  await Promise.all(subscribers.map((s) => s.stop()));
  for (const s of subscribers)
    for (const [reason, n] of s.drops)
      r.print(`${r.tag}: ${s.name} dropped ${n} time(s): ${reason}`);
  // The persistent group: every committed event of the writers' streams handed and acked.
  const groupEvents = longest.filter((e) => e.streamId.startsWith(STREAM_PREFIX));
  await waitFor(() => p.confirmedAt.size >= groupEvents.length, {
    timeoutMs: CAUGHT_UP_TIMEOUT_MS,
    message: "the persistent group's consumers caught up",
  }).catch(() => undefined);
  await p.stop();
  for (const s of subscribers) {
    for (const v of checkSubscriptionHistory(s.name, s.delivered, expectedFor(s))) r.violation(v);
  }
  const group = checkPersistentHistory(`persistent group (${r.strategy})`, p, groupEvents);
  for (const v of group.violations) r.violation(v);
  return { byTwo: group.byTwo };
}

/**
 * Writes a failed phase's logs (file name, text) into a fresh directory named after `label`
 * (seed and phase); its path, printed with the result.
 */
export async function saveLogs(
  label: string,
  files: ReadonlyArray<readonly [string, string]>,
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `chorus-chaos-${label}-`));
  for (const [file, text] of files) await writeFile(join(dir, file), text);
  return dir;
}

/** A phase's result, from what its workload recorded and its checks found. */
export function phaseResult(o: {
  readonly name: PhaseName;
  readonly injected: readonly InjectedFault[];
  readonly writers: Writers;
  readonly subscribers: readonly Subscriber[];
  readonly persistent: PersistentConsumers;
  readonly strategy: string;
  readonly byTwo: number;
  readonly longest: readonly LogEntry[];
  readonly violations: readonly string[];
  readonly logsDir: string | undefined;
}): PhaseResult {
  const w = o.writers;
  return {
    name: o.name,
    injected: o.injected,
    acknowledged: w.acknowledged,
    failed: w.failed,
    unknown: w.unknown,
    unknownReasons: w.unknownReasons,
    delivered: new Map(o.subscribers.map((s) => [s.name, s.delivered.length])),
    resubscribes: o.subscribers.reduce((sum, s) => sum + s.resubscribes, 0),
    persistent: {
      strategy: o.strategy,
      handed: o.persistent.handings.length,
      byTwo: o.byTwo,
      drops: o.persistent.drops,
      ackRetries: o.persistent.ackRetries,
    },
    logEntries: o.longest.length,
    violations: o.violations,
    logsDir: o.logsDir,
  };
}
