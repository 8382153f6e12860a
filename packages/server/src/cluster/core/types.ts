/**
 * Types of the consensus core: log points, the abstract log the core reads, the messages
 * nodes exchange, and the effects the core asks its driver to perform.
 *
 * The core is Raft in event-store words: an epoch is a term, a position is a byte offset
 * in the log (a record boundary), and `(epoch, position)` names a log point: the end of
 * the record that ends at `position`, written in `epoch`. Position 0 with epoch 0 is the
 * empty log.
 */

export type NodeId = string;

export interface LogPoint {
  readonly epoch: number;
  readonly position: number;
}

export const ORIGIN: LogPoint = { epoch: 0, position: 0 };

/** Compares log points by up-to-dateness: epoch first, then position. */
export function comparePoints(a: LogPoint, b: LogPoint): number {
  return a.epoch !== b.epoch ? a.epoch - b.epoch : a.position - b.position;
}

/**
 * One record of the replicated log. `position` is where it starts, so it ends at
 * `position + length`; positions are byte offsets, not indexes. The payload is opaque to
 * the core (raw record bytes in the node, an identity string in the simulation).
 */
export interface LogRecord<P> {
  readonly epoch: number;
  readonly position: number;
  readonly length: number;
  readonly kind: "epoch" | "data";
  readonly payload: P;
}

/** A record handed to `propose`: the leader assigns epoch and position. */
export interface NewRecord<P> {
  readonly length: number;
  readonly payload: P;
}

/**
 * The local log as the core sees it. The driver applies the core's `append` / `truncate`
 * effects to it before delivering the next input, so between inputs it reflects every
 * effect returned so far.
 */
export interface LogView<P> {
  /** The last point, or ORIGIN for an empty log. */
  lastPoint(): LogPoint;
  /** Epoch of the record ending at `position` (0 for position 0); undefined if no boundary. */
  epochAt(position: number): number | undefined;
  /** The last boundary whose epoch <= `epoch` and position <= `position` (ORIGIN if none). */
  lastPointAtOrBefore(epoch: number, position: number): LogPoint;
  /** Records starting at boundary `fromPosition`, at least one if any, about `maxBytes`. */
  read(fromPosition: number, maxBytes: number): readonly LogRecord<P>[];
  /** Everything below this position is durable (fsync'd). */
  durableEnd(): number;
}

