// One phase of the real-process soak: a fresh cluster of 3 voters and a read-only replica (on
// disk, or with `--mem-db`), writers and subscribers, the nemesis for the phase's time, then
// heal, wait until every node is up and caught up, and check the histories.
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
import {
  createNemesis,
  moveToFaultyFs,
  moveToTmpfs,
  type FaultyDisk,
  type InjectedFault,
  type TmpfsDisk,
} from "./nemesis.js";
import {
  childProcesses,
  describeDescriptors,
  descriptorsOf,
  openSockets,
  processKeyOf,
  socketHandles,
  type Descriptors,
} from "./descriptors.js";
import { deriveSeed, pick, seededRandom, type FaultKind, type PlannedFault } from "./schedule.js";
import {
  clientsOf,
  OPERATION_TIMEOUT_MS,
  SETTLE_GRACE_MS,
  startPersistentConsumers,
  startSubscriber,
  startWriters,
  STREAM_PREFIX,
  streamName,
  type PersistentConsumers,
  type ClientFactory,
  type Subscriber,
  type SubscriberOptions,
  type Writers,
} from "./workload.js";

export const NODES = 3;
/**
 * Read-only replicas of the disk and mem phases (on disk, or with `--mem-db` like the voters),
 * after the voters (node indexes NODES...). The faults are planned on every node, the replica
 * included (main.ts), and a `$all` subscriber reads from the replica throughout.
 */
export const REPLICAS = 1;
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
/**
 * How many more descriptors than at the start a node that ran through the whole phase may
 * hold after healing: the clients' connections move with the leader (a dozen), a log
 * segment or two more. A descriptor kept per fault would pass it within a few minutes.
 */
export const NODE_DESCRIPTOR_GROWTH_ALLOWED = 48;
/**
 * A node process started during the phase (a restart) takes its descriptor baseline this long
 * after it was first seen: once it has its peer links and clients again.
 */
export const NODE_BASELINE_AFTER_MS = 10_000;
/** How often the node processes are looked at for new ones (a restart). */
const NODE_SAMPLE_INTERVAL_MS = 2_000;
/** How long this process may take to close its last sockets once the phase has stopped. */
export const OWN_DESCRIPTORS_TIMEOUT_MS = 10_000;
/** The node whose data directory moves to a tmpfs for disk-full faults (disk phase). */
export const TMPFS_NODE = 2;
/** The node whose data directory moves to a faulty file system for disk-eio and power-loss faults (disk phase). */
export const FAULTY_DISK_NODE = 1;
/** The persistent group on `$all`; its strategy is drawn from the seed. */
export const PERSISTENT_GROUP = "chaos";
export const STRATEGIES = ["RoundRobin", "DispatchToSingle", "Pinned"] as const;

export type PhaseName = "disk" | "mem" | "pg" | "parts";

export interface PhaseOptions {
  readonly name: PhaseName;
  readonly seed: number;
  /** Faults are injected for this long. */
  readonly faultMs: number;
  readonly lanes: { process: readonly PlannedFault[]; network: readonly PlannedFault[] };
  readonly kinds: readonly FaultKind[];
  readonly kernelFaults: boolean;
  readonly tmpfs: boolean;
  /** Node FAULTY_DISK_NODE on a faulty file system, for disk-eio and power-loss faults. */
  readonly faultyFs: boolean;
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

/**
 * What every phase keeps while it runs: its violations (each printed as found), its workload
 * (stopped by `stopWorkload`, every loop within its deadline), the abort of its faults and
 * its progress line.
 */
export class PhaseRun {
  readonly violations: string[] = [];
  writers: Writers | undefined;
  readonly subscribers: Subscriber[] = [];
  persistent: PersistentConsumers | undefined;
  /** Aborted when the phase's fault time is over (or on cleanup). */
  readonly controller = new AbortController();
  #progressTimer: NodeJS.Timeout | undefined;
  /**
   * Each node's process and its descriptors when the workload was running, before faults; by
   * the cluster's label and the node's index.
   */
  readonly #nodeDescriptors = new Map<string, { key: string; at: Descriptors }>();
  /** This process's descriptors before the phase started anything (noteOwnDescriptors). */
  #ownDescriptors: Descriptors | undefined;
  /** The clusters whose node processes are sampled (noteNodeDescriptors). */
  readonly #sampled: Array<Pick<TestCluster, "nodes">> = [];
  /**
   * By node process (processKeyOf): when it was first seen, and its descriptors
   * NODE_BASELINE_AFTER_MS later.
   */
  readonly #baselines = new Map<string, { firstSeenMs: number; at?: Descriptors | undefined }>();
  #samplingTimer: NodeJS.Timeout | undefined;
  #sampling = false;

