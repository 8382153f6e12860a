/**
 * Wires the consensus core to the node: the store (in `autoCommit: false` mode), the internal
 * TCP links (PeerNetwork), gossip (discovery and liveness only) and a tick timer.
 *
 * Identity and membership. A voter's NodeId is its advertised internal TCP endpoint
 * `host:port` (stable across restarts, also with --mem-db). The voter set is this node plus
 * the internal TCP endpoints of the non-read-only members gossip reports; the core is formed
 * once `clusterSize` distinct voters are known and never changes afterwards (fixed membership:
 * no reconfiguration). Read-only replicas (`--read-only-replica`) are learners: a replica forms
 * its core with the voters gossip reports and itself as the learner; voters hand the replicas
 * gossip reports to `core.setLearners`, so the leader replicates to them asynchronously and
 * never counts them. Incoming frames name their sender by instanceId; gossip maps it to the
 * NodeId (a frame from a sender gossip does not know yet is dropped).
 *
 * Leader writes. Client appends keep the store's own path (`store.append`: validation,
 * idempotency, encoding, group commit), so on the leader the store's log grows "out of band".
 * The core sees the log through `AnnouncedLogView`, which hides everything past `announced`.
 * After every write (and on every tick) the new local batches are read back with `readRaw` and
 * handed to `core.propose()` as they are; the core assigns them exactly the positions they
 * already have (it appends at its view's end, which is `announced`), and its `append` effect for
 * them is skipped (recognised by payload identity) because the bytes are already in the store.
 * Commit then follows the core (`setCommitPosition`), which resolves the client's append.
 * Local batches a node could not propose (it stopped leading first) are truncated away, so
 * their appends fail and the client retries on the new leader with the same event ids.
 *
 * Driving discipline (as in sim/simulation.ts): inputs are serialised; the effects of one
 * input are performed in order before the next input; `persist` is awaited before anything
 * after it (notably a `send`); `append` / `truncate` are applied to the store before the next
 * input.
 */
import {
  FailedWriteError,
  StoreError,
  type ExpectedVersion,
  type NewEvent,
  type ReadAllOptions,
  type ReadAllResult,
  type ReadStreamOptions,
  type ReadStreamResult,
  type StreamMetadata,
  type StreamStore,
  type WriteResult,
} from "../streams/types.js";
import { ForwardingStore } from "../streams/forwarding-store.js";
import { isTruncatedError, type ReplicatedLog } from "../storage/replicated-log.js";
import { checkRecord, epochNumberAt, isBatchEndAt } from "../storage/record.js";
import {
  NotLeaderError,
  type ClusterNodeState,
  type Endpoint,
  type FollowerLag,
  type RoleChangeCounts,
  type WriteRefusal,
} from "../node-types.js";
import { ConsensusCore } from "./core/raft.js";
import {
  ORIGIN,
  type Effect,
  type LogPoint,
  type LogRecord,
  type LogView,
  type Message,
  type NewRecord,
  type NodeId,
  type Role,
} from "./core/types.js";
import { StoreLogView, applyEffects, epochRecord } from "./consensus-log.js";
import {
  GossipService,
  HttpGossipTransport,
  type GossipLogger,
  type GossipMember,
  type SelfMemberInfo,
} from "./gossip/index.js";
import { endpointKey, parseEndpoint } from "./gossip/wire.js";
import { StepWatch } from "./step-watch.js";
import { messageFromWire, messageToWire } from "./transport/messages.js";
import { OutgoingFrame, PeerNetwork, type PeerLogger } from "./transport/peer-network.js";
import { ReplicationStats } from "./replication-stats.js";
import type { Server as HttpServer } from "node:http";
import type { PeerTls } from "../tls.js";
import {
  DEFAULT_ELECTION_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  electionTimeoutRange,
  stalledSyncThresholdMs,
} from "./timings.js";

export const DEFAULT_CLUSTER_TICK_MS = 10;
export const DEFAULT_MAX_REPLICATION_BATCH_BYTES = 1024 * 1024;
/** A follower within this many bytes of the leader's commit position counts as caught up. */
export const CAUGHT_UP_SLACK_BYTES = 1024 * 1024;
/** A step of the chain (see enqueueStep) running this long is logged (see watchSteps). */
export const STEP_WARN_MS = 10_000;

export type ClusterLogger = GossipLogger & PeerLogger;

/** Defaults in timings.ts; the flags are validated in config/parse.ts. */
export interface ClusterTimings {
  readonly tickMs?: number;
  /** Leader heartbeats to the followers (`--heartbeat-interval-ms`). */
  readonly heartbeatIntervalMs?: number;
  /**
   * t of the randomised election timeout [t, 2t] (`--election-timeout-ms`); the leader's
   * check-quorum window and a follower's leader lease are t too.
   */
  readonly electionTimeoutMs?: number;
  readonly gossipIntervalMs?: number;
  /** Deadline of one gossip request. */
  readonly gossipTimeoutMs?: number;
  readonly maxBatchBytes?: number;
}

export interface ClusterRoleOptions {
  readonly store: ReplicatedLog;
  readonly clusterSize: number;
  readonly instanceId: string;
  /** This node's advertised internal TCP endpoint: its NodeId. */
  readonly selfId: NodeId;
  readonly nodePriority: number;
  /** A non-voting learner (`--read-only-replica`); `clusterSize` counts the voters only. */
  readonly readOnlyReplica?: boolean;
  /** Other nodes' internal HTTP endpoints (`--gossip-seed`). */
  readonly gossipSeeds: readonly string[];
  /** Further seeds asked for every gossip round (DNS discovery), besides `gossipSeeds`. */
  readonly seedSource?: () => readonly Endpoint[] | Promise<readonly Endpoint[]>;
  /** This node's gossip record (state and checkpoints come from this role). */
  readonly selfInfo: () => SelfMemberInfo;
  readonly logger: ClusterLogger;
  readonly timings?: ClusterTimings;
  /** TLS towards the peers (wss and https, with this node's certificate as client certificate). */
  readonly tls?: PeerTls;
  /** Connections to peers leave from this address (the node's `--int-ip`). */
  readonly localAddress?: string;
  /** A leader's replication round trips (metrics), one per Append with records, in seconds. */
  readonly onReplicationRoundTrip?: (seconds: number) => void;
}

