/**
 * The consensus core: a Raft state machine in event-store terms. No I/O, no timers, no
 * randomness of its own: the driver feeds it inputs (ticks, messages, local durability,
 * proposals) and performs the effects each input returns, in order.
 *
 * Contract with the driver:
 * - apply `append` / `truncate` effects to the log behind the `LogView` before the next
 *   input; make a `persist` effect durable before performing any effect after it;
 * - report `localDurable(p)` only for a sync that covered the log as it is now (a sync
 *   that started before a truncation must not report positions past it).
 */
import {
  ORIGIN,
  comparePoints,
  type AppendMessage,
  type AppendReplyMessage,
  type CoreConfig,
  type CoreInit,
  type Effect,
  type HardState,
  type LogPoint,
  type LogRecord,
  type LogView,
  type Message,
  type NewRecord,
  type NodeId,
  type PreVoteMessage,
  type ProposeResult,
  type Role,
  type VoteMessage,
  type VoteReplyMessage,
} from "./types.js";

export class ConsensusInvariantError extends Error {
  override readonly name = "ConsensusInvariantError";
}

interface PeerProgress {
  /** Next position to send from (optimistic: moved past what was sent). */
  next: number;
  /** Known to match the leader's log up to here. */
  match: number;
  /** Durable on the peer and matching the leader's log up to here. */
  durable: number;
  /** Everything sent below here was acknowledged (or never sent): next - acked is in flight. */
  acked: number;
  lastHeardMs: number;
  /** The peer's last reply said its storage is full: it gets heartbeats only until one does not. */
  storageFull?: boolean;
}

interface Transfer {
  readonly target: NodeId;
  readonly deadlineMs: number;
  sent: boolean;
}

export class ConsensusCore<P> {
  private readonly isVoter: boolean;
  private readonly quorum: number;
  /** Every other member: the voters, then the learners (these change with setLearners). */
  private others: readonly NodeId[];
  private learners: readonly NodeId[];
  private readonly priorityRank: number;
  private readonly maxInFlightBytes: number;

  private out: Effect<P>[] = [];
  private nowMs: number;
  private role: Role;
  private epoch: number;
  private votedFor: NodeId | undefined;
  private leaderId: NodeId | undefined = undefined;
  private commit: number;
  private durable: number;
  private electionDeadlineMs = 0;
  private lastLeaderContactMs = Number.NEGATIVE_INFINITY;
  /** When this follower last sent its leader an AppendReply (see onAppend). */
  private lastReplyMs = Number.NEGATIVE_INFINITY;
  private votes = new Set<NodeId>();
  /**
   * The PreVote or Vote of this node's current round while it stands (cleared on any other
   * role), sent again to a peer that comes back.
   */
  private voteRequest: PreVoteMessage | VoteMessage | undefined = undefined;
  /** Follower: highest commit position heard from any leader. */
  private knownCommit = 0;
  /** Follower: the log matches the current leader's up to here. */
  private leaderMatch = 0;
  private leaderMatchEpoch = 0;
  private lastAnnouncedEpoch = -1;
  /**
   * Recovering from lost memory (CoreInit.amnesiac): no votes, no standing, no counting.
   * `reports` holds what the other voters said of themselves since this start.
   */
  private recovering: boolean;
  private readonly reports = new Map<NodeId, { epoch: number; empty: boolean }>();
  /** The current leader's commit position, from its last Append that matched our log. */
  private leaderCommitSeen = 0;
  private nextProbeMs = 0;
  // Leader state.
  private peers = new Map<NodeId, PeerProgress>();
  private nextHeartbeatMs = 0;
  private transfer: Transfer | undefined = undefined;

