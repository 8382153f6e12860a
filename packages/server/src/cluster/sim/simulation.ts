/**
 * Deterministic simulation of the consensus core: a seeded random source, a virtual clock
 * (with per-node skew), a network that loses, duplicates, delays and partitions messages,
 * and disks that lose unsynced writes on power loss. Checkers run after every step; any
 * violation (or an exception from the core) fails the run with the seed to replay.
 */
import { ConsensusCore } from "../core/raft.js";
import type { CoreConfig, Effect, LogRecord, Message, NodeId, Role } from "../core/types.js";
import { SimDisk } from "./disk.js";
import { MemLog } from "./mem-log.js";
import { SimNetwork } from "./network.js";
import { Rng } from "./rng.js";

export const REPRODUCE_COMMAND = "npx vitest run packages/server/src/cluster/sim";

export interface SimOptions {
  seed: number;
  voters: number;
  learners?: number;
  /** "chaos": random faults then heal; "failover": crash a stable leader once. */
  scenario?: "chaos" | "failover";
  chaosMs?: number;
  electionTimeoutMinMs?: number;
  electionTimeoutMaxMs?: number;
  heartbeatMs?: number;
  tickMs?: number;
  maxQuiesceMs?: number;
  testingBrokenVoteRule?: CoreConfig<string>["testingBrokenVoteRule"];
  /** Model a driver that does not fsync the hard state before relying on it. */
  testingLoseHardState?: boolean;
  /**
   * Some crashes lose the node's whole memory (an in-memory node's restart): an empty log
   * and no hard state. At most a minority of voters is without its memory at a time.
   */
  memoryLoss?: boolean;
  /** Model a driver that restarts a node that lost its memory as if it remembered (a bug). */
  testingIgnoreAmnesia?: boolean;
}

export interface SimResult {
  seed: number;
  acknowledged: number;
  committedEnd: number;
  committedRecords: number;
  epochs: number;
  crashes: number;
  steps: number;
  virtualMs: number;
  /** Failover scenario: leader crash -> a new leader commits in its epoch. */
  failoverMs?: number;
}

export class SimulationFailure extends Error {
  override readonly name = "SimulationFailure";
  constructor(
    readonly seed: number,
    readonly reason: string,
    detail: string,
  ) {
    super(
      `simulation failed for seed ${seed}: ${reason}\n` +
        `reproduce: CHORUS_SIM_SEED=${seed} ${REPRODUCE_COMMAND}\n${detail}`,
    );
  }
}

type Payload = string;

type SimEvent =
  | { kind: "deliver"; from: NodeId; to: NodeId; message: Message<Payload> }
  | { kind: "tick"; node: NodeId; incarnation: number }
  | { kind: "sync"; node: NodeId; incarnation: number }
  | { kind: "client" }
  | { kind: "fault" }
  | { kind: "restart"; node: NodeId }
  | { kind: "peerLost"; node: NodeId; peer: NodeId; incarnation: number }
  | { kind: "heal" }
  | { kind: "endChaos" }
  | { kind: "stopClients" }
  | { kind: "crashLeader" };

interface Scheduled {
  atMs: number;
  seq: number;
  event: SimEvent;
}

interface PendingWrite {
  id: string;
  end: number;
}

interface SimNode {
  id: NodeId;
  voter: boolean;
  disk: SimDisk<Payload>;
  core: ConsensusCore<Payload> | undefined;
  incarnation: number;
  clockOffsetMs: number;
  clockRate: number;
  syncScheduled: boolean;
  commit: number;
  role: Role;
  epoch: number;
  pending: PendingWrite[];
  /** A paused process (GC pause, SIGSTOP): nothing runs until then. */
  stalledUntilMs: number;
  /** Lost its memory and has not recovered yet. */
  amnesic: boolean;
}