/**
 * Peer-link timings derived from the election timeout t. A link silent for 2t (the longest a
 * follower waits for its leader before standing) is terminated and reopened: by then the
 * election timeout has decided anyway, and shorter stalls that the election timeout tolerates
 * (a GC pause, a loaded machine) do not cut links. Pinged every t / 2. A peer whose links stay
 * down for 2t without a refusal is reported gone too (a follower has stood by then anyway);
 * the fast path is the refusal, which a dead process's address answers at once.
 */
export function peerLinkTimings(electionTimeoutMs: number): {
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
  lossGraceMs: number;
} {
  return {
    keepaliveIntervalMs: Math.max(10, Math.floor(electionTimeoutMs / 2)),
    keepaliveTimeoutMs: 2 * electionTimeoutMs,
    lossGraceMs: 2 * electionTimeoutMs,
  };
}

/**
 * RecordSplitter for messages.ts: raw record bytes that start at `position` (after a record of
 * epoch `prevEpoch`) -> one core record per atomic batch of the store.
 */
export function splitRecords(
  bytes: Buffer,
  position: number,
  prevEpoch: number,
): LogRecord<Buffer>[] {
  const out: LogRecord<Buffer>[] = [];
  let epoch = prevEpoch;
  let off = 0;
  let batchStart = 0;
  while (off < bytes.length) {
    const c = checkRecord(bytes, off);
    if (!c.ok) throw new Error(`replicated record at ${position + off} is damaged (${c.problem})`);
    const startsEpoch = epochNumberAt(bytes, off);
    if (startsEpoch !== undefined) {
      if (off !== batchStart) throw new Error(`EPOCH record at ${position + off} shares a batch`);
      epoch = startsEpoch;
    }
    const batchEnd = isBatchEndAt(bytes, off);
    off += c.length;
    if (batchEnd) {
      const payload = bytes.subarray(batchStart, off);
      out.push({
        epoch,
        position: position + batchStart,
        length: off - batchStart,
        kind: epochNumberAt(payload) === undefined ? "data" : "epoch",
        payload,
      });
      batchStart = off;
    }
  }
  if (batchStart !== bytes.length)
    throw new Error(`replicated bytes end inside a batch starting at ${position + batchStart}`);
  return out;
}

/** The store as the core sees it: nothing past `limit()` (local writes not yet proposed). */
class AnnouncedLogView implements LogView<Buffer> {
  private readonly inner: StoreLogView;
  constructor(
    private readonly store: ReplicatedLog,
    private readonly limit: () => number,
  ) {
    this.inner = new StoreLogView(store);
  }

  lastPoint(): LogPoint {
    const end = this.limit();
    if (end === 0) return ORIGIN;
    if (end === this.store.endPosition) return this.inner.lastPoint();
    return { epoch: this.store.epochAt(end - 1), position: end };
  }

  epochAt(position: number): number | undefined {
    return position > this.limit() ? undefined : this.inner.epochAt(position);
  }

  lastPointAtOrBefore(epoch: number, position: number): LogPoint {
    return this.inner.lastPointAtOrBefore(epoch, Math.min(position, this.limit()));
  }

  read(fromPosition: number, maxBytes: number): readonly LogRecord<Buffer>[] {
    const end = this.limit();
    if (fromPosition >= end) return [];
    return this.inner.read(fromPosition, maxBytes).filter((r) => r.position + r.length <= end);
  }

  durableEnd(): number {
    return Math.min(this.store.durableEnd, this.limit());
  }
}

export class ClusterRole {
  readonly gossip: GossipService;
  private readonly peers: PeerNetwork;
  private readonly store: ReplicatedLog;
  private readonly log: ClusterLogger;
  private readonly tickMs: number;
  private readonly maxBatchBytes: number;
  private core: ConsensusCore<Buffer> | undefined;
  private forming = false;
  private voters: readonly NodeId[] = [];
  /**
   * The voters this node formed its cluster with before (from its hard state): null when it
   * never formed one (or keeps nothing: --mem-db), undefined until read.
   */
  private storedVoters: readonly NodeId[] | null | undefined = undefined;
  private loadingStoredVoters = false;
  private warnedMovedVoters = false;
  /** The read-only replicas (learners) gossip reports, as last handed to the core. */
  private learners: readonly NodeId[] = [];
  private readonly readOnlyReplica: boolean;
  private instanceToNode = new Map<string, NodeId>();
  /**
   * The instance that answered this node's own link to each peer endpoint (its hello). Gossip
   * learns a restarted peer's new instance only on a later round; the link knows at once, so
   * the peer's frames (a vote reply, say) are taken from the moment the link is up.
   */
  private readonly linkedInstances = new Map<NodeId, string>();
  /**
   * The other members as gossip last reported them (refreshed on the timer). Kept as a
   * snapshot because gossip.members() asks for this node's own record, which asks for state.
   */
  private others: readonly GossipMember[] = [];
  private lastMembershipScanMs = Number.NEGATIVE_INFINITY;
  /** The core's log ends here; local batches beyond are not proposed yet. */
  private announced = 0;
  private readonly proposed = new Set<Buffer>();
  /** Frames of the messages being sent (see wireFrame). */
  private readonly frames = new WeakMap<Message<Buffer>, OutgoingFrame>();
  /** The endpoints of the node ids messages went to (see endpointOf). */
  private readonly endpoints = new Map<NodeId, Endpoint | undefined>();
  private lastReportedDurable = -1;
  private role: Role | "none" = "none";
  private leaderId: NodeId | undefined;
  /** For metrics: elections started, and (leader, epoch) pairs learnt, since the role started. */
  private elections = 0;
  private leaderChanges = 0;
  private roleRestarts = 0;
  private lastElectionEpoch = -1;
  private lastLeader: { id: NodeId; epoch: number } | undefined;
  /** For metrics: a leader's replication round trips and per-follower lag. */
  private readonly replication: ReplicationStats;
  private roleEpoch = -1;
  private chain: Promise<void> = Promise.resolve();
  /** Steps on `chain` not yet finished; 0 means a new step may start at once. */
  private pendingSteps = 0;
  /** Steps finished; the effect the running step performs (see watchSteps). */
  private stepsDone = 0;
  private stepEffect = "";
  private readonly stepWatch = new StepWatch(STEP_WARN_MS);
  private tickQueued = false;
  private announceQueued = false;
  private durableQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private stopDurable: (() => void) | undefined;
  private closed = false;
  /** Why this node stopped taking part in the cluster until restarted; undefined while it takes part. */
  private failure: string | undefined;
  private resigning = false;
  /**
   * The store refused the leader's records for want of space: until it has room again, the
   * leader's Appends reach the core without their records (see onFrame).
   */
  private refusingRecords = false;