  constructor(
    private readonly cfg: CoreConfig<P>,
    private readonly log: LogView<P>,
    init: CoreInit,
  ) {
    const { id, voters, learners } = cfg;
    if (!voters.includes(id) && !learners.includes(id)) {
      throw new Error(`node ${id} is neither a voter nor a learner`);
    }
    if (cfg.electionTimeoutMaxMs < cfg.electionTimeoutMinMs) {
      throw new Error("electionTimeoutMaxMs must be >= electionTimeoutMinMs");
    }
    this.isVoter = voters.includes(id);
    this.quorum = Math.floor(voters.length / 2) + 1;
    this.learners = learners.filter((n) => !voters.includes(n));
    this.others = [...voters, ...this.learners].filter((n) => n !== id);
    const myPriority = this.priorityOf(id);
    this.priorityRank = voters.filter((v) => this.priorityOf(v) > myPriority).length;
    this.maxInFlightBytes = cfg.maxInFlightBytes ?? 4 * cfg.maxBatchBytes;
    this.nowMs = init.nowMs;
    this.role = this.isVoter ? "follower" : "learner";
    this.epoch = init.hardState.epoch;
    this.votedFor = init.hardState.votedFor;
    this.durable = log.durableEnd();
    if (init.commitPosition > this.durable) {
      throw new ConsensusInvariantError(
        `restart commit ${init.commitPosition} is above the durable end ${this.durable}`,
      );
    }
    this.commit = init.commitPosition;
    this.knownCommit = init.commitPosition;
    this.recovering =
      (init.amnesiac === true || init.hardState.recovering === true) &&
      this.isVoter &&
      voters.length > 1;
    this.resetElectionTimer();
  }

  // ---- observers ---------------------------------------------------------------------

  get state(): {
    role: Role;
    epoch: number;
    leaderId: NodeId | undefined;
    votedFor: NodeId | undefined;
    commitPosition: number;
    /** Recovering from lost memory: not voting, standing or counting yet. */
    recovering: boolean;
  } {
    return {
      role: this.role,
      epoch: this.epoch,
      leaderId: this.leaderId,
      votedFor: this.votedFor,
      commitPosition: this.commit,
      recovering: this.recovering,
    };
  }

  // ---- inputs ------------------------------------------------------------------------

  tick(nowMs: number): Effect<P>[] {
    this.advanceClock(nowMs);
    if (this.role === "leader") {
      if (this.nowMs >= this.nextHeartbeatMs) {
        this.nextHeartbeatMs = this.nowMs + this.cfg.heartbeatMs;
        for (const peer of this.others) this.sendAppend(peer);
      }
      this.checkQuorum();
      if (this.transfer && this.nowMs >= this.transfer.deadlineMs) this.transfer = undefined;
    } else if (this.recovering) {
      if (this.nowMs >= this.nextProbeMs) this.probe();
    } else if (this.isVoter && this.nowMs >= this.electionDeadlineMs) {
      this.startPreVote();
    }
    return this.flush();
  }

  /**
   * This node's connection from `peer` closed (its process is gone, or the link broke). When
   * `peer` is the leader, this node leaves the leader's lease and stands soon (within a couple
   * of heartbeats) instead of after a whole election timeout. Safe: a voter that still hears
   * the leader keeps refusing pre-votes and votes, so only a leader that lost every link
   * (e.g. a dead process) is replaced early; a paused or partitioned leader's links stay open
   * and the election timeout applies.
   */
  peerLost(peer: NodeId, nowMs: number): Effect<P>[] {
    this.advanceClock(nowMs);
    if (this.role !== "leader" && this.isVoter && this.leaderId === peer) {
      this.lastLeaderContactMs = Number.NEGATIVE_INFINITY;
      // Every remaining voter learns of the loss at about the same moment. Each stands in a
      // slot of its own, one heartbeat wide (by priority, then by id), so two of them do not
      // ask for votes in the same epoch at once and split it (which would cost a whole
      // election timeout).
      const others = this.cfg.voters.filter((v) => v !== peer).sort();
      const slot = this.priorityRank * others.length + Math.max(0, others.indexOf(this.cfg.id));
      const soonMs = this.nowMs + Math.floor((slot + this.cfg.random()) * this.cfg.heartbeatMs);
      if (soonMs < this.electionDeadlineMs) this.electionDeadlineMs = soonMs;
    }
    return this.flush();
  }