/** A binary min-heap of events by (atMs, seq). */
class EventQueue {
  private readonly heap: Scheduled[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(item: Scheduled): void {
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent];
      if (p === undefined || !before(item, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = item;
  }

  pop(): Scheduled | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = last;
      let at = -1;
      const hl = h[l];
      const hr = h[r];
      if (hl !== undefined && before(hl, smallest)) {
        smallest = hl;
        at = l;
      }
      if (hr !== undefined && before(hr, smallest)) {
        smallest = hr;
        at = r;
      }
      if (at < 0) break;
      h[i] = smallest;
      i = at;
    }
    h[i] = last;
    return top;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}

function sameRecord(a: LogRecord<Payload>, b: LogRecord<Payload> | undefined): boolean {
  return (
    b !== undefined &&
    a.epoch === b.epoch &&
    a.position === b.position &&
    a.length === b.length &&
    a.kind === b.kind &&
    a.payload === b.payload
  );
}

const TRACE_LENGTH = Number(process.env.CHORUS_SIM_TRACE ?? 40);

export class Simulation {
  private readonly rng: Rng;
  private readonly net: SimNetwork;
  private readonly queue = new EventQueue();
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly voterIds: NodeId[];
  private readonly allIds: NodeId[];
  private readonly opts: Required<
    Omit<
      SimOptions,
      "testingBrokenVoteRule" | "testingLoseHardState" | "memoryLoss" | "testingIgnoreAmnesia"
    >
  > &
    Pick<
      SimOptions,
      "testingBrokenVoteRule" | "testingLoseHardState" | "memoryLoss" | "testingIgnoreAmnesia"
    >;
  private nowMs = 0;
  private seq = 0;
  private steps = 0;
  private chaos: boolean;
  private clientsActive = true;
  private believedLeader: NodeId;
  private nextWriteId = 0;
  private crashes = 0;
  private readonly trace: string[] = [];
  // Checker state.
  /** The one committed log every node's committed prefix must be a prefix of. */
  private readonly common = new MemLog<Payload>();
  private readonly leaderOfEpoch = new Map<number, NodeId>();
  private readonly acknowledged = new Map<string, number>();
  // Failover measurement.
  private crashAtMs: number | undefined;
  private crashedEpoch = 0;
  private failoverMs: number | undefined;

  constructor(options: SimOptions) {
    this.opts = {
      learners: 0,
      scenario: "chaos",
      chaosMs: 8_000,
      electionTimeoutMinMs: 500,
      electionTimeoutMaxMs: 1_000,
      heartbeatMs: 50,
      tickMs: 10,
      maxQuiesceMs: 30_000,
      ...options,
    };
    this.rng = new Rng(options.seed);
    const chaos = this.opts.scenario === "chaos";
    this.chaos = chaos;
    this.net = new SimNetwork(this.rng.fork(), {
      lossRate: 0,
      duplicateRate: 0,
      minDelayMs: 1,
      maxDelayMs: chaos ? 10 : 3,
    });
    this.voterIds = Array.from({ length: this.opts.voters }, (_, i) => `n${i + 1}`);
    const learnerIds = Array.from({ length: this.opts.learners }, (_, i) => `r${i + 1}`);
    this.allIds = [...this.voterIds, ...learnerIds];
    for (const id of this.allIds) {
      const disk = new SimDisk<Payload>();
      disk.loseHardState = this.opts.testingLoseHardState === true;
      this.nodes.set(id, {
        id,
        voter: this.voterIds.includes(id),
        disk,
        core: undefined,
        incarnation: 0,
        clockOffsetMs: chaos ? this.rng.int(0, 10_000) : 0,
        clockRate: chaos ? 0.9 + this.rng.next() * 0.2 : 1,
        syncScheduled: false,
        commit: 0,
        role: "follower",
        epoch: 0,
        pending: [],
        stalledUntilMs: 0,
        amnesic: false,
      });
    }
    this.believedLeader = this.rng.pick(this.voterIds);
  }