  constructor(private readonly opts: ClusterRoleOptions) {
    this.store = opts.store;
    this.log = opts.logger;
    this.readOnlyReplica = opts.readOnlyReplica === true;
    this.replication = new ReplicationStats(opts.onReplicationRoundTrip);
    const t = opts.timings ?? {};
    this.tickMs = t.tickMs ?? DEFAULT_CLUSTER_TICK_MS;
    this.maxBatchBytes = t.maxBatchBytes ?? DEFAULT_MAX_REPLICATION_BATCH_BYTES;
    this.gossip = new GossipService({
      self: opts.selfInfo,
      seeds: opts.gossipSeeds,
      ...(opts.seedSource !== undefined && { seedSource: opts.seedSource }),
      logger: opts.logger,
      ...(t.gossipIntervalMs !== undefined && { intervalMs: t.gossipIntervalMs }),
      ...(t.gossipTimeoutMs !== undefined && { requestTimeoutMs: t.gossipTimeoutMs }),
      transport: new HttpGossipTransport({
        ...(opts.tls !== undefined && { tls: opts.tls }),
        ...(opts.localAddress !== undefined && { localAddress: opts.localAddress }),
      }),
    });
    this.peers = new PeerNetwork({
      self: {
        instanceId: opts.instanceId,
        clusterSize: opts.clusterSize,
        readOnlyReplica: this.readOnlyReplica,
      },
      logger: opts.logger,
      ...(opts.tls !== undefined && { tls: opts.tls }),
      ...(opts.localAddress !== undefined && { localAddress: opts.localAddress }),
      ...peerLinkTimings(t.electionTimeoutMs ?? DEFAULT_ELECTION_TIMEOUT_MS),
      onPeerGone: (peer) => {
        const node = this.instanceToNode.get(peer.instanceId);
        if (node === undefined || !this.core) return;
        this.run((core) => core.peerLost(node, performance.now()));
      },
      onPeerReachable: (endpoint, peer) => {
        const node = endpointKey(endpoint);
        const before = this.linkedInstances.get(node);
        if (before !== undefined && before !== peer.instanceId) this.instanceToNode.delete(before);
        this.linkedInstances.set(node, peer.instanceId);
        this.instanceToNode.set(peer.instanceId, node);
        if (!this.core) return;
        this.run((core) => core.peerReachable(node, performance.now()));
      },
      onFrame: (from, frame) => {
        const node = this.instanceToNode.get(from.instanceId);
        if (node === undefined) {
          this.refreshMembership(true);
        }
        const sender = this.instanceToNode.get(from.instanceId);
        if (sender === undefined || !this.core) return; // unknown yet: consensus tolerates loss
        let message;
        try {
          message = messageFromWire(frame, splitRecords);
        } catch (err) {
          this.log.warn({ peer: sender, err: (err as Error).message }, "bad frame from a peer");
          return;
        }
        if (message === undefined) return;
        let m = message;
        if (this.refusingRecords && m.type === "Append" && m.records.length > 0) {
          // While the disk is full, the records could not be written; handed to the core,
          // they would make it believe its log holds them, and the role would start over
          // (rolledBack) at every Append, about once per heartbeat. Without them the Append
          // is a heartbeat (a prefix of what the leader sent is always a valid Append): the
          // follower keeps its leader, answers with the log it has, and takes the records
          // once the store has room.
          if (this.store.stats().storageFull) m = { ...m, records: [] };
          else this.refusingRecords = false;
        }
        if (m.type === "AppendReply" && m.ok && m.epoch === this.roleEpoch)
          this.replication.acked(sender, m.durableEnd, performance.now());
        this.run((core) => core.receive(sender, m, performance.now()));
      },
    });
  }

  /** Takes the internal TCP port's WebSocket upgrades, starts gossip and the tick timer. */
  start(internalTcp: HttpServer): void {
    this.peers.attach(internalTcp);
    this.gossip.start();
    this.timer = setInterval(() => this.onTimer(), this.tickMs);
  }