  /**
   * This node's link to `peer` has just opened. Messages sent while no link was open are lost
   * (the transport does not queue them), so a pre-candidate or candidate that has no answer
   * from `peer` yet asks it again now, instead of after a whole election timeout: after a
   * node restarts, the survivors' links to it reopen only after their backoff, and a vote
   * request sent before that is gone. Asking twice in one round is harmless: a voter answers
   * the same request the same way (a granted vote is `votedFor`).
   */
  peerReachable(peer: NodeId, nowMs: number): Effect<P>[] {
    this.advanceClock(nowMs);
    // Set while this node stands (pre-candidate or candidate), to that round's request.
    const request = this.voteRequest;
    if (
      request !== undefined &&
      this.cfg.voters.includes(peer) &&
      peer !== this.cfg.id &&
      !this.votes.has(peer)
    ) {
      this.send(peer, request);
    }
    return this.flush();
  }

  receive(from: NodeId, message: Message<P>, nowMs?: number): Effect<P>[] {
    if (nowMs !== undefined) this.advanceClock(nowMs);
    if (from === this.cfg.id || !this.others.includes(from)) return this.flush();
    switch (message.type) {
      case "PreVote":
        this.onPreVote(from, message);
        break;
      case "Vote":
        this.onVote(from, message);
        break;
      case "VoteReply":
        this.onVoteReply(from, message);
        break;
      case "Append":
        this.onAppend(from, message);
        break;
      case "AppendReply":
        this.onAppendReply(from, message);
        break;
      case "TimeoutNow":
        if (
          message.epoch === this.epoch &&
          from === this.leaderId &&
          this.isVoter &&
          !this.recovering
        ) {
          this.startElection(true);
        }
        break;
    }
    return this.flush();
  }

  /** The local disk made everything below `position` durable. */
  localDurable(position: number): Effect<P>[] {
    this.durable = Math.min(position, this.log.lastPoint().position);
    if (this.role === "leader") {
      this.maybeCommit();
    } else if (this.leaderId !== undefined && this.leaderMatch > 0) {
      this.maybeRecovered();
      this.replyOk(this.leaderId);
      this.followerCommit();
    }
    return this.flush();
  }

  propose(records: readonly NewRecord<P>[]): ProposeResult<P> {
    if (this.role !== "leader" || this.transfer !== undefined) {
      const leaderId = this.role === "leader" ? undefined : this.leaderId;
      return { ok: false, reason: "not-leader", leaderId, effects: this.flush() };
    }
    const appended = this.appendAsLeader(records.map((r) => ({ ...r, kind: "data" as const })));
    const points = appended.map((r) => ({ epoch: r.epoch, position: r.position + r.length }));
    return { ok: true, points, effects: this.flush() };
  }

  /** Hands leadership to the most up-to-date voter; proposals are refused meanwhile. */
  transferLeadership(): Effect<P>[] {
    if (this.role !== "leader") return this.flush();
    let best: { id: NodeId; match: number } | undefined;
    for (const v of this.cfg.voters) {
      const p = this.peers.get(v);
      if (v === this.cfg.id || p === undefined) continue;
      if (
        best === undefined ||
        p.match > best.match ||
        (p.match === best.match && this.priorityOf(v) > this.priorityOf(best.id))
      ) {
        best = { id: v, match: p.match };
      }
    }
    if (best === undefined) return this.flush();
    this.transfer = {
      target: best.id,
      deadlineMs: this.nowMs + this.cfg.electionTimeoutMinMs,
      sent: false,
    };
    this.maybeSendTimeoutNow();
    if (this.transfer && !this.transfer.sent) this.sendAppend(best.id);
    return this.flush();
  }

  /**
   * Replaces the set of learners (non-voters: replicated to, never counted, never asked for
   * votes). Voters are fixed: ids that are voters are ignored, and a learner node keeps itself.
   * A leader starts replicating to a new learner at once (the learner backs it up to where
   * their logs match) and forgets removed ones.
   */
  setLearners(ids: readonly NodeId[]): Effect<P>[] {
    const { id, voters } = this.cfg;
    const next = [...new Set(ids)].filter((n) => !voters.includes(n) && n !== id);
    if (!this.isVoter) next.push(id);
    const added = next.filter((n) => !this.learners.includes(n) && n !== id);
    const removed = this.learners.filter((n) => !next.includes(n) && n !== id);
    if (added.length === 0 && removed.length === 0) return this.flush();
    this.learners = next;
    this.others = [...voters, ...next].filter((n) => n !== id);
    if (this.role === "leader") {
      for (const n of removed) this.peers.delete(n);
      const end = this.log.lastPoint().position;
      for (const n of added) {
        this.peers.set(n, { next: end, match: 0, durable: 0, acked: end, lastHeardMs: this.nowMs });
        this.sendAppend(n);
      }
    }
    return this.flush();
  }