  constructor(
    readonly tag: string,
    readonly print: (line: string) => void,
  ) {}

  readonly violation = (text: string): void => {
    this.violations.push(text);
    this.print(`${this.tag}: VIOLATION ${text}`);
  };

  /**
   * Starts the workload through `clientOf`'s clients: the persistent group's consumers (its
   * strategy drawn from the seed and `label`), the writers and the catch-up subscribers.
   */
  async startWorkload(
    clientOf: ClientFactory,
    seed: number,
    label: string,
    subscribers: readonly SubscriberOptions[],
  ): Promise<{ writers: Writers; strategy: string }> {
    const strategy = pick(seededRandom(deriveSeed(seed, label, "persistent")), STRATEGIES);
    const persistent = await startPersistentConsumers(clientOf, {
      group: PERSISTENT_GROUP,
      strategy,
    });
    this.persistent = persistent;
    const writers = startWriters(
      clientOf,
      WRITERS,
      seededRandom(deriveSeed(seed, label, "workload")),
    );
    this.writers = writers;
    for (const options of subscribers) this.subscribers.push(startSubscriber(clientOf, options));
    return { writers, strategy };
  }

  /** checkReaders on this phase's subscribers and persistent group. */
  checkReaders(strategy: string, logs: Readers["logs"]): Promise<{ byTwo: number }> {
    return checkReaders({
      tag: this.tag,
      print: this.print,
      violation: this.violation,
      subscribers: this.subscribers,
      persistent: this.persistent as PersistentConsumers,
      strategy,
      logs,
    });
  }