  /**
   * Planned stop of a leader: hands leadership to the most up-to-date follower (TimeoutNow)
   * and waits, up to `timeoutMs`, until this node no longer leads. New writes are refused
   * meanwhile (the core refuses proposals during a transfer; they fail with NOT_LEADER).
   */
  async resign(timeoutMs: number): Promise<void> {
    if (this.role !== "leader" || !this.core || this.closed) return;
    this.log.info({ timeoutMs }, "handing leadership over before stopping");
    this.resigning = true;
    this.run((core) => core.transferLeadership());
    const deadline = performance.now() + timeoutMs;
    while (this.role === "leader" && !this.closed && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, this.tickMs));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopDurable?.();
    this.store.setSyncGate(undefined);
    this.store.setSyncOffLoop(undefined);
    await this.gossip.stop();
    await this.peers.close();
    await this.chain;
  }

  // ---- what the API asks ---------------------------------------------------------------

  get state(): ClusterNodeState {
    if (this.readOnlyReplica) {
      const ready = this.role !== "none" && this.leaderId !== undefined && this.caughtUp();
      return ready ? "ReadOnlyReplica" : "PreReadOnlyReplica";
    }
    if (this.role === "leader") return "Leader";
    if (this.leaderId === undefined || this.role === "none") return "Unknown";
    // A node recovering from lost memory counts toward nothing until it has caught up.
    return this.caughtUp() && this.core?.state.recovering !== true ? "Follower" : "CatchingUp";
  }

  get epoch(): number {
    return this.core?.state.epoch ?? 0;
  }

  /** Elections this node started, and leaders (a leader in an epoch) it learnt of. */
  roleChanges(): RoleChangeCounts {
    return {
      elections: this.elections,
      leaderChanges: this.leaderChanges,
      roleRestarts: this.roleRestarts,
    };
  }

  /** A leader's view of each follower's (voters and replicas) replication lag; empty otherwise. */
  replicationLag(): FollowerLag[] {
    if (this.role !== "leader") return [];
    const followers = [...this.voters, ...this.learners].filter((id) => id !== this.opts.selfId);
    return this.replication.lag(followers, this.announced, performance.now());
  }

  /** A leader is known and this node is caught up (the leader, a follower or a replica). */
  isReady(): boolean {
    const s = this.state;
    return s === "Leader" || s === "Follower" || s === "ReadOnlyReplica";
  }

  /** undefined when this node may take writes now; otherwise where to go. */
  writeRefusal(): WriteRefusal | undefined {
    if (this.writable()) return undefined;
    const leader = this.leaderMember();
    const where = leader ? ` (the leader is ${endpointKey(leader.externalTcp)})` : "";
    return {
      message: this.readOnlyReplica
        ? `this node is a read-only replica${where}`
        : this.role === "leader"
          ? this.resigning
            ? "the leader is handing over to another node; retry"
            : "the leader is starting its epoch; retry"
          : `this node is not the leader${where}`,
      leaderTcp: leader?.externalTcp,
      leaderHttp: leader?.externalHttp,
    };
  }

  /**
   * Why this node stopped taking part in the cluster (a storage step failed, or its
   * configuration does not match the cluster it formed): only a restart brings it back.
   * undefined while it takes part.
   */
  get stoppedTakingPart(): string | undefined {
    return this.failure;
  }

  /** The end of this node's log (committed or not). A new leader's data is current once its commit position reaches the end it had when its epoch began. */
  get logEnd(): number {
    return this.store.endPosition;
  }

  /**
   * Called after a write was handed to the store. With nothing else in flight its batches are
   * proposed at once, so the followers get them before this node's own sync has even started;
   * otherwise soon, together with whatever else arrives meanwhile.
   */
  afterWrite(): void {
    if (this.pendingSteps === 0) this.queueAnnounce();
    else queueMicrotask(() => this.queueAnnounce());
  }

  // ---- driving ---------------------------------------------------------------------------

  private writable(): boolean {
    const core = this.core;
    if (!core || this.closed || this.resigning) return false;
    const s = core.state;
    // The leader's EPOCH record must be in the store before local writes of its epoch.
    return s.role === "leader" && this.store.lastEpoch === s.epoch;
  }

  private onTimer(): void {
    if (this.closed) return;
    this.watchSteps(performance.now());
    this.refreshMembership(false);
    if (!this.core) {
      this.maybeForm();
      return;
    }
    this.syncLearners();
    this.handOverIfDiskFails();
    if (!this.tickQueued) {
      this.tickQueued = true;
      this.run(
        (core) => core.tick(performance.now()),
        () => {
          this.tickQueued = false;
        },
      );
    }
    if (this.store.endPosition !== this.announced) this.queueAnnounce();
  }

  /** Logs what StepWatch reports: a step at the head of the chain for STEP_WARN_MS, and its end. */
  private watchSteps(nowMs: number): void {
    const report = this.stepWatch.check(nowMs, this.pendingSteps, this.stepsDone);
    if (report === undefined) return;
    const runningMs = Math.round(report.runningMs);
    if (report.kind === "finished") {
      this.log.info({ runningMs }, "the long-running cluster step finished");
      return;
    }
    const { storageFull, syncRunningMs } = this.store.stats();
    this.log.warn(
      {
        runningMs,
        effect: this.stepEffect || null,
        waiting: this.pendingSteps - 1,
        storageFull,
        syncRunningMs: Math.round(syncRunningMs),
      },
      "a cluster step has not finished for a long time: this node takes no messages or ticks until it does",
    );
  }

  /**
   * Serialises one input and the performance of its effects. The step is skipped when its
   * turn comes with no core, after close, or after a failed write rolled the log back (the
   * role starts over). `onTurn` runs at its turn in every case: a flag that keeps an input
   * from being queued twice (the tick, the durable report) is cleared there, never only in
   * a step that may be skipped, or that input would never be queued again.
   */
  private run(step: (core: ConsensusCore<Buffer>) => Effect<Buffer>[], onTurn?: () => void): void {
    this.enqueueStep(async () => {
      onTurn?.();
      const core = this.core;
      if (!core || this.closed || this.rolledBack()) return;
      await this.perform(step(core));
    }, "cluster step failed");
  }

  /**
   * True (and the role started over) when a failed write rolled the store back below what the
   * core was told (the disk filled up, or a write or fsync failed): the core's view of its own
   * log is no longer true, so it must not take another input. The role starts over as after a
   * crash that lost unsynced data: a new core from the hard state and the log as it is now. A
   * leader leads no more (its writes not yet committed fail with NOT_LEADER; their clients
   * retry with the same event ids), and can lead again only in a new epoch, so no
   * (epoch, position) it announced is ever reused for other records.
   */
  private lastStorageFullLogMs = Number.NEGATIVE_INFINITY;

  /** Says that the disk is full, at most every 10 s. */
  private noteStorageFull(err: Error): void {
    const now = performance.now();
    if (now - this.lastStorageFullLogMs < 10_000) return;
    this.lastStorageFullLogMs = now;
    this.log.warn(
      { err, role: this.role },
      "the disk is full: this node takes no records until space is freed",
    );
  }

  private lastHandOverMs = Number.NEGATIVE_INFINITY;

  /**
   * A leader whose disk fails it hands leadership over to the most up-to-date follower (at
   * most once per election timeout):
   * - when the disk is full: it refuses every write while its followers may have room;
   * - when a sync has run for STALLED_SYNC_HAND_OVER_TIMEOUTS election timeouts: nothing
   *   commits past the leader's own durable end, so a disk that stalls for good would stop
   *   every write to the cluster, while the leader's heartbeats (sent on, since its syncs run
   *   on the thread pool) keep its followers from standing.
   */
  private handOverIfDiskFails(): void {
    if (this.role !== "leader" || this.resigning) return;
    const { storageFull, syncRunningMs } = this.store.stats();
    const timeoutMs = this.opts.timings?.electionTimeoutMs ?? DEFAULT_ELECTION_TIMEOUT_MS;
    const stalled = syncRunningMs >= stalledSyncThresholdMs(timeoutMs);
    if (!storageFull && !stalled) return;
    const now = performance.now();
    if (now - this.lastHandOverMs < timeoutMs) return;
    this.lastHandOverMs = now;
    if (storageFull) this.log.warn({}, "the disk is full: handing leadership over to a follower");
    else
      this.log.warn(
        { syncRunningMs: Math.round(syncRunningMs) },
        "a log sync has not finished for a long time (the disk stalls): handing leadership over to a follower",
      );
    this.run((core) => core.transferLeadership());
  }

  private rolledBack(): boolean {
    if (!this.core || this.store.endPosition >= this.announced) return false;
    if (this.store.stats().storageFull) this.noteStorageFull(new Error("the disk is full"));
    else
      this.log.warn(
        { announced: this.announced, end: this.store.endPosition, role: this.role },
        "a failed write rolled the log back; restarting this node's part in the cluster as after a crash",
      );
    this.restartRole();
    return true;
  }

  /**
   * Drops the core and forms a new one from what the store holds durably (hard state, log,
   * commit), as a restarted process would. Safe after any storage effect that failed: the
   * effects after a failed one were never performed (a failed `persist` sent nothing).
   */
  private restartRole(): void {
    this.roleRestarts++;
    if (this.role === "leader") {
      this.store.abandonUncommitted(
        new NotLeaderError({
          message: "this node stopped leading before the write was committed; retry",
          leaderTcp: undefined,
          leaderHttp: undefined,
        }),
      );
    }
    this.core = undefined;
    this.role = "none";
    this.leaderId = undefined;
    this.stopDurable?.();
    this.stopDurable = undefined;
    this.store.setSyncGate(undefined);
    this.proposed.clear();
    this.forming = false;
    this.maybeForm();
  }

  /**
   * Appends a step (an async function) to the chain. With nothing pending it starts in this
   * call (its effects up to the first wait happen now, e.g. an Append goes out); otherwise
   * after the steps before it.
   */
  private enqueueStep(step: () => Promise<void>, failure: string): void {
    const onError = (err: unknown) => this.failStop(err, failure);
    const done = () => {
      this.pendingSteps--;
      this.stepsDone++;
      this.stepEffect = "";
    };
    this.pendingSteps++;
    if (this.pendingSteps === 1) {
      this.chain = step().catch(onError).finally(done);
    } else {
      this.chain = this.chain.then(step).catch(onError).finally(done);
    }
  }

  /**
   * `message`, with `storageFull` set when it is an accepting AppendReply of a follower whose
   * disk is still full (refusingRecords): its leader then sends heartbeats only, instead of
   * records this node would drop, until a reply without it. The first reply after the store
   * has room again ends the refusal and asks for the records.
   */
  private withStorageFull(message: Message<Buffer>): Message<Buffer> {
    if (!this.refusingRecords || message.type !== "AppendReply" || !message.ok) return message;
    if (!this.store.stats().storageFull) {
      this.refusingRecords = false;
      return message;
    }
    return { ...message, storageFull: true };
  }

  /**
   * A storage effect failed: the core already believes it happened, so continuing could break
   * its invariants. Stop taking part (state Unknown, writes refused) and say so loudly.
   */
  private failStop(err: unknown, what: string): void {
    if (isDiskFull(err) && this.core && !this.closed) {
      // A full disk is not the node's fault and passes: start over from what is durable.
      this.refusingRecords = true;
      this.noteStorageFull(err as Error);
      this.restartRole();
      return;
    }
    this.log.error({ err }, `${what}; this node stops taking part in the cluster until restarted`);
    this.core = undefined;
    this.role = "none";
    this.leaderId = undefined;
    this.failure = `${what} (${err instanceof Error ? err.message : String(err)})`;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private queueAnnounce(): void {
    if (this.announceQueued || !this.core || this.closed) return;
    this.announceQueued = true;
    this.enqueueStep(async () => {
      this.announceQueued = false;
      const core = this.core;
      if (!core || this.closed || this.rolledBack()) return;
      await this.announce(core);
    }, "proposing local writes failed");
  }

  private queueDurable(): void {
    if (this.durableQueued) return;
    this.durableQueued = true;
    this.run(
      (core) => this.reportDurable(core),
      () => {
        this.durableQueued = false;
      },
    );
  }

  private reportDurable(core: ConsensusCore<Buffer>): Effect<Buffer>[] {
    const durable = Math.min(this.store.durableEnd, this.announced);
    if (durable === this.lastReportedDurable) return [];
    this.lastReportedDurable = durable;
    return core.localDurable(durable);
  }

  /** Proposes the local batches past `announced`, or cuts them off when not leading. */
  private async announce(core: ConsensusCore<Buffer>): Promise<void> {
    const end = this.store.endPosition;
    if (end <= this.announced) return;
    if (!this.writable()) {
      await this.cutUnannounced();
      return;
    }
    const { bytes, batchEnds } = this.store.readRaw(this.announced, end - this.announced);
    const records: NewRecord<Buffer>[] = [];
    let start = this.announced;
    for (const batchEnd of batchEnds) {
      const payload = bytes.subarray(start - this.announced, batchEnd - this.announced);
      this.proposed.add(payload);
      records.push({ length: payload.length, payload });
      start = batchEnd;
    }
    const result = core.propose(records);
    if (!result.ok) {
      for (const r of records) this.proposed.delete(r.payload);
      await this.perform(result.effects);
      await this.cutUnannounced();
      return;
    }
    await this.perform(result.effects);
    await this.perform(this.reportDurable(core));
  }

  private async cutUnannounced(): Promise<void> {
    if (this.store.endPosition <= this.announced) return;
    this.log.info(
      { from: this.announced, to: this.store.endPosition },
      "dropping local writes this node could not propose (not the leader)",
    );
    await this.store.truncate(this.announced);
  }

  /**
   * The frame for a message to a peer. The core hands every caught-up follower the same Append
   * object: its frame (and so its encoding, see PeerNetwork.send) is made once for them all.
   */
  private wireFrame(message: Message<Buffer>): OutgoingFrame {
    let frame = this.frames.get(message);
    if (frame === undefined) {
      frame = new OutgoingFrame(messageToWire(message));
      this.frames.set(message, frame);
    }
    return frame;
  }

  /**
   * The endpoint of node id `id` (its "host:port"), parsed once: every message a node sends
   * goes to one of a few ids. Forgotten all at once should ids ever come and go by the dozen.
   */
  private endpointOf(id: NodeId): Endpoint | undefined {
    let endpoint = this.endpoints.get(id);
    if (endpoint === undefined && !this.endpoints.has(id)) {
      if (this.endpoints.size >= 64) this.endpoints.clear();
      endpoint = parseEndpoint(id);
      this.endpoints.set(id, endpoint);
    }
    return endpoint;
  }

  private async perform(effects: readonly Effect<Buffer>[]): Promise<void> {
    for (const effect of effects) {
      this.stepEffect = effect.type;
      switch (effect.type) {
        case "append": {
          const records = effect.records;
          const first = records[0];
          const last = records[records.length - 1];
          if (!first || !last) break;
          const end = last.position + last.length;
          if (this.role === "leader") this.replication.wrote(end, performance.now());
          if (records.every((r) => this.proposed.has(r.payload))) {
            // Our own local batches: already in the store at exactly these positions.
            for (const r of records) this.proposed.delete(r.payload);
            this.announced = end;
            break;
          }
          // Local writes that were never proposed sit where the leader's records go.
          if (this.store.endPosition > first.position) await this.store.truncate(first.position);
          try {
            // A follower's records were CRC-checked on receipt (splitRecords); a leader's
            // EPOCH record is its own: the store need not compute the CRCs again.
            await applyEffects(this.store, [effect], {
              onAppendError: (err) => {
                // Abandoned when this node stopped leading (abandonUncommitted): the records
                // stay, and the next leader decides their fate. Nothing failed.
                if (err instanceof NotLeaderError) return;
                this.log.error({ err }, "replicated append failed");
              },
              crcVerified: true,
            });
          } catch (err) {
            if (!(err instanceof StoreError && err.code === "STORAGE_FULL")) throw err;
            // The disk is full: the records are not in the log, though the core believes so.
            // The next step starts the role over (see rolledBack) from the log as it is;
            // the leader's records wait until the store has room (refusingRecords).
            this.announced = end;
            this.refusingRecords = true;
            this.noteStorageFull(err);
            return;
          }
          this.announced = end;
          break;
        }
        case "truncate":
          if (this.store.endPosition > effect.position) {
            this.log.info(
              { from: effect.position, to: this.store.endPosition },
              "truncating an uncommitted suffix that conflicts with the leader's log",
            );
          }
          await applyEffects(this.store, [effect]);
          this.announced = Math.min(this.announced, effect.position);
          this.lastReportedDurable = Math.min(this.lastReportedDurable, effect.position);
          break;
        case "send": {
          const to = this.endpointOf(effect.to);
          const m = this.withStorageFull(effect.message);
          if (to) this.peers.send(to, this.wireFrame(m));
          const sent = m.type === "Append" ? m.records[m.records.length - 1] : undefined;
          if (sent !== undefined && this.role === "leader")
            this.replication.sent(effect.to, sent.position + sent.length, performance.now());
          break;
        }
        case "roleChanged":
          if (effect.role !== this.role || effect.leaderId !== this.leaderId) {
            this.log.info(
              { role: effect.role, epoch: effect.epoch, leader: effect.leaderId ?? null },
              "cluster role changed",
            );
          }
          if (this.role === "leader" && effect.role !== "leader") {
            // Check-quorum or a hand-over: the writes waiting for a commit may yet be committed
            // by the next leader or truncated away. Their clients learn that now (NOT_LEADER,
            // outcome unknown) and retry there with the same event ids, instead of waiting.
            this.store.abandonUncommitted(
              new NotLeaderError({
                message: "this node stopped leading before the write was committed; retry",
                leaderTcp: undefined,
                leaderHttp: undefined,
              }),
            );
          }
          if (effect.role === "candidate" && effect.epoch !== this.lastElectionEpoch) {
            this.lastElectionEpoch = effect.epoch;
            this.elections++;
          }
          if (
            effect.leaderId !== undefined &&
            (effect.leaderId !== this.lastLeader?.id || effect.epoch !== this.lastLeader.epoch)
          ) {
            this.lastLeader = { id: effect.leaderId, epoch: effect.epoch };
            this.leaderChanges++;
          }
          if (effect.role !== "leader") this.replication.stopLeading();
          else if (this.role !== "leader")
            this.replication.startLeading(this.announced, performance.now());
          this.role = effect.role;
          this.roleEpoch = effect.epoch;
          this.leaderId = effect.leaderId;
          break;
        case "persist":
          // The voters go with every hard state, so a restart forms the same cluster.
          await this.store.writeHardState(
            this.readOnlyReplica ? effect.state : { ...effect.state, voters: this.voters },
          );
          break;
        default:
          await applyEffects(this.store, [effect]);
      }
    }
  }

  // ---- membership ------------------------------------------------------------------------

  private refreshMembership(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastMembershipScanMs < 100) return;
    this.lastMembershipScanMs = now;
    const map = new Map<string, NodeId>();
    const members = this.gossip.members();
    for (const m of members) {
      // Replicas too: the leader takes their append replies (the core drops other messages).
      map.set(m.record.instanceId, endpointKey(m.record.internalTcp));
    }
    for (const [node, instanceId] of this.linkedInstances) map.set(instanceId, node);
    this.instanceToNode = map;
    this.others = members.filter((m) => !m.isSelf);
  }

  private maybeForm(): void {
    if (this.forming || this.closed || this.failure !== undefined) return;
    if (this.storedVoters === undefined) {
      if (this.loadingStoredVoters) return;
      this.loadingStoredVoters = true;
      this.store
        .readHardState()
        .then((hs) => {
          this.storedVoters = hs?.voters ?? null;
        })
        .catch((err: unknown) => this.log.error({ err }, "reading the consensus hard state failed"))
        .finally(() => {
          this.loadingStoredVoters = false;
        });
      return;
    }
    const members = this.others.filter((m) => !m.record.isReadOnlyReplica);
    const priorities: Record<NodeId, number> = {};
    for (const m of members) {
      const id = endpointKey(m.record.internalTcp);
      priorities[id] = m.isSelf ? this.opts.nodePriority : m.record.nodePriority;
    }
    if (!this.readOnlyReplica) priorities[this.opts.selfId] = this.opts.nodePriority;
    if (this.storedVoters !== null) {
      // Membership is fixed once formed: never rebuilt from gossip, where an endpoint that
      // moved (an IP change) would make nodes disagree on who votes.
      const stored = this.storedVoters;
      const problem =
        stored.length !== this.opts.clusterSize
          ? `it formed its cluster with ${stored.length} voters, and --cluster-size is ${this.opts.clusterSize}`
          : !this.readOnlyReplica && !stored.includes(this.opts.selfId)
            ? `its internal endpoint ${this.opts.selfId} is not among the voters it formed its cluster with (${stored.join(", ")}); advertise the same endpoint as before (--int-host-advertise-as, --int-tcp-port-advertise-as)`
            : undefined;
      if (problem !== undefined) {
        this.log.error(
          { voters: stored, self: this.opts.selfId },
          `this node cannot take part in its cluster: ${problem}. Membership is fixed once formed`,
        );
        this.failure = `it cannot take part in its cluster: ${problem}`;
        return;
      }
      const moved = Object.keys(priorities).filter((id) => !stored.includes(id));
      if (moved.length > 0 && !this.warnedMovedVoters) {
        this.warnedMovedVoters = true;
        this.log.warn(
          { voters: stored, unknown: moved },
          "gossip shows voting members outside the voters this cluster formed with; they are not counted",
        );
      }
      this.forming = true;
      this.form([...stored], priorities).catch((err: unknown) => {
        this.forming = false;
        this.log.error({ err }, "forming the consensus core failed");
      });
      return;
    }
    const ids = Object.keys(priorities).sort();
    if (ids.length < this.opts.clusterSize) return;
    if (ids.length > this.opts.clusterSize) {
      this.log.warn(
        { voters: ids, clusterSize: this.opts.clusterSize },
        "gossip reports more voting members than --cluster-size; membership is fixed, not forming",
      );
      return;
    }
    this.forming = true;
    this.form(ids, priorities).catch((err: unknown) => {
      this.forming = false;
      this.log.error({ err }, "forming the consensus core failed");
    });
  }

  private async form(voters: NodeId[], priorities: Record<NodeId, number>): Promise<void> {
    const stored = await this.store.readHardState();
    // No hard state: an in-memory node, or a new data directory. This node may have voted and
    // acknowledged records before it lost them, so it recovers before it votes or counts.
    const amnesiac = stored === null;
    const hardState = stored ?? { epoch: 0, votedFor: undefined };
    if (this.closed) return;
    if (stored?.voters === undefined && !this.readOnlyReplica) {
      // Remember the voters from now on (and, for a node that must recover, that it must).
      await this.store.writeHardState({
        epoch: hardState.epoch,
        votedFor: hardState.votedFor,
        ...(amnesiac || hardState.recovering === true ? { recovering: true } : {}),
        voters,
      });
      this.storedVoters = voters;
    }
    this.voters = voters;
    this.announced = this.store.endPosition;
    const t = this.opts.timings ?? {};
    const election = electionTimeoutRange(t.electionTimeoutMs ?? DEFAULT_ELECTION_TIMEOUT_MS);
    const heartbeatMs = t.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    const core = new ConsensusCore<Buffer>(
      {
        id: this.opts.selfId,
        voters,
        // The replicas gossip has reported so far: a core formed again (restartRole, after a
        // full disk or a failed write) starts with them, as the one before it had them;
        // syncLearners below only hands the core changes to that set.
        learners: this.readOnlyReplica ? [this.opts.selfId] : [...this.learners],
        priorities,
        electionTimeoutMinMs: election.minMs,
        electionTimeoutMaxMs: election.maxMs,
        heartbeatMs,
        maxBatchBytes: this.maxBatchBytes,
        random: Math.random,
        epochRecord,
      },
      new AnnouncedLogView(this.store, () => this.announced),
      {
        hardState,
        commitPosition: Math.min(this.store.commitPosition, this.store.durableEnd),
        nowMs: performance.now(),
        amnesiac: amnesiac || hardState.recovering === true,
      },
    );
    this.core = core;
    this.role = core.state.role;
    this.lastReportedDurable = this.store.durableEnd;
    this.stopDurable = this.store.onDurable(() => this.queueDurable());
    // A leader's local writes go to its followers before its own (blocking) sync starts.
    this.store.setSyncGate(() => this.role === "leader" && this.store.endPosition > this.announced);
    // A leader (or a node standing for election) never syncs inline: a disk stall must not
    // hold up its event loop, which sends the heartbeats and answers votes. A follower or a
    // learner may, as a single node does (a lone write while syncs are fast: see
    // DiskLog.sync): the thread-pool round trip cost a sequential append about a tenth of its
    // latency. A stall then holds up only that node; the leader commits with the others, and
    // the follower's pre-vote when it wakes is refused (docs/cluster-design.md).
    this.store.setSyncOffLoop(() => this.role !== "follower" && this.role !== "learner");
    for (const v of voters) {
      if (v === this.opts.selfId) continue;
      const ep = parseEndpoint(v);
      if (ep) this.peers.connect(ep);
    }
    this.log.info(
      {
        self: this.opts.selfId,
        voters,
        readOnlyReplica: this.readOnlyReplica,
        epoch: hardState.epoch,
        recovering: amnesiac,
        heartbeatIntervalMs: heartbeatMs,
        electionTimeoutMs: [election.minMs, election.maxMs],
        gossipIntervalMs: this.gossip.intervalMs,
        gossipTimeoutMs: this.gossip.requestTimeoutMs,
      },
      "cluster formed",
    );
    this.syncLearners();
  }

  /**
   * Voters: hands the read-only replicas gossip reports (alive or not: a replica that comes
   * back is caught up from where it stopped) to the core as learners, and links to them.
   */
  private syncLearners(): void {
    if (this.readOnlyReplica || !this.core) return;
    const ids = [
      ...new Set(
        this.others
          .filter((m) => m.record.isReadOnlyReplica)
          .map((m) => endpointKey(m.record.internalTcp)),
      ),
    ]
      .filter((id) => id !== this.opts.selfId && !this.voters.includes(id))
      .sort();
    if (ids.length === this.learners.length && ids.every((id, i) => id === this.learners[i])) {
      return;
    }
    for (const id of this.learners) {
      const ep = ids.includes(id) ? undefined : parseEndpoint(id);
      if (ep) this.peers.disconnect(ep);
    }
    for (const id of ids) {
      const ep = this.learners.includes(id) ? undefined : parseEndpoint(id);
      if (ep) this.peers.connect(ep);
    }
    this.log.info({ learners: ids }, "read-only replicas changed");
    this.learners = ids;
    this.run((core) => core.setLearners(ids));
  }

  // ---- gossip-derived views ----------------------------------------------------------

  private leaderMember(): SelfMemberInfo | undefined {
    const id = this.leaderId;
    if (id === undefined || this.role === "leader") return undefined;
    let best: SelfMemberInfo | undefined;
    let bestStamp = -1;
    for (const m of this.others) {
      if (!m.isAlive || endpointKey(m.record.internalTcp) !== id) continue;
      if (m.record.timestampMs > bestStamp) {
        bestStamp = m.record.timestampMs;
        best = {
          ...m.record,
          timestamp: new Date(m.record.timestampMs).toISOString(),
          lastCommitPosition: String(m.record.lastCommitPosition),
          writerCheckpoint: String(m.record.writerCheckpoint),
          chaserCheckpoint: String(m.record.chaserCheckpoint),
          epochPosition: String(m.record.epochPosition),
        };
      }
    }
    return best;
  }

  private caughtUp(): boolean {
    const id = this.leaderId;
    if (id === undefined) return false;
    let leaderCommit: number | undefined;
    for (const m of this.others) {
      if (m.isAlive && endpointKey(m.record.internalTcp) === id && m.record.state === "Leader")
        leaderCommit = Math.max(leaderCommit ?? 0, m.record.lastCommitPosition);
    }
    if (leaderCommit === undefined) return false;
    return this.store.durableEnd + CAUGHT_UP_SLACK_BYTES >= leaderCommit;
  }

  /** Epoch fields of this node's gossip record. */
  epochInfo(): { epochNumber: number; epochPosition: number; epochId: string } | undefined {
    const epochs = this.store.epochs();
    const last = epochs[epochs.length - 1];
    if (!last) return undefined;
    return { epochNumber: last.epochNumber, epochPosition: last.position, epochId: last.epochId };
  }

  /** The voter set, once formed. */
  get members(): readonly NodeId[] {
    return this.voters;
  }
}