  // ---- elections ---------------------------------------------------------------------

  private startPreVote(): void {
    this.votes = new Set([this.cfg.id]);
    this.setRole("preCandidate", undefined);
    this.resetElectionTimer();
    if (this.votes.size >= this.quorum) {
      this.startElection(false);
      return;
    }
    const message: PreVoteMessage = {
      type: "PreVote",
      epoch: this.epoch + 1,
      last: this.log.lastPoint(),
    };
    this.voteRequest = message;
    for (const v of this.cfg.voters) if (v !== this.cfg.id) this.send(v, message);
  }

  private startElection(transfer: boolean): void {
    this.epoch += 1;
    this.votedFor = this.cfg.id;
    this.persist();
    this.votes = new Set([this.cfg.id]);
    this.setRole("candidate", undefined);
    this.resetElectionTimer();
    if (this.votes.size >= this.quorum) {
      this.becomeLeader();
      return;
    }
    const message: VoteMessage = {
      type: "Vote",
      epoch: this.epoch,
      last: this.log.lastPoint(),
      transfer,
    };
    this.voteRequest = message;
    for (const v of this.cfg.voters) if (v !== this.cfg.id) this.send(v, message);
  }

  /** A voter is in a leader's lease while it has heard from that leader recently. */
  private inLease(): boolean {
    if (this.role === "leader") return true;
    return (
      this.leaderId !== undefined &&
      this.nowMs - this.lastLeaderContactMs < this.cfg.electionTimeoutMinMs
    );
  }

  private upToDate(candidateLast: LogPoint): boolean {
    if (this.cfg.testingBrokenVoteRule === "ignore-log") return true;
    return comparePoints(candidateLast, this.log.lastPoint()) >= 0;
  }

  private onPreVote(from: NodeId, m: PreVoteMessage): void {
    this.report(from, m.epoch - 1, m.last);
    const eligible = this.isVoter && !this.recovering && !this.inLease();
    const upToDate = this.upToDate(m.last);
    const granted = eligible && m.epoch > this.epoch && upToDate;
    this.send(from, this.voteReply(m.epoch, true, granted));
    // A follower without a leader that refuses a pre-candidate because that one's log is
    // behind its own stands now: it can win where the other cannot, and waiting for its own
    // turn (a later slot after the leader's loss, or an election timeout) only prolongs the
    // outage. Safe as any election is; no split vote, as the other cannot get this vote.
    if (eligible && !upToDate && this.role === "follower") this.startPreVote();
  }

  private onVote(from: NodeId, m: VoteMessage): void {
    this.report(from, m.epoch, m.last);
    if (!this.isVoter || m.epoch < this.epoch) {
      this.send(from, this.voteReply(m.epoch, false, false));
      return;
    }
    if (m.epoch > this.epoch) {
      // Leader stickiness: a node that still hears its leader ignores disruptive votes.
      if (this.inLease() && !m.transfer) {
        this.send(from, this.voteReply(m.epoch, false, false));
        return;
      }
      this.becomeFollower(m.epoch, undefined);
    }
    const free =
      this.votedFor === undefined ||
      this.votedFor === from ||
      this.cfg.testingBrokenVoteRule === "vote-twice";
    const granted = free && !this.recovering && this.upToDate(m.last);
    if (granted) {
      if (this.votedFor !== from) {
        this.votedFor = from;
        this.persist();
      }
      this.resetElectionTimer();
    }
    this.send(from, this.voteReply(m.epoch, false, granted));
  }

  private voteReply(epoch: number, preVote: boolean, granted: boolean): VoteReplyMessage {
    return {
      type: "VoteReply",
      epoch,
      preVote,
      granted,
      voterEpoch: this.epoch,
      voterLast: this.log.lastPoint(),
    };
  }

