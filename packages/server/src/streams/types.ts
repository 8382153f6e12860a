/**
 * The contract between the node's API layer and its storage. One interface,
 * several implementations: the on-disk log (`--db`), the in-memory log
 * (`--mem-db`), and later a shared PostgreSQL database.
 *
 * Positions are log positions (byte offsets of an event's record in the log,
 * or an equivalent strictly increasing number); revisions count a stream's
 * events from 0. Both are plain numbers (exact below 2^53).
 *
 * Visibility: readers (reads, subscriptions) only ever see the committed
 * prefix of the log: events whose position is below `commitPosition`. On a
 * single node, an append is committed once it is fsync'd; in a cluster the
 * consensus layer decides (see `StreamStore.commitPosition`).
 */

export type ExpectedVersion =
  | { kind: "any" }
  | { kind: "no_stream" }
  | { kind: "stream_exists" }
  | { kind: "exact"; revision: number };

export interface NewEvent {
  /** Canonical UUID text, validated before it reaches the store. */
  id: string;
  /**
   * `id`'s 16 bytes as a latin1 string, when the caller has parsed it already (the API layer
   * does, to name a bad id in its answer): the log store does not parse it a second time.
   */
  idKey?: string;
  type: string;
  isJson: boolean;
  data: Uint8Array;
  metadata: Uint8Array;
}

export interface StoredEvent {
  streamId: string;
  revision: number;
  position: number;
  id: string;
  type: string;
  isJson: boolean;
  data: Uint8Array;
  metadata: Uint8Array;
  /** Milliseconds since the Unix epoch when the event was written. */
  createdMs: number;
}

export interface WrongExpectedVersionInfo {
  streamExists: boolean;
  /** Last revision of the stream; meaningless when streamExists is false. */
  actualRevision: number;
}

export type WriteResult =
  | { ok: true; nextExpectedVersion: number; position: number }
  | { ok: false; wrongExpectedVersion: WrongExpectedVersionInfo };

export type StoreErrorCode =
  | "STREAM_NOT_FOUND"
  | "STREAM_DELETED"
  | "INVALID_ARGUMENT"
  | "STORE_CLOSED"
  | "CORRUPTED"
  /** The disk is full: the write was not made; writes resume by themselves once space is freed. */
  | "STORAGE_FULL"
  /**
   * A log write or sync failed for another reason (EIO, ...): the store refuses writes until
   * the node is restarted (after a failed fsync the page cache cannot be trusted); reads go on.
   */
  | "IO_FAILED"
  /**
   * The storage cannot be reached for now (a shared database restarting or failing over): the
   * operation was not done, or its outcome is unknown; a retry (idempotent for appends) may
   * succeed here or on another instance.
   */
  | "UNAVAILABLE";

