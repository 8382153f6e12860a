/**
 * `ReplicatedLog`: a node's log as the cluster sees it. The consensus core's wiring (cluster/)
 * depends on this interface only, never on the concrete store; `LogStore` implements it (a
 * cluster node's is created with `autoCommit: false`, so that consensus moves its commit
 * position). Record bytes are opaque here: what the cluster must know of them, record.ts tells.
 *
 * Positions are byte offsets of the log. A *boundary* is 0 or the end of an atomic batch (an
 * append's records, a tombstone, or an EPOCH record, which is always a batch of its own). The
 * batch is the unit of replication, so every commit and truncation point is a boundary.
 */
import type { StreamStore } from "../streams/types.js";

/** An EPOCH record of the log: the epoch's number and id, and where its record starts. */
export interface EpochEntry {
  readonly epochNumber: number;
  readonly epochId: string;
  readonly position: number;
}

/** Consensus hard state (see cluster/core/types.ts `HardState`). */
export interface StoredHardState {
  readonly epoch: number;
  readonly votedFor: string | undefined;
  /** Set while the node recovers from lost memory (it must go on recovering after a restart). */
  readonly recovering?: boolean;
  /** The voting members the node formed its cluster with (fixed from then on). */
  readonly voters?: readonly string[];
}

/** Whole batches read raw from a boundary (`ReplicatedLog.readRaw`). */
export interface RawBatches {
  /** The batches' bytes, starting at the boundary asked for. */
  readonly bytes: Buffer;
  /** Where the last batch ends (the boundary asked for when there is none). */
  readonly end: number;
  /** The end of every batch, ascending. */
  readonly batchEnds: readonly number[];
}

export interface ReplicatedLog {
  /** End of the log including writes still queued: where the next batch goes. */
  readonly endPosition: number;
  /** Everything below this position is durable (fsync'd); never above `endPosition`. */
  readonly durableEnd: number;
  /** Everything below this position is committed (readers see it); never above `durableEnd`. */
  readonly commitPosition: number;
  /** Raises the commit position to the boundary `position` <= `durableEnd` (else throws). */
  setCommitPosition(position: number): void;
  /** Number of the last epoch (its EPOCH record written or queued); 0 when there is none. */
  readonly lastEpoch: number;
  /** The epochs of the log (EPOCH records written or queued) and where they start, ascending. */
  epochs(): readonly EpochEntry[];
  /** Epoch of the record at `position`: the last EPOCH record's at or before it; 0 before any. */
  epochAt(position: number): number;
  /** Whether `position` is a boundary of this log (0, a batch end, or `endPosition`). */
  isRecordBoundary(position: number): boolean;
  /** The last boundary at or below `position` (0 when none; `endPosition` beyond it). */
  lastBoundaryAtOrBefore(position: number): number;
  /**
   * Synchronously, whole batches (committed or not, queued ones too) from the boundary
   * `fromPosition`: at least one if there is any, then more while within `maxBytes`.
   */
  readRaw(fromPosition: number, maxBytes: number): RawBatches;
  /**
   * Appends whole batches of a leader's raw bytes at `position` = `endPosition`; throws at
   * once, changing nothing, unless they are sound and continue this log. Resolves on commit.
   * `crcVerified`: the caller has verified every record's CRC in exactly these bytes
   * (`checkRecord`), so it is not computed again; framing and payloads are still checked.
   */
  appendRaw(position: number, bytes: Uint8Array, crcVerified?: boolean): Promise<void>;
  /**
   * Cuts the log back to the boundary `position` (never below `commitPosition`); the writes
   * beyond it reject with an error `isTruncatedError` recognises.
   */
  truncate(position: number): Promise<void>;
  /** Persists the consensus hard state atomically; resolves once it is durable. */
  writeHardState(state: StoredHardState): Promise<void>;
  /** The last hard state written, or null when none was (a new or in-memory log). */
  readHardState(): Promise<StoredHardState | null>;
  /**
   * Calls `listener` with the new durable end after each sync (never beyond a truncation in
   * progress); returns the function that unsubscribes it.
   */
  onDurable(listener: (durableEnd: number) => void): () => void;
  /**
   * Asked before each sync: true delays it one turn of the event loop (a leader sends to its
   * followers first). undefined removes it.
   */
  setSyncGate(gate: (() => boolean) | undefined): void;
  /** While `offLoop()` says so, every sync runs off the event loop. undefined removes it. */
  setSyncOffLoop(offLoop: (() => boolean) | undefined): void;
  /**
   * Rejects with `err`, now, every uncommitted write (durable or still being written and
   * synced) and every wait for a commit (this node stopped leading: their outcome is
   * unknown); the records stay.
   */
  abandonUncommitted(err: Error): void;
  /**
   * Only these are part of this contract: `storageFull` (writes are refused until space is
   * freed) and `syncRunningMs` (how long the sync in flight has been running; 0 when none is).
   */
  stats(): { readonly storageFull: boolean; readonly syncRunningMs: number };
}

/**
 * What a cluster node runs on: one store that is both the `StreamStore` taking client appends
 * (on the leader) and the `ReplicatedLog` the cluster replicates.
 */
export type ReplicatedStore = ReplicatedLog & StreamStore;

/** Every member of `ReplicatedLog` and what `typeof` gives for it (complete by construction). */
const MEMBERS: { readonly [K in keyof ReplicatedLog]-?: "number" | "function" } = {
  endPosition: "number",
  durableEnd: "number",
  commitPosition: "number",
  setCommitPosition: "function",
  lastEpoch: "number",
  epochs: "function",
  epochAt: "function",
  isRecordBoundary: "function",
  lastBoundaryAtOrBefore: "function",
  readRaw: "function",
  appendRaw: "function",
  truncate: "function",
  writeHardState: "function",
  readHardState: "function",
  onDurable: "function",
  setSyncGate: "function",
  setSyncOffLoop: "function",
  abandonUncommitted: "function",
  stats: "function",
};

/** Whether `store` has every member of `ReplicatedLog` (a store given to a cluster node must). */
export function isReplicatedLog<T extends object>(store: T): store is T & ReplicatedLog {
  const members = store as Record<string, unknown>;
  return Object.entries(MEMBERS).every(([name, kind]) => typeof members[name] === kind);
}

/** Whether `err` rejected a write that `truncate` cut off (storage's `TruncatedError`). */
export function isTruncatedError(err: unknown): boolean {
  return err instanceof Error && err.name === "TruncatedError";
}