  private onVoteReply(from: NodeId, m: VoteReplyMessage): void {
    if (m.voterLast !== undefined) this.report(from, m.voterEpoch, m.voterLast);
    if (m.voterEpoch > this.epoch) {
      this.becomeFollower(m.voterEpoch, undefined);
      this.maybeRecovered();
      return;
    }
    if (this.recovering) {
      this.maybeRecovered();
      return;
    }
    if (!m.granted || !this.cfg.voters.includes(from)) return;
    if (m.preVote) {
      if (this.role !== "preCandidate" || m.epoch !== this.epoch + 1) return;
      this.votes.add(from);
      if (this.votes.size >= this.quorum) this.startElection(false);
    } else {
      if (this.role !== "candidate" || m.epoch !== this.epoch) return;
      this.votes.add(from);
      if (this.votes.size >= this.quorum) this.becomeLeader();
    }
  }

  private becomeLeader(): void {
    this.setRole("leader", this.cfg.id);
    this.transfer = undefined;
    const end = this.log.lastPoint().position;
    this.peers = new Map(
      this.others.map((p) => [
        p,
        { next: end, match: 0, durable: 0, acked: end, lastHeardMs: this.nowMs },
      ]),
    );
    this.nextHeartbeatMs = this.nowMs + this.cfg.heartbeatMs;
    const record = this.cfg.epochRecord(this.epoch, this.cfg.id);
    this.appendAsLeader([{ ...record, kind: "epoch" }]);
  }

  private becomeFollower(epoch: number, leaderId: NodeId | undefined): void {
    const newEpoch = epoch > this.epoch;
    if (newEpoch) {
      this.epoch = epoch;
      this.votedFor = undefined;
      this.persist();
    }
    if (newEpoch || leaderId !== this.leaderId) {
      this.leaderMatch = 0;
      this.leaderMatchEpoch = 0;
      this.leaderCommitSeen = 0;
    }
    this.peers = new Map();
    this.transfer = undefined;
    this.votes = new Set();
    this.setRole(this.isVoter ? "follower" : "learner", leaderId);
    this.resetElectionTimer();
  }

  private checkQuorum(): void {
    let heard = 1; // the leader itself
    for (const v of this.cfg.voters) {
      const p = this.peers.get(v);
      if (p && this.nowMs - p.lastHeardMs < this.cfg.electionTimeoutMinMs) heard += 1;
    }
    if (heard < this.quorum) this.becomeFollower(this.epoch, undefined);
  }

  // ---- replication: leader side -------------------------------------------------------

  private appendAsLeader(
    records: readonly (NewRecord<P> & { kind: "epoch" | "data" })[],
  ): LogRecord<P>[] {
    const last = this.log.lastPoint();
    let position = last.position;
    const appended: LogRecord<P>[] = [];
    for (const r of records) {
      if (!(r.length > 0)) throw new Error("record length must be positive");
      appended.push({
        epoch: this.epoch,
        position,
        length: r.length,
        kind: r.kind,
        payload: r.payload,
      });
      position += r.length;
    }
    if (appended.length === 0) return appended;
    this.emit({ type: "append", records: appended });
    // Peers that were caught up get the new records at once, in messages of about
    // maxBatchBytes, as long as what they have not acknowledged stays within bounds; the
    // others catch up from the log on their next reply or heartbeat.
    // Every such peer gets the same message objects, so the driver can encode them once.
    let messages: AppendMessage<P>[] | undefined;
    for (const peer of this.others) {
      const p = this.peers.get(peer);
      if (p === undefined || p.next !== last.position || p.storageFull === true) continue;
      if (p.next - p.acked + (position - last.position) > this.maxInFlightBytes) continue;
      messages ??= this.appendMessages(last, appended);
      for (const m of messages) this.send(peer, m);
      p.next = position;
    }
    return appended;
  }

  /** Append messages carrying `records` (which follow `prev`) in runs of about maxBatchBytes. */
  private appendMessages(prev: LogPoint, records: readonly LogRecord<P>[]): AppendMessage<P>[] {
    const messages: AppendMessage<P>[] = [];
    for (const run of this.chunk(records)) {
      messages.push({
        type: "Append",
        epoch: this.epoch,
        prev,
        records: run,
        leaderCommit: this.commit,
      });
      const end = run[run.length - 1]!;
      prev = { epoch: end.epoch, position: end.position + end.length };
    }
    return messages;
  }