/** An error the store raises on purpose; anything else is a bug or an I/O failure. */
export class StoreError extends Error {
  override readonly name = "StoreError";
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    readonly streamId?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * A write the store had taken (its records placed in the log) failed on the disk (STORAGE_FULL
 * or IO_FAILED). On a single node it was not made (unless the message says its outcome is
 * unknown); in a replicated log its records may already have reached other nodes, so there its
 * outcome is unknown until the next leader decides it.
 */
export class FailedWriteError extends StoreError {}

export interface StreamMetadata {
  maxCount?: number;
  maxAgeSec?: number;
  truncateBefore?: number;
  acl?: unknown;
  /** Any other keys the user stored. */
  [key: string]: unknown;
}

export type Direction = "forwards" | "backwards";

/**
 * Why a read was dropped before its turn came: its caller left (a connection closed, a
 * subscription ended). There is nobody left to tell, so the API layers neither answer nor
 * log it.
 */
export class ReaderGone extends Error {
  override readonly name = "ReaderGone";
}

export interface ReadStreamOptions {
  direction: Direction;
  /** Inclusive. "end": the last event (backwards) / after the last (forwards). */
  fromRevision: number | "end";
  maxCount: number;
  /**
   * Bytes of events (`eventBytes`) the page holds at most: it ends before the event that would
   * take it past them, and always holds one (page-bytes.ts). Default READ_PAGE_BYTES.
   */
  maxBytes?: number; /**
   * The caller has gone (its connection closed, its subscription ended): a read that still
   * waits for its turn (api/read-gate.ts) is dropped and rejects with the signal's reason. A
   * read that has started completes.
   */
  signal?: AbortSignal;
}

export interface ReadStreamResult {
  events: StoredEvent[];
  /** Where the next page starts (same direction). */
  nextRevision: number;
  /** True when no further event exists in this direction right now. */
  endOfStream: boolean;
  /** Last revision of the stream. */
  lastRevision: number;
}

export interface ReadAllOptions {
  direction: Direction;
  /** Forwards: inclusive. Backwards: exclusive. "end": the committed end of the log. */
  fromPosition: number | "end";
  maxCount: number;
  /**
   * Only events for which this returns true are returned (scanning continues). It decides on an
   * event's stream, type and position: a store may hand it a large event before reading its data.
   */
  filter?: (event: StoredEvent) => boolean;
  /** Upper bound of records examined in one call, so a selective filter cannot stall a caller. */
  maxScan?: number;
  /** As ReadStreamOptions.maxBytes: bytes of the events returned (page-bytes.ts). */
  maxBytes?: number; /** As ReadStreamOptions.signal. */
  signal?: AbortSignal;
}

export interface ReadAllResult {
  events: StoredEvent[];
  /** Forwards: the position to pass as fromPosition for the next page; backwards likewise (exclusive). */
  nextPosition: number;
  /** True when the read reached the committed end (forwards) or the start (backwards). */
  endOfStream: boolean;
  /** Records examined (matching or not); filtered reads report it, for checkpoint intervals. */
  scanned?: number;
}

export interface StoreStats {
  events: number;
  streams: number;
  /** Bytes of log on disk (0 in memory). */
  logBytes: number;
  commitPosition: number;
  /** How long the log sync in flight has been running, in ms (0 when none is; absent: no log syncs). */
  syncRunningMs?: number;
  /** Why writes are refused until the node is restarted (a failed log write); absent otherwise. */
  writesRefused?: string;
  /**
   * Times slow synchronous reads of the log sent stream reads to the thread pool for a while
   * (storage/sync-read-gate.ts): the disk was read, not the page cache. Absent: no log file.
   */
  slowReadPauses?: number;
}

export interface StreamStore {
  /** Recovers (verifies the log, truncates a torn tail, rebuilds the index) and opens for writing. */
  open(): Promise<void>;
  /** Finishes queued writes, fsyncs, writes an index snapshot, releases files. Idempotent. */
  close(): Promise<void>;

  /**
   * Appends events atomically. Resolves once the events are durable (single node: fsync'd).
   * Expected-version checks see every append queued before this one.
   * Idempotent: when the event ids match events already written at the expected place, resolves
   * with the original result (also after a restart).
   * Throws StoreError STREAM_DELETED for a hard-deleted stream.
   */
  append(streamId: string, expected: ExpectedVersion, events: NewEvent[]): Promise<WriteResult>;

  /** Soft delete (stream can be recreated; revisions continue) or hard delete (tombstone, forever). */
  delete(streamId: string, expected: ExpectedVersion, hard: boolean): Promise<WriteResult>;

  /** Throws StoreError STREAM_NOT_FOUND / STREAM_DELETED. Applies maxCount / maxAgeSec / truncateBefore. */
  readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult>;

  readAll(options: ReadAllOptions): Promise<ReadAllResult>;

  /** Current metadata of a stream (from its `$$stream` metadata stream), or null. */
  getMetadata(streamId: string): Promise<StreamMetadata | null>;

  /** Everything below this position is committed and visible to readers. */
  readonly commitPosition: number;

  /** Called (synchronously, after the commit position moved) whenever new events became visible. */
  onCommit(listener: (commitPosition: number) => void): () => void;

  stats(): StoreStats;
}