  run(): SimResult {
    try {
      return this.runUnchecked();
    } catch (err) {
      if (err instanceof SimulationFailure) throw err;
      throw this.failure(
        `exception: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
    }
  }

  private runUnchecked(): SimResult {
    for (const node of this.nodes.values()) this.start(node);
    this.schedule(this.rng.int(5, 30), { kind: "client" });
    if (this.opts.scenario === "chaos") {
      this.schedule(this.rng.int(100, 600), { kind: "fault" });
      this.schedule(this.opts.chaosMs, { kind: "endChaos" });
    } else {
      this.schedule(3_000, { kind: "crashLeader" });
    }
    const deadlineMs = this.opts.chaosMs + this.opts.maxQuiesceMs;
    let nextConvergenceCheckMs = 0;
    for (;;) {
      const item = this.queue.pop();
      if (item === undefined) throw this.failure("event queue ran dry");
      this.nowMs = item.atMs;
      this.steps += 1;
      this.handle(item.event);
      if (!this.chaos && !this.clientsActive && this.nowMs >= nextConvergenceCheckMs) {
        nextConvergenceCheckMs = this.nowMs + 50;
        const leader = this.converged();
        if (leader) return this.finish(leader);
      }
      if (this.nowMs > deadlineMs) {
        throw this.failure(`no convergence within ${this.opts.maxQuiesceMs} ms after healing`);
      }
    }
  }

  // ---- events --------------------------------------------------------------------------

  private schedule(delayMs: number, event: SimEvent): void {
    this.queue.push({ atMs: this.nowMs + delayMs, seq: this.seq++, event });
  }

  private handle(e: SimEvent): void {
    switch (e.kind) {
      case "deliver": {
        const node = this.mustNode(e.to);
        if (!node.core || this.net.isBlocked(e.from, e.to)) return;
        if (node.stalledUntilMs > this.nowMs) {
          this.schedule(node.stalledUntilMs - this.nowMs, e);
          return;
        }
        this.note(`${e.from}->${e.to} ${describe(e.message)}`);
        this.apply(node, node.core.receive(e.from, e.message, this.localNow(node)));
        return;
      }
      case "tick": {
        const node = this.mustNode(e.node);
        if (!node.core || node.incarnation !== e.incarnation) return;
        if (node.stalledUntilMs <= this.nowMs) {
          this.apply(node, node.core.tick(this.localNow(node)));
        }
        this.schedule(this.opts.tickMs, e);
        return;
      }
      case "sync": {
        const node = this.mustNode(e.node);
        if (!node.core || node.incarnation !== e.incarnation) return;
        if (node.stalledUntilMs > this.nowMs) {
          this.schedule(node.stalledUntilMs - this.nowMs, e);
          return;
        }
        node.syncScheduled = false;
        const durable = node.disk.sync();
        this.apply(node, node.core.localDurable(durable));
        return;
      }
      case "client":
        this.clientWrite();
        if (this.clientsActive) this.schedule(this.rng.int(10, 40), e);
        return;
      case "fault":
        if (!this.chaos) return;
        this.injectFault();
        this.schedule(this.rng.int(100, 700), e);
        return;
      case "restart":
        this.restart(this.mustNode(e.node));
        return;
      case "peerLost": {
        const node = this.mustNode(e.node);
        if (!node.core || node.incarnation !== e.incarnation) return;
        if (node.stalledUntilMs > this.nowMs) {
          this.schedule(node.stalledUntilMs - this.nowMs, e);
          return;
        }
        this.note(`${node.id} lost its link from ${e.peer}`);
        this.apply(node, node.core.peerLost(e.peer, this.localNow(node)));
        return;
      }
      case "heal":
        this.note("heal");
        this.net.heal();
        return;
      case "endChaos":
        this.endChaos();
        return;
      case "stopClients":
        this.clientsActive = false;
        return;
      case "crashLeader": {
        const leader = this.currentLeader();
        if (!leader) {
          this.schedule(100, e);
          return;
        }
        this.crashAtMs = this.nowMs;
        this.crashedEpoch = leader.epoch;
        this.crash(leader);
        this.schedule(3_000, { kind: "restart", node: leader.id });
        return;
      }
    }
  }

  private endChaos(): void {
    this.note("end of chaos: heal, restart, quiesce");
    this.chaos = false;
    this.net.heal();
    this.net.faults = { lossRate: 0, duplicateRate: 0, minDelayMs: 1, maxDelayMs: 5 };
    for (const node of this.nodes.values()) {
      node.stalledUntilMs = 0;
      if (!node.core) this.restart(node);
    }
    // Clients keep writing for a while after healing.
    this.schedule(2_000, { kind: "stopClients" });
  }

  private injectFault(): void {
    const r = this.rng.next();
    if (r < 0.25) {
      const node = this.mustNode(this.rng.pick(this.allIds));
      if (node.core) {
        const kind = this.rng.chance(0.3)
          ? "process"
          : this.opts.memoryLoss && this.rng.chance(0.5) && this.mayLoseMemory(node)
            ? "memory"
            : "power";
        this.crash(node, kind);
        this.schedule(this.rng.int(50, 3_000), { kind: "restart", node: node.id });
      }
    } else if (r < 0.3) {
      // A link reset on a healthy leader: a follower sees its link from the leader close.
      const leader = this.currentLeader();
      const follower = this.rng.pick(this.allIds);
      const node = this.mustNode(follower);
      if (leader && node.core && follower !== leader.id) {
        this.schedule(0, {
          kind: "peerLost",
          node: follower,
          peer: leader.id,
          incarnation: node.incarnation,
        });
      }
    } else if (r < 0.4) {
      const shuffled = [...this.allIds].sort(() => this.rng.next() - 0.5);
      const cut = this.rng.int(1, shuffled.length - 1);
      const side = shuffled.slice(0, cut);
      this.note(`partition ${side.join(",")} | ${shuffled.slice(cut).join(",")}`);
      this.net.partition(side, shuffled.slice(cut));
      this.schedule(this.rng.int(200, 3_000), { kind: "heal" });
    } else if (r < 0.5) {
      const from = this.rng.pick(this.allIds);
      const to = this.rng.pick(this.allIds.filter((n) => n !== from));
      this.note(`one-way block ${from}>${to}`);
      this.net.block(from, to);
      this.schedule(this.rng.int(200, 3_000), { kind: "heal" });
    } else if (r < 0.8) {
      // Now and then delays past the election timeout (a congested or flapping link).
      const maxDelayMs = this.rng.chance(0.1)
        ? this.rng.int(this.opts.electionTimeoutMinMs, 2 * this.opts.electionTimeoutMaxMs)
        : this.rng.int(2, 60);
      this.net.faults = {
        lossRate: this.rng.chance(0.5) ? 0 : this.rng.next() * 0.2,
        duplicateRate: this.rng.chance(0.5) ? 0 : this.rng.next() * 0.1,
        minDelayMs: 1,
        maxDelayMs,
      };
    } else if (r < 0.9) {
      const leader = this.currentLeader();
      if (leader?.core) {
        this.note(`transfer leadership from ${leader.id}`);
        this.apply(leader, leader.core.transferLeadership());
      }
    } else {
      // A stall: the node misses a stretch of ticks (GC pause / blocked event loop).
      const node = this.mustNode(this.rng.pick(this.allIds));
      if (node.core) {
        node.stalledUntilMs = this.nowMs + this.rng.int(100, 1_500);
        this.note(`stall ${node.id} until ${node.stalledUntilMs}ms`);
      }
    }
  }

  // ---- nodes ----------------------------------------------------------------------------

  private start(node: SimNode): void {
    node.incarnation += 1;
    const cfg: CoreConfig<Payload> = {
      id: node.id,
      voters: this.voterIds,
      learners: this.allIds.filter((id) => !this.voterIds.includes(id)),
      electionTimeoutMinMs: this.opts.electionTimeoutMinMs,
      electionTimeoutMaxMs: this.opts.electionTimeoutMaxMs,
      heartbeatMs: this.opts.heartbeatMs,
      maxBatchBytes: 1_000,
      random: (() => {
        const rng = this.rng.fork();
        return () => rng.next();
      })(),
      epochRecord: (epoch, leaderId) => ({ length: 16, payload: `epoch:${epoch}:${leaderId}` }),
      testingBrokenVoteRule: this.opts.testingBrokenVoteRule,
    };
    node.commit = Math.min(node.disk.commitCheckpoint, node.disk.log.durableEnd());
    node.role = node.voter ? "follower" : "learner";
    node.epoch = node.disk.hardState.epoch;
    node.core = new ConsensusCore(cfg, node.disk.log, {
      hardState: node.disk.hardState,
      commitPosition: node.commit,
      nowMs: this.localNow(node),
      amnesiac: node.disk.fresh && this.opts.testingIgnoreAmnesia !== true,
    });
    this.checkCommittedPrefix(node);
    this.schedule(this.rng.int(1, this.opts.tickMs), {
      kind: "tick",
      node: node.id,
      incarnation: node.incarnation,
    });
  }

  /**
   * `power`: the machine loses power; the disk keeps what was synced (and maybe some later
   * appends), and the other nodes' links to it stay open until they time out. `process`:
   * the process dies, the page cache survives, and the kernel closes its links at once, so
   * the others see them close a little later. `memory`: the process of an in-memory node
   * dies: nothing survives, and its links close.
   */
  private crash(node: SimNode, kind: "power" | "process" | "memory" = "power"): void {
    this.note(`crash ${node.id} (${kind === "power" ? "power loss" : `${kind} lost`})`);
    this.crashes += 1;
    node.core = undefined;
    node.incarnation += 1;
    node.syncScheduled = false;
    node.pending = [];
    node.stalledUntilMs = 0;
    if (kind === "memory") {
      const disk = new SimDisk<Payload>();
      disk.loseHardState = node.disk.loseHardState;
      node.disk = disk;
      node.commit = 0;
      node.amnesic = node.voter;
    } else {
      const unsynced = node.disk.unsyncedAppends();
      node.disk.powerLoss(kind === "process" ? unsynced : this.rng.int(0, unsynced));
    }
    for (const other of this.nodes.values()) {
      if (kind === "power") break;
      if (other === node || !other.core || this.net.isBlocked(node.id, other.id)) continue;
      this.schedule(this.rng.int(1, 20), {
        kind: "peerLost",
        node: other.id,
        peer: node.id,
        incarnation: other.incarnation,
      });
    }
  }

  /** A voter may lose its memory only while a majority of voters still has theirs. */
  private mayLoseMemory(node: SimNode): boolean {
    if (!node.voter) return true;
    let without = 0;
    for (const n of this.nodes.values()) if (n.voter && n.amnesic) without += 1;
    return without + 1 <= Math.floor((this.voterIds.length - 1) / 2);
  }

  private restart(node: SimNode): void {
    if (node.core) return;
    this.note(`restart ${node.id}`);
    this.start(node);
  }

  private localNow(node: SimNode): number {
    return Math.floor(node.clockOffsetMs + this.nowMs * node.clockRate);
  }

  private mustNode(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`unknown node ${id}`);
    return node;
  }

  private currentLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodes.values()) {
      if (node.core && node.role === "leader" && (!best || node.epoch > best.epoch)) best = node;
    }
    return best;
  }

  // ---- effects --------------------------------------------------------------------------

  private apply(node: SimNode, effects: readonly Effect<Payload>[]): void {
    if (node.amnesic && node.core && !node.core.state.recovering) {
      this.note(`${node.id} recovered from memory loss`);
      node.amnesic = false;
    }
    for (const effect of effects) {
      switch (effect.type) {
        case "persist":
          node.disk.persist(effect.state);
          break;
        case "send":
          for (const delayMs of this.net.delays(node.id, effect.to)) {
            this.schedule(delayMs, {
              kind: "deliver",
              from: node.id,
              to: effect.to,
              message: effect.message,
            });
          }
          break;
        case "append":
          node.disk.append(effect.records);
          if (!node.syncScheduled) {
            node.syncScheduled = true;
            this.schedule(this.rng.int(1, 8), {
              kind: "sync",
              node: node.id,
              incarnation: node.incarnation,
            });
          }
          break;
        case "truncate":
          this.note(`${node.id} truncate to ${effect.position}`);
          if (effect.position < node.commit) {
            throw this.failure(
              `${node.id} truncated to ${effect.position}, below its commit ${node.commit}`,
            );
          }
          node.disk.truncate(effect.position);
          break;
        case "commit":
          this.onCommit(node, effect.position);
          break;
        case "roleChanged":
          this.onRoleChanged(node, effect.role, effect.epoch, effect.leaderId);
          break;
      }
    }
  }

  private onRoleChanged(node: SimNode, role: Role, epoch: number, leaderId?: NodeId): void {
    this.note(`${node.id} is ${role} in epoch ${epoch} (leader ${leaderId ?? "-"})`);
    if (node.role === "leader" && (role !== "leader" || epoch !== node.epoch)) {
      node.pending = []; // outcome unknown to their clients
    }
    node.role = role;
    node.epoch = epoch;
    if (role === "leader") {
      const other = this.leaderOfEpoch.get(epoch);
      if (other !== undefined && other !== node.id) {
        throw this.failure(`two leaders in epoch ${epoch}: ${other} and ${node.id}`);
      }
      this.leaderOfEpoch.set(epoch, node.id);
      this.believedLeader = node.id;
    }
  }

  /** Checker: a node's newly committed records extend or equal the one common log. */
  private onCommit(node: SimNode, position: number): void {
    const log = node.disk.log;
    if (position < node.commit) {
      throw this.failure(`${node.id} commit moved back from ${node.commit} to ${position}`);
    }
    if (position > log.end() || (position > 0 && log.indexEndingAt(position) < 0)) {
      throw this.failure(`${node.id} committed ${position}, not a record boundary of its log`);
    }
    if (position > log.durableEnd()) {
      throw this.failure(`${node.id} committed ${position} above its durable end`);
    }
    const records = log.all();
    for (let i = log.countEndingAtOrBefore(node.commit); i < records.length; i++) {
      const r = records[i];
      if (r === undefined || r.position >= position) break;
      this.checkAgainstCommon(node, r);
    }
    node.commit = position;
    node.disk.commitCheckpoint = position;
    if (node.role === "leader") this.acknowledge(node);
    if (
      this.crashAtMs !== undefined &&
      this.failoverMs === undefined &&
      node.role === "leader" &&
      node.epoch > this.crashedEpoch &&
      log.epochAt(position) === node.epoch
    ) {
      this.failoverMs = this.nowMs - this.crashAtMs;
      this.clientsActive = false;
    }
  }

  private checkAgainstCommon(node: SimNode, r: LogRecord<Payload>): void {
    const end = r.position + r.length;
    if (end <= this.common.end()) {
      const committed = this.common.recordEndingAt(end);
      if (!sameRecord(r, committed)) {
        throw this.failure(
          `${node.id} committed ${fmt(r)} where the committed log has ${committed ? fmt(committed) : "no record boundary"}`,
        );
      }
    } else if (r.position === this.common.end()) {
      this.common.append([r]);
    } else {
      throw this.failure(`${node.id} committed ${fmt(r)} past a gap in the committed log`);
    }
  }

  /** Checker: after a restart the committed prefix survived and still matches. */
  private checkCommittedPrefix(node: SimNode): void {
    const records = node.disk.log.all();
    for (const r of records) {
      if (r.position >= node.commit) break;
      const committed = this.common.recordEndingAt(r.position + r.length);
      if (!sameRecord(r, committed)) {
        throw this.failure(
          `${node.id} restarted with committed ${fmt(r)} not in the committed log`,
        );
      }
    }
  }

  private acknowledge(leader: SimNode): void {
    const log = leader.disk.log;
    while (leader.pending.length > 0) {
      const w = leader.pending[0];
      if (w === undefined || w.end > leader.commit) break;
      leader.pending.shift();
      const r = log.recordEndingAt(w.end);
      if (r?.payload !== w.id) {
        throw this.failure(
          `${leader.id} acknowledged ${w.id} but its log has ${r ? fmt(r) : "nothing"}`,
        );
      }
      this.acknowledged.set(w.id, w.end);
    }
  }

  // ---- clients --------------------------------------------------------------------------

  private clientWrite(): void {
    let node = this.nodes.get(this.believedLeader);
    if (!node?.core) node = this.mustNode(this.rng.pick(this.voterIds));
    if (!node.core || node.stalledUntilMs > this.nowMs) return;
    const count = this.rng.int(1, 3);
    const records = Array.from({ length: count }, () => ({
      length: this.rng.int(2, 200),
      payload: `w${this.nextWriteId++}`,
    }));
    const result = node.core.propose(records);
    if (result.ok) {
      result.points.forEach((p, i) => {
        const rec = records[i];
        if (rec) node.pending.push({ id: rec.payload, end: p.position });
      });
    } else {
      this.believedLeader = result.leaderId ?? this.rng.pick(this.voterIds);
    }
    this.apply(node, result.effects);
  }

  // ---- convergence and final checks ----------------------------------------------------

  private converged(): SimNode | undefined {
    const leader = this.currentLeader();
    if (!leader) return undefined;
    const end = leader.disk.log.end();
    if (leader.commit !== end) return undefined;
    for (const node of this.nodes.values()) {
      if (!node.core || node.commit !== end) return undefined;
    }
    return leader;
  }

  private finish(leader: SimNode): SimResult {
    const end = leader.commit;
    if (this.common.end() !== end) {
      throw this.failure(`converged at ${end} but the committed log ends at ${this.common.end()}`);
    }
    const committed = this.common.all();
    for (const node of this.nodes.values()) {
      const records = node.disk.log.all();
      if (records.length !== committed.length) {
        throw this.failure(
          `${node.id} holds ${records.length} records, the committed log ${committed.length}`,
        );
      }
      records.forEach((r, i) => {
        if (!sameRecord(r, committed[i])) {
          throw this.failure(`${node.id} diverges from the committed log at ${fmt(r)}`);
        }
      });
    }
    const seen = new Map<string, number>();
    for (const r of committed)
      if (r.kind === "data") seen.set(r.payload, (seen.get(r.payload) ?? 0) + 1);
    for (const [id, end] of this.acknowledged) {
      const n = seen.get(id) ?? 0;
      if (n !== 1)
        throw this.failure(`acknowledged write ${id} (end ${end}) is committed ${n} times`);
    }
    return {
      seed: this.opts.seed,
      acknowledged: this.acknowledged.size,
      committedEnd: end,
      committedRecords: committed.length,
      epochs: this.leaderOfEpoch.size,
      crashes: this.crashes,
      steps: this.steps,
      virtualMs: this.nowMs,
      ...(this.failoverMs !== undefined ? { failoverMs: this.failoverMs } : {}),
    };
  }

  // ---- diagnostics ----------------------------------------------------------------------

  private note(line: string): void {
    if (this.trace.length >= TRACE_LENGTH) this.trace.shift();
    this.trace.push(`${this.nowMs}ms ${line}`);
  }

  private failure(reason: string): SimulationFailure {
    const detail = ["last events:", ...this.trace].join("\n  ");
    return new SimulationFailure(this.opts.seed, reason, detail);
  }
}

function fmt(r: LogRecord<Payload>): string {
  return `${r.payload}@${r.position}+${r.length}/e${r.epoch}`;
}

function describe(m: Message<Payload>): string {
  switch (m.type) {
    case "Append":
      return `Append e${m.epoch} prev ${m.prev.epoch}/${m.prev.position} n=${m.records.length} c=${m.leaderCommit}`;
    case "AppendReply":
      return m.ok
        ? `AppendReply e${m.epoch} ok ${m.match.position} d=${m.durableEnd}`
        : `AppendReply e${m.epoch} no hint ${m.hint.epoch}/${m.hint.position}`;
    case "VoteReply":
      return `${m.preVote ? "Pre" : ""}VoteReply e${m.epoch} ${m.granted ? "yes" : "no"} (voter e${m.voterEpoch})`;
    default:
      return `${m.type} e${m.epoch}`;
  }
}

/** Runs one simulation; throws SimulationFailure with the seed on any violation. */
export function simulate(options: SimOptions): SimResult {
  return new Simulation(options).run();
}