  /** Splits records into runs of about maxBatchBytes (at least one record each). */
  private chunk(records: readonly LogRecord<P>[]): LogRecord<P>[][] {
    const chunks: LogRecord<P>[][] = [];
    let current: LogRecord<P>[] = [];
    let bytes = 0;
    for (const r of records) {
      if (current.length > 0 && bytes + r.length > this.cfg.maxBatchBytes) {
        chunks.push(current);
        current = [];
        bytes = 0;
      }
      current.push(r);
      bytes += r.length;
    }
    if (current.length > 0) chunks.push(current);
    return chunks;
  }

  private sendAppend(peer: NodeId): void {
    const p = this.peers.get(peer);
    if (p === undefined) return;
    let prevEpoch = this.log.epochAt(p.next);
    if (prevEpoch === undefined) {
      const back = this.log.lastPointAtOrBefore(this.epoch, p.next);
      p.next = back.position;
      prevEpoch = back.epoch;
    }
    // Only a heartbeat while the peer has too much unacknowledged, or no room for records.
    const hold = p.storageFull === true || p.next - p.acked >= this.maxInFlightBytes;
    const records = hold ? [] : this.log.read(p.next, this.cfg.maxBatchBytes);
    this.send(peer, {
      type: "Append",
      epoch: this.epoch,
      prev: { epoch: prevEpoch, position: p.next },
      records,
      leaderCommit: this.commit,
    });
    const lastRecord = records[records.length - 1];
    if (lastRecord !== undefined) p.next = lastRecord.position + lastRecord.length;
  }

  private onAppendReply(from: NodeId, m: AppendReplyMessage): void {
    if (m.epoch > this.epoch) {
      this.becomeFollower(m.epoch, undefined);
      return;
    }
    if (m.epoch < this.epoch || this.role !== "leader") return;
    const p = this.peers.get(from);
    if (p === undefined) return;
    p.lastHeardMs = this.nowMs;
    if (m.ok) {
      p.storageFull = m.storageFull === true;
      p.match = Math.max(p.match, m.match.position);
      p.acked = Math.max(p.acked, p.match);
      // A full peer took nothing past its match: its heartbeats carry that as their prev.
      if (p.storageFull) p.next = p.acked = p.match;
      p.durable = Math.max(p.durable, Math.min(m.durableEnd, m.match.position));
      if (p.next < p.match) p.next = p.match;
      this.maybeCommit();
      if (this.transfer?.target === from) this.maybeSendTimeoutNow();
      if (
        !p.storageFull &&
        p.next < this.log.lastPoint().position &&
        p.next - p.acked < this.maxInFlightBytes
      ) {
        this.sendAppend(from);
      }
    } else {
      // Back up by epoch: our last point at or before the follower's hint.
      const back = this.log.lastPointAtOrBefore(m.hint.epoch, m.hint.position);
      if (back.position < p.next) {
        p.next = back.position;
        p.acked = back.position;
        p.match = Math.min(p.match, back.position);
        this.sendAppend(from);
      }
    }
  }

  private maybeCommit(): void {
    if (this.role !== "leader") return;
    const durables = this.cfg.voters
      .map((v) => (v === this.cfg.id ? this.durable : (this.peers.get(v)?.durable ?? 0)))
      .sort((a, b) => b - a);
    // Never above the local durable end, so no node exposes what a power loss could take
    // back from it (the leader's own fsync runs in parallel with replication anyway).
    const q = Math.min(durables[this.quorum - 1] ?? 0, this.durable);
    // Raft's rule: only a position in the current epoch is committed by counting replicas.
    if (q > this.commit && this.log.epochAt(q) === this.epoch) this.setCommit(q);
  }

  private maybeSendTimeoutNow(): void {
    const t = this.transfer;
    if (t === undefined || t.sent) return;
    const p = this.peers.get(t.target);
    if (p !== undefined && p.match >= this.log.lastPoint().position) {
      t.sent = true;
      this.send(t.target, { type: "TimeoutNow", epoch: this.epoch });
    }
  }

  // ---- replication: follower side -----------------------------------------------------