/** Errors a leader's pending write can end with when it loses leadership. */
export function isLostLeadership(err: unknown): boolean {
  return (
    err instanceof NotLeaderError ||
    isTruncatedError(err) ||
    (err instanceof StoreError && /truncated/.test(err.message))
  );
}

/** What decides whether this node takes writes (and reads) now (`ClusterStore`). */
export interface StoreGate {
  /** Why this node does not take writes now (and where to go), or undefined when it does. */
  writeRefusal(): WriteRefusal | undefined;
  /** Why this node does not serve reads now; absent: it always does. */
  readRefusal?(): WriteRefusal | undefined;
  /** A write was handed to the store. */
  afterWrite(): void;
}

/**
 * The store the API uses where writes may be refused. On a cluster node (the gate is its
 * ClusterRole): writes only on the leader (otherwise they throw NotLeaderError), and every
 * write handed to the store is proposed to the core right after; reads serve the committed
 * prefix (the store's own behaviour with autoCommit false), and `inner` is the same store the
 * role replicates (its `ReplicatedLog` side), of which only the `StreamStore` side is used
 * here. On a shared database (the gate is the membership's view): an instance that cannot
 * reach the database sends writers and readers to another.
 */
export class ClusterStore extends ForwardingStore {
  constructor(
    inner: StreamStore,
    private readonly role: StoreGate,
  ) {
    super(inner);
  }