  /**
   * Prints a progress line every PROGRESS_LINE_INTERVAL_MS until stopProgress: the appends'
   * outcomes (with `detail` after the acknowledged count), the deliveries, and the faults.
   */
  startProgress(
    faults: () => { count: number; active: readonly string[] },
    detail: () => string = () => "",
  ): void {
    const start = performance.now();
    this.#progressTimer = setInterval(() => {
      const w = this.writers;
      if (w === undefined) return;
      const delivered = this.subscribers.map((s) => s.delivered.length).join("/");
      const { count, active } = faults();
      this.print(
        `${this.tag} ${seconds(performance.now() - start)}: acknowledged ${w.acknowledged}` +
          `${detail()}, failed ${w.failed}, unknown ${w.unknown}; delivered ${delivered}, ` +
          `persistent ${this.persistent?.handings.length ?? 0}; ` +
          `faults ${count}, now: ${active.join(", ") || "none"}` +
          (w.oldestPendingMs() > OPERATION_TIMEOUT_MS + SETTLE_GRACE_MS
            ? `; an append pending for ${(w.oldestPendingMs() / 1_000).toFixed(0)}s`
            : ""),
      );
    }, PROGRESS_LINE_INTERVAL_MS);
  }

  stopProgress(): void {
    clearInterval(this.#progressTimer);
  }

  /** After healing: restarts the nodes that exited without being killed (a crash, reported). */
  async restartExited(c: TestCluster, label: string): Promise<void> {
    for (const [i, node] of c.nodes.entries()) {
      if (node.running) continue;
      const exit = node.lastExit;
      this.violation(
        `${label}node ${i} exited on its own (code ${exit?.code ?? "?"}, signal ${exit?.signal ?? "none"}): ` +
          node.output().trim().split("\n").slice(-3).join(" | "),
      );
      await c
        .restart(i)
        .catch((err: unknown) =>
          this.violation(`${label}node ${i} did not start again: ${String(err)}`),
        );
    }
  }

  /** After healing: PROGRESS_APPENDS more appends acknowledged within the deadline, or a violation. */
  async progressAfterHeal(): Promise<void> {
    const w = this.writers as Writers;
    const before = w.acknowledged;
    await waitFor(() => w.acknowledged >= before + PROGRESS_APPENDS, {
      timeoutMs: PROGRESS_AFTER_HEAL_TIMEOUT_MS,
      message: "appends acknowledged after healing",
    }).catch(() =>
      this.violation(
        `no progress: fewer than ${PROGRESS_APPENDS} appends acknowledged within ${PROGRESS_AFTER_HEAL_TIMEOUT_MS} ms of healing`,
      ),
    );
  }

  /**
   * Waits (with deadlines) until the cluster has one leader and only followers besides, and
   * every voter holds one log; reports what it does not reach. The committed logs, and the
   * longest of them.
   */
  async settledLogs(
    c: TestCluster,
    label: string,
  ): Promise<{ logs: LogEntry[][]; longest: LogEntry[] }> {
    await waitFor(
      async () => {
        const states = await Promise.all(c.nodes.map((_, i) => c.stateOf(i)));
        // A read-only replica (only ever that, never a voter) follows as ReadOnlyReplica.
        return (
          states.filter((s) => s === "Leader").length === 1 &&
          states.every((s) => s === "Leader" || s === "Follower" || s === "ReadOnlyReplica")
        );
      },
      {
        timeoutMs: CAUGHT_UP_TIMEOUT_MS,
        intervalMs: 200,
        message: "one leader, every other node a Follower (or a ReadOnlyReplica)",
      },
    ).catch(async () => {
      const states = await Promise.all(c.nodes.map((_, i) => c.stateOf(i)));
      this.violation(`${label}not every node is up after healing: states ${states.join(", ")}`);
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
    for (const v of disagree) this.violation(`${label}${v}`);
    if (disagree.length > 0)
      for (const line of await describeNodes(c)) this.print(`${this.tag}: ${label}${line}`);
    const longest = logs.reduce<LogEntry[]>((a, b) => (b.length > a.length ? b : a), []);
    return { logs, longest };
  }

  /**
   * The write checker over `appends` on the longest log, and on any log that is not a prefix
   * of it (a lagging node is reported by settledLogs; its missing tail would only repeat that
   * here); at most one leader per epoch.
   */
  checkClusterHistory(
    c: TestCluster,
    { logs, longest }: { logs: readonly LogEntry[][]; longest: readonly LogEntry[] },
    appends: Writers["appends"],
    label: string,
  ): void {
    const isPrefix = (log: LogEntry[]) =>
      log.every((e, k) => e.id === longest[k]!.id && e.position === longest[k]!.position);
    for (const [i, log] of logs.entries()) {
      if (log !== longest && isPrefix(log)) continue;
      const where = log === longest ? "the longest log" : `node ${i}`;
      for (const v of checkAppendHistory(appends, log)) this.violation(`${label}${where}: ${v}`);
    }
    for (const [epoch, leaders] of leadersByEpoch(c.nodes)) {
      if (leaders.size > 1)
        this.violation(
          `${label}epoch ${epoch} had ${leaders.size} leaders: ${[...leaders].join(", ")}`,
        );
    }
  }

  /**
   * Notes every node's open descriptors (before the faults; see checkNodeDescriptors). `label`
   * tells the clusters of one phase apart, as in checkNodeDescriptors. From then on, until
   * stopWorkload, every node process of `c` that starts (a restart) gets a baseline of its own,
   * NODE_BASELINE_AFTER_MS after it was first seen: in a long phase every node restarts at some
   * point, and a leak in a process that then runs for minutes must still show.
   */
  async noteNodeDescriptors(c: Pick<TestCluster, "nodes">, label: string): Promise<void> {
    for (const [i, node] of c.nodes.entries()) {
      const pid = node.pid;
      const key = pid === undefined ? undefined : await processKeyOf(pid);
      const at = pid === undefined ? undefined : await descriptorsOf(pid);
      if (key === undefined || at === undefined) continue;
      this.#nodeDescriptors.set(`${label}${i}`, { key, at });
      this.#baselines.set(key, { firstSeenMs: performance.now() });
    }
    this.#sampled.push(c);
    this.#samplingTimer ??= setInterval(() => void this.#sampleNodes(), NODE_SAMPLE_INTERVAL_MS);
  }

  /** Notes new node processes, and the baseline of those seen NODE_BASELINE_AFTER_MS ago. */
  async #sampleNodes(): Promise<void> {
    if (this.#sampling) return;
    this.#sampling = true;
    try {
      for (const c of this.#sampled) {
        for (const node of c.nodes) {
          const pid = node.running ? node.pid : undefined;
          const key = pid === undefined ? undefined : await processKeyOf(pid);
          if (pid === undefined || key === undefined) continue;
          const known = this.#baselines.get(key);
          const now = performance.now();
          if (known === undefined) this.#baselines.set(key, { firstSeenMs: now });
          else if (known.at === undefined && now - known.firstSeenMs >= NODE_BASELINE_AFTER_MS)
            known.at = await descriptorsOf(pid);
        }
      }
    } finally {
      this.#sampling = false;
    }
  }

  /**
   * After healing: a node process holds at most NODE_DESCRIPTOR_GROWTH_ALLOWED more
   * descriptors than before the faults, or, when it was restarted during the phase, than
   * NODE_BASELINE_AFTER_MS after it started; a violation otherwise. One restarted too late for
   * a baseline is not compared. Prints what each holds.
   */
  async checkNodeDescriptors(c: Pick<TestCluster, "nodes">, label: string): Promise<void> {
    const parts: string[] = [];
    for (const [i, node] of c.nodes.entries()) {
      const noted = this.#nodeDescriptors.get(`${label}${i}`);
      const pid = node.pid;
      const key = pid === undefined ? undefined : await processKeyOf(pid);
      const throughout = noted !== undefined && noted.key === key;
      const before = throughout
        ? noted.at
        : key === undefined
          ? undefined
          : this.#baselines.get(key)?.at;
      if (pid === undefined || before === undefined) {
        parts.push(`node ${i} restarted late (not compared)`);
        continue;
      }
      const now = await descriptorsOf(pid);
      if (now === undefined) continue;
      const since = throughout ? "before the faults" : "after its restart";
      parts.push(
        `node ${i} ${before.total} -> ${now.total}${throughout ? "" : " (since its restart)"}`,
      );
      if (now.total > before.total + NODE_DESCRIPTOR_GROWTH_ALLOWED)
        this.violation(
          `${label}node ${i} holds ${now.total - before.total} more descriptors after healing than ${since}: ` +
            `${describeDescriptors(before)} -> ${describeDescriptors(now)}`,
        );
    }
    this.print(
      `${this.tag}: ${label}descriptors before the faults (or after a restart) -> after healing: ${parts.join(", ")}`,
    );
  }

  /** Notes this process's descriptors, before the phase starts anything (its proxies run here). */
  async noteOwnDescriptors(): Promise<void> {
    this.#ownDescriptors = await descriptorsOf(process.pid);
  }

  /**
   * After the phase has stopped (workload, servers, proxies): this process holds no more
   * descriptors than noteOwnDescriptors saw, within OWN_DESCRIPTORS_TIMEOUT_MS; a violation
   * otherwise (a client or a proxy that kept a socket).
   */
  async checkOwnDescriptors(): Promise<void> {
    const before = this.#ownDescriptors;
    if (before === undefined) return;
    let now: Descriptors | undefined;
    await waitFor(
      async () => {
        now = await descriptorsOf(process.pid);
        return now !== undefined && now.total <= before.total;
      },
      { timeoutMs: OWN_DESCRIPTORS_TIMEOUT_MS, intervalMs: 100, message: "descriptors closed" },
    ).catch(async () => {
      const sockets = await openSockets(process.pid);
      const children = await childProcesses(process.pid);
      this.violation(
        `this process holds more descriptors ${OWN_DESCRIPTORS_TIMEOUT_MS} ms after the phase stopped than before it started: ` +
          `${describeDescriptors(before)} -> ${now === undefined ? "?" : describeDescriptors(now)}` +
          (sockets.length > 0 ? `; its sockets: ${sockets.join(", ")}` : "") +
          (children.length > 0 ? `; its child processes: ${children.join("; ")}` : "") +
          `; socket handles: ${socketHandles().join("; ") || "none"}`,
      );
    });
  }

  /** Ends the faults and the progress line, and stops the workload. */
  async stopWorkload(): Promise<void> {
    this.controller.abort();
    this.stopProgress();
    clearInterval(this.#samplingTimer);
    await this.writers?.stop().catch(() => []);
    await Promise.all(this.subscribers.map((s) => s.stop().catch(() => undefined)));
    await this.persistent?.stop().catch(() => undefined);
  }
}

export async function runPhase(options: PhaseOptions): Promise<PhaseResult> {
  const { name, print } = options;
  const tag = `chaos[${name}]`;
  const run = new PhaseRun(tag, print);
  const { violation, violations } = run;
  let cluster: TestCluster | undefined;
  let disk: TmpfsDisk | undefined;
  let faultyDisk: FaultyDisk | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      await run.stopWorkload();
      await cluster?.stop().catch(() => undefined);
      delete process.env["CHORUS_TEST_SYNC_STALL"];
      await disk?.close().catch(() => undefined);
      await faultyDisk?.fs.unmount().catch(() => undefined);
    })();
    return cleaned;
  };
  const removeInterrupt = options.onInterrupt(cleanup);
  await run.noteOwnDescriptors();
  try {
    print(
      `${tag}: starting 3 voters and ${REPLICAS} read-only replica${name === "mem" ? " with --mem-db" : " on disk"}, link proxies` +
        `${options.kernelFaults ? ", iptables" : ""}${options.tmpfs ? `, node ${TMPFS_NODE} on a tmpfs` : ""}` +
        `${options.faultyFs ? `, node ${FAULTY_DISK_NODE} on a faulty file system` : ""}`,
    );
    // The disk phase's stall faults: its nodes, restarts included, take the test hook of
    // the server's storage/sync-stall.ts (a file in the data directory stalls the log syncs).
    if (name === "disk") process.env["CHORUS_TEST_SYNC_STALL"] = "1";
    const replicas = REPLICAS;
    cluster = await startCluster({
      size: NODES,
      readOnlyReplicas: replicas,
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
    if (options.faultyFs) faultyDisk = await moveToFaultyFs(c, FAULTY_DISK_NODE);
    await c.leader({ timeoutMs: START_TIMEOUT_MS });
    const { writers: w, strategy } = await run.startWorkload(
      clientsOf(c.connectionString),
      options.seed,
      name,
      [
        { name: "$all subscriber" },
        {
          name: `${streamName(0)} subscriber (follower reads)`,
          streamId: streamName(0),
          nodePreference: "follower",
        },
        ...(replicas > 0
          ? [
              {
                name: "$all subscriber (replica reads)",
                nodePreference: "readOnlyReplica" as const,
              },
            ]
          : []),
      ],
    );
    await waitFor(() => w.acknowledged >= PROGRESS_APPENDS, {
      timeoutMs: FIRST_WRITES_TIMEOUT_MS,
      message: "the first appends acknowledged",
    });
    await run.noteNodeDescriptors(c, "");

    const nemesis = createNemesis({
      cluster: c,
      phase: name,
      memDb: name === "mem",
      disk,
      faultyDisk,
      signal: run.controller.signal,
      print,
      violation,
    });
    run.startProgress(() => ({ count: nemesis.injected.length, active: [...nemesis.active] }));
    const stopFaults = setTimeout(() => run.controller.abort(), options.faultMs);
    await nemesis.run(options.lanes);
    clearTimeout(stopFaults);
    run.stopProgress();

    // Heal everything; a node that exited without being killed crashed.
    await nemesis.healAll();
    await run.restartExited(c, "");
    print(`${tag}: healed after ${nemesis.injected.length} faults; waiting for progress`);
    await run.progressAfterHeal();
    for (const v of await w.stop()) violation(v);

    const settled = await run.settledLogs(c, "");
    const { longest } = settled;
    const { byTwo } = await run.checkReaders(strategy, [{ partition: undefined, log: longest }]);
    run.checkClusterHistory(c, settled, w.appends, "");
    await run.checkNodeDescriptors(c, "");

    const logsDir =
      violations.length > 0
        ? await saveLogs(
            `${options.seed}-${name}`,
            c.nodes.map((node, i) => [`node-${i}.log`, node.output()]),
          )
        : undefined;
    return phaseResult({
      name,
      run,
      injected: nemesis.injected,
      strategy,
      byTwo,
      longest,
      logsDir,
    });
  } finally {
    removeInterrupt();
    await cleanup();
    // The result's violations are this run's: what this finds still reaches them.
    await run.checkOwnDescriptors();
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

/** What checkReaders needs: the phase's readers, and the committed logs after healing. */
export interface Readers {
  readonly tag: string;
  readonly print: (line: string) => void;
  readonly violation: (text: string) => void;
  readonly subscribers: readonly Subscriber[];
  readonly persistent: PersistentConsumers;
  readonly strategy: string;
  /**
   * The committed log of each replication group, in `$all` order: one with no partition name,
   * or one per group of a partitioned deployment (its events come with its name).
   */
  readonly logs: ReadonlyArray<{
    readonly partition: string | undefined;
    readonly log: readonly LogEntry[];
  }>;
}

/**
 * Waits (with deadlines) until the catch-up subscribers and the persistent group's consumers
 * were handed the committed events that are theirs, stops them, and checks what they were
 * handed; returns how many events two consumers of the group handled.
 */
export async function checkReaders(r: Readers): Promise<{ byTwo: number }> {
  const { subscribers, persistent: p, logs } = r;
  const isOf = (s: Subscriber) => (e: { streamId: string }) =>
    s.streamId === undefined ? e.streamId.startsWith(STREAM_PREFIX) : e.streamId === s.streamId;
  // Counted once: the wait polls, and this process also carries the nodes' link proxies.
  const expected = new Map(
    subscribers.map((s) => [s, logs.reduce((n, { log }) => n + log.filter(isOf(s)).length, 0)]),
  );
  await waitFor(() => subscribers.every((s) => s.delivered.length >= (expected.get(s) ?? 0)), {
    timeoutMs: CAUGHT_UP_TIMEOUT_MS,
    message: "subscribers caught up",
  }).catch(() => undefined);
  await Promise.all(subscribers.map((s) => s.stop()));
  for (const s of subscribers)
    for (const [reason, n] of s.drops)
      r.print(`${r.tag}: ${s.name} dropped ${n} time(s): ${reason}`);
  // The persistent group: every committed event of the writers' streams handed and acked.
  const groupEvents = logs.flatMap(({ log }) =>
    log.filter((e) => e.streamId.startsWith(STREAM_PREFIX)),
  );
  await waitFor(() => p.confirmedAt.size >= groupEvents.length, {
    timeoutMs: CAUGHT_UP_TIMEOUT_MS,
    message: "the persistent group's consumers caught up",
  }).catch(() => undefined);
  await p.stop();
  // Each group's events in that group's order (a merged subscription orders no two groups).
  const partitions = new Set(logs.map((g) => g.partition));
  for (const s of subscribers) {
    const stray = s.delivered.filter((e) => !partitions.has(e.partition));
    if (stray.length > 0)
      r.violation(
        `${s.name}: ${stray.length} event(s) from an unknown group, first ${stray[0]!.id} (${String(stray[0]!.partition)})`,
      );
    for (const { partition, log } of logs) {
      const name = partition === undefined ? s.name : `${s.name}, group ${partition}`;
      const delivered = s.delivered.filter((e) => e.partition === partition);
      for (const v of checkSubscriptionHistory(name, delivered, log.filter(isOf(s))))
        r.violation(v);
    }
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
  readonly run: PhaseRun;
  readonly injected: readonly InjectedFault[];
  readonly strategy: string;
  readonly byTwo: number;
  readonly longest: readonly LogEntry[];
  readonly logsDir: string | undefined;
}): PhaseResult {
  const w = o.run.writers as Writers;
  const p = o.run.persistent as PersistentConsumers;
  const subscribers = o.run.subscribers;
  return {
    name: o.name,
    injected: o.injected,
    acknowledged: w.acknowledged,
    failed: w.failed,
    unknown: w.unknown,
    unknownReasons: w.unknownReasons,
    delivered: new Map(subscribers.map((s) => [s.name, s.delivered.length])),
    resubscribes: subscribers.reduce((sum, s) => sum + s.resubscribes, 0),
    persistent: {
      strategy: o.strategy,
      handed: p.handings.length,
      byTwo: o.byTwo,
      drops: p.drops,
      ackRetries: p.ackRetries,
    },
    logEntries: o.longest.length,
    violations: o.run.violations,
    logsDir: o.logsDir,
  };
}