  private onAppend(from: NodeId, m: AppendMessage<P>): void {
    if (m.epoch < this.epoch) {
      this.send(from, { type: "AppendReply", epoch: this.epoch, ok: false, hint: ORIGIN });
      return;
    }
    if (m.epoch === this.epoch && this.role === "leader") return; // impossible unless broken
    if (m.epoch > this.epoch || this.leaderId !== from || this.role !== this.followerRole()) {
      this.becomeFollower(m.epoch, from);
    }
    this.report(from, m.epoch, undefined);
    this.lastLeaderContactMs = this.nowMs;
    this.resetElectionTimer();

    if (this.log.epochAt(m.prev.position) !== m.prev.epoch) {
      const hint = this.log.lastPointAtOrBefore(m.prev.epoch, m.prev.position);
      this.send(from, { type: "AppendReply", epoch: this.epoch, ok: false, hint });
      return;
    }
    const end = this.log.lastPoint().position;
    let position = m.prev.position;
    let i = 0;
    for (; i < m.records.length; i++) {
      const r = m.records[i];
      if (r === undefined || r.position !== position) {
        throw new ConsensusInvariantError(`append records are not contiguous at ${position}`);
      }
      const recordEnd = position + r.length;
      if (recordEnd > end || this.log.epochAt(recordEnd) !== r.epoch) break;
      position = recordEnd;
    }
    if (i < m.records.length) {
      if (end > position) this.truncateTo(position);
      this.emit({ type: "append", records: m.records.slice(i) });
    }
    const lastRecord = m.records[m.records.length - 1];
    const matched = lastRecord ? lastRecord.position + lastRecord.length : m.prev.position;
    if (matched > this.leaderMatch) {
      this.leaderMatch = matched;
      this.leaderMatchEpoch = lastRecord ? lastRecord.epoch : m.prev.epoch;
    }
    this.knownCommit = Math.max(this.knownCommit, m.leaderCommit);
    this.leaderCommitSeen = Math.max(this.leaderCommitSeen, m.leaderCommit);
    this.maybeRecovered();
    // New records are answered once they are durable (localDurable replies): an answer now
    // could not move the leader's commit and would cost both sides a message per append.
    // The leader still hears from this node at least once per heartbeat interval, so a slow
    // disk does not look like a lost follower to check-quorum.
    const appended = i < m.records.length;
    if (!appended || this.nowMs - this.lastReplyMs >= this.cfg.heartbeatMs) this.replyOk(from);
    this.followerCommit();
  }

  private followerRole(): Role {
    return this.isVoter ? "follower" : "learner";
  }

  private truncateTo(position: number): void {
    if (position < this.commit) {
      throw new ConsensusInvariantError(
        `node ${this.cfg.id} asked to truncate to ${position}, below its commit ${this.commit}`,
      );
    }
    this.emit({ type: "truncate", position });
    this.durable = Math.min(this.durable, position);
  }

  private replyOk(to: NodeId): void {
    this.lastReplyMs = this.nowMs;
    const position = this.leaderMatch;
    this.send(to, {
      type: "AppendReply",
      epoch: this.epoch,
      ok: true,
      match: { epoch: this.leaderMatchEpoch, position },
      // A recovering node's copy does not count toward a majority yet.
      durableEnd: this.recovering ? 0 : Math.min(this.durable, position),
    });
  }

  private followerCommit(): void {
    const c = Math.min(this.knownCommit, this.leaderMatch, this.durable);
    if (c > this.commit) this.setCommit(c);
  }

  // ---- recovery from lost memory ------------------------------------------------------

  /**
   * Records what voter `from` said of itself: its epoch and whether its log is empty
   * (`last` undefined: not known, taken as not empty).
   */
  private report(from: NodeId, epoch: number, last: LogPoint | undefined): void {
    if (!this.recovering || !this.cfg.voters.includes(from) || from === this.cfg.id) return;
    const empty = last !== undefined && last.position === 0;
    const prev = this.reports.get(from);
    this.reports.set(from, {
      epoch: Math.max(epoch, prev?.epoch ?? 0),
      empty: empty && (prev === undefined || prev.empty),
    });
  }