/** Must be durable before any effect that follows a `persist` effect is performed. */
export interface HardState {
  readonly epoch: number;
  readonly votedFor: NodeId | undefined;
  /** Recovering from lost memory (see `CoreInit.amnesiac`); survives restarts until done. */
  readonly recovering?: boolean;
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader" | "learner";

export interface PreVoteMessage {
  readonly type: "PreVote";
  /** The epoch the sender would stand in (its epoch + 1); nothing is bumped. */
  readonly epoch: number;
  readonly last: LogPoint;
}

export interface VoteMessage {
  readonly type: "Vote";
  readonly epoch: number;
  readonly last: LogPoint;
  /** Set when standing after `TimeoutNow`: voters ignore their leader lease. */
  readonly transfer: boolean;
}

export interface VoteReplyMessage {
  readonly type: "VoteReply";
  /** The epoch the vote (or pre-vote) was asked for. */
  readonly epoch: number;
  readonly preVote: boolean;
  readonly granted: boolean;
  /** The voter's own epoch, so a stale candidate learns it is behind. */
  readonly voterEpoch: number;
  /**
   * The voter's last log point. A node recovering from lost memory (see
   * `CoreInit.amnesiac`) probes with pre-votes and learns from these whether the cluster
   * has a history. Absent from older senders.
   */
  readonly voterLast?: LogPoint;
}

export interface AppendMessage<P> {
  readonly type: "Append";
  readonly epoch: number;
  readonly prev: LogPoint;
  readonly records: readonly LogRecord<P>[];
  readonly leaderCommit: number;
}

export type AppendReplyMessage =
  | {
      readonly type: "AppendReply";
      readonly epoch: number;
      readonly ok: true;
      /** The follower's log matches the leader's up to this point. */
      readonly match: LogPoint;
      /** Durable end of the follower, at most `match.position`. */
      readonly durableEnd: number;
      /**
       * The follower's storage is full: it took no records (the driver strips them) and wants
       * none until a reply without this; its leader sends it heartbeats only meanwhile.
       */
      readonly storageFull?: boolean;
    }
  | {
      readonly type: "AppendReply";
      readonly epoch: number;
      readonly ok: false;
      /** The follower's last point at or before the rejected `prev` (epoch, then position). */
      readonly hint: LogPoint;
    };

export interface TimeoutNowMessage {
  readonly type: "TimeoutNow";
  readonly epoch: number;
}

export type Message<P> =
  | PreVoteMessage
  | VoteMessage
  | VoteReplyMessage
  | AppendMessage<P>
  | AppendReplyMessage
  | TimeoutNowMessage;

/**
 * Effects, to be performed in order. `persist` is a barrier: the hard state must be
 * durable before any later effect (notably a `send`) is performed.
 */
export type Effect<P> =
  | { readonly type: "persist"; readonly state: HardState }
  | { readonly type: "send"; readonly to: NodeId; readonly message: Message<P> }
  | { readonly type: "append"; readonly records: readonly LogRecord<P>[] }
  | { readonly type: "truncate"; readonly position: number }
  | { readonly type: "commit"; readonly position: number }
  | {
      readonly type: "roleChanged";
      readonly role: Role;
      readonly epoch: number;
      readonly leaderId: NodeId | undefined;
    };

export type ProposeResult<P> =
  | { readonly ok: true; readonly points: readonly LogPoint[]; readonly effects: Effect<P>[] }
  | {
      readonly ok: false;
      readonly reason: "not-leader";
      readonly leaderId: NodeId | undefined;
      readonly effects: Effect<P>[];
    };

export interface CoreConfig<P> {
  readonly id: NodeId;
  readonly voters: readonly NodeId[];
  /** Non-voting read replicas: replicated to, never counted, never standing. */
  readonly learners: readonly NodeId[];
  /** Higher stands first among equally up-to-date nodes; default 0. */
  readonly priorities?: Readonly<Record<NodeId, number>>;
  readonly electionTimeoutMinMs: number;
  readonly electionTimeoutMaxMs: number;
  readonly heartbeatMs: number;
  /** About this many record bytes per Append (a single larger record goes alone). */
  readonly maxBatchBytes: number;
  /**
   * At most this many bytes sent to a peer and not yet acknowledged by it (a lagging or
   * slow follower is fed as it acknowledges, not faster). Default 4 × maxBatchBytes.
   */
  readonly maxInFlightBytes?: number;
  /** Uniform in [0, 1); the core's only source of randomness. */
  readonly random: () => number;
  /** Builds the EPOCH record a new leader writes first. */
  readonly epochRecord: (epoch: number, leaderId: NodeId) => NewRecord<P>;
  /** Deliberately broken rules, for proving the simulation's checkers can fail. */
  readonly testingBrokenVoteRule?: "vote-twice" | "ignore-log";
}

export interface CoreInit {
  readonly hardState: HardState;
  /** A commit position known from before a restart (never above the durable end). */
  readonly commitPosition: number;
  readonly nowMs: number;
  /**
   * The node may have lost its log and hard state (an in-memory node that restarted, or a
   * node whose data directory is new). It may have voted and acknowledged records it no
   * longer remembers, so it neither votes, stands nor counts toward a majority until it has
   * recovered: either a leader whose epoch is at least every epoch reported by a majority
   * of the other voters brought it up to that leader's commit position, or every other
   * voter reported an empty log (a brand-new cluster). Default false.
   */
  readonly amnesiac?: boolean;
}