  override append(
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
  ): Promise<WriteResult> {
    return this.write(() => this.inner.append(streamId, expected, events));
  }

  override delete(
    streamId: string,
    expected: ExpectedVersion,
    hard: boolean,
  ): Promise<WriteResult> {
    return this.write(() => this.inner.delete(streamId, expected, hard));
  }

  private write(work: () => Promise<WriteResult>): Promise<WriteResult> {
    const refusal = this.role.writeRefusal();
    if (refusal) return Promise.reject(new NotLeaderError(refusal));
    const result = work();
    this.role.afterWrite();
    return result.catch((err: unknown) => {
      if (isLostLeadership(err)) {
        throw new NotLeaderError(
          this.role.writeRefusal() ?? {
            message: "leadership changed while writing; retry",
            leaderTcp: undefined,
            leaderHttp: undefined,
          },
        );
      }
      // This node's disk failed the write: it stops leading, and another node can take
      // writes. Its records may already be on the followers, so the next leader decides
      // the outcome: the client retries with the same event ids, and learns it.
      if (
        err instanceof FailedWriteError ||
        (err instanceof StoreError && err.code === "IO_FAILED")
      ) {
        const unknown = err instanceof FailedWriteError;
        throw new NotLeaderError({
          message:
            `this node's disk failed (${err.message}); it leads no more: retry` +
            (unknown ? " (the write may yet be committed: its outcome is unknown)" : ""),
          leaderTcp: undefined,
          leaderHttp: undefined,
        });
      }
      throw err;
    });
  }

  override readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult> {
    return this.read(() => this.inner.readStream(streamId, options));
  }

  override readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    return this.read(() => this.inner.readAll(options));
  }

  override getMetadata(streamId: string): Promise<StreamMetadata | null> {
    return this.read(() => this.inner.getMetadata(streamId));
  }

  private read<T>(work: () => Promise<T>): Promise<T> {
    const refusal = this.role.readRefusal?.();
    return refusal ? Promise.reject(new NotLeaderError(refusal)) : work();
  }
}

/** The disk (or the quota) is full: a store refusal, or the operating system's error. */
function isDiskFull(err: unknown): boolean {
  if (err instanceof StoreError) return err.code === "STORAGE_FULL";
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}