  /** Asks every other voter for its epoch and last point (a pre-vote that stands for nothing). */
  private probe(): void {
    this.nextProbeMs =
      this.nowMs + Math.max(this.cfg.heartbeatMs, this.cfg.electionTimeoutMinMs / 4);
    const message: PreVoteMessage = {
      type: "PreVote",
      epoch: this.epoch + 1,
      last: this.log.lastPoint(),
    };
    for (const v of this.cfg.voters) if (v !== this.cfg.id) this.send(v, message);
  }

  /**
   * Leaves recovery when it is safe to vote and count again:
   * - every other voter reported an empty log, and so is ours: a brand-new cluster (or one
   *   whose every member lost its memory: nothing is left to protect). The node takes the
   *   highest epoch reported and counts itself as having voted in it, so a vote it cast
   *   before it restarted is never cast again for someone else in that epoch;
   * - or a majority of the other voters reported their epochs, this node follows a leader
   *   whose epoch is at least all of them (not a deposed leader that does not know it yet),
   *   that leader has committed a record of its own epoch, and this node holds the leader's
   *   log durably up to that commit position: so it holds every record committed before
   *   (the leader's log has them all). Any epoch it voted in before it restarted is known
   *   to one of that majority, so it is at most the leader's, and the node records its vote
   *   for the leader in the leader's epoch.
   */
  private maybeRecovered(): void {
    if (!this.recovering) return;
    const others = this.cfg.voters.length - 1;
    let maxEpoch = 0;
    let allEmpty = true;
    for (const r of this.reports.values()) {
      maxEpoch = Math.max(maxEpoch, r.epoch);
      allEmpty &&= r.empty;
    }
    if (this.reports.size === others && allEmpty && this.log.lastPoint().position === 0) {
      this.recovering = false;
      if (maxEpoch > this.epoch) this.epoch = maxEpoch;
      this.votedFor = this.cfg.id;
      this.persist();
      this.resetElectionTimer();
      return;
    }
    const needed = Math.floor(others / 2) + 1;
    if (
      this.role === this.followerRole() &&
      this.leaderId !== undefined &&
      this.reports.size >= needed &&
      this.epoch >= maxEpoch &&
      this.leaderCommitSeen > 0 &&
      this.leaderMatch >= this.leaderCommitSeen &&
      this.durable >= this.leaderCommitSeen &&
      this.log.epochAt(this.leaderCommitSeen) === this.epoch
    ) {
      this.recovering = false;
      this.votedFor ??= this.leaderId;
      this.persist();
    }
  }

  // ---- plumbing ----------------------------------------------------------------------

  private priorityOf(id: NodeId): number {
    return this.cfg.priorities?.[id] ?? 0;
  }

  private resetElectionTimer(): void {
    const { electionTimeoutMinMs: min, electionTimeoutMaxMs: max } = this.cfg;
    const spread = max - min;
    // A lower-priority node waits a whole extra spread per higher-priority voter, so an
    // equally up-to-date higher-priority node always stands first.
    this.electionDeadlineMs =
      this.nowMs + min + Math.floor(this.cfg.random() * spread) + this.priorityRank * spread;
  }

  private advanceClock(nowMs: number): void {
    if (nowMs > this.nowMs) this.nowMs = nowMs;
  }

  private setRole(role: Role, leaderId: NodeId | undefined): void {
    const changed = role !== this.role || leaderId !== this.leaderId;
    if (role !== "preCandidate" && role !== "candidate") this.voteRequest = undefined;
    this.role = role;
    this.leaderId = leaderId;
    if (changed || this.lastAnnouncedEpoch !== this.epoch) {
      this.lastAnnouncedEpoch = this.epoch;
      this.emit({ type: "roleChanged", role, epoch: this.epoch, leaderId });
    }
  }

  private setCommit(position: number): void {
    this.commit = position;
    this.emit({ type: "commit", position });
  }

  private persist(): void {
    const state: HardState = this.recovering
      ? { epoch: this.epoch, votedFor: this.votedFor, recovering: true }
      : { epoch: this.epoch, votedFor: this.votedFor };
    this.emit({ type: "persist", state });
  }

  private send(to: NodeId, message: Message<P>): void {
    this.emit({ type: "send", to, message });
  }

  private emit(effect: Effect<P>): void {
    this.out.push(effect);
  }

  private flush(): Effect<P>[] {
    const effects = this.out;
    this.out = [];
    return effects;
  }
}
