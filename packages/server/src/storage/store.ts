/**
 * The StreamStore over a Log: appends with expected versions and idempotency, group commit,
 * reads, deletes, metadata, recovery. The same code runs over the disk and the memory log.
 */
import { randomUUID } from "node:crypto";
import { setImmediate as setImmediatePromise } from "node:timers/promises";
import { crc32c } from "@node-rs/crc32";
import { METADATA_EVENT_TYPE, isMetadataStream, isUuid, metadataStreamOf } from "@chorus/protocol";
import { turnIfDue } from "../fair-turns.js";
import { assertNotTombstoned, decideDelete } from "../streams/deletes.js";
import { invalid } from "../streams/errors.js";
import { checkExpectedVersion, wrongExpectedVersion } from "../streams/expected-version.js";
import {
  decideFromIdIndex,
  decideFromRecentIds,
  decideFromStream,
  findsRetriesById,
  type StoredId,
} from "../streams/idempotency.js";
import {
  metadataOfAppend,
  metadataTarget,
  parseMetadata,
  targetOfMetadataStream,
} from "../streams/metadata.js";
import {
  validateExpectedVersion,
  validateNewEvents,
  validateReadAllOptions,
  validateReadStreamOptions,
  validateStreamId,
} from "../streams/validate.js";
import { PageBytes, READ_PAGE_BYTES } from "../streams/page-bytes.js";
import { ABSENT_STREAM, type StreamView } from "../streams/view.js";
import {
  planStreamRead,
  readableRange,
  visibleInAll,
  withinMaxAge,
} from "../streams/visibility.js";
import {
  FailedWriteError,
  StoreError,
  type Direction,
  type ExpectedVersion,
  type NewEvent,
  type ReadAllOptions,
  type ReadAllResult,
  type ReadStreamOptions,
  type ReadStreamResult,
  type StoreStats,
  type StoredEvent,
  type StreamMetadata,
  type StreamStore,
  type WriteResult,
} from "../streams/types.js";
import { RECOVERY_ADVICE, silentLogger, type Log, type Logger } from "./log.js";
import {
  EVENT_PREV_POSITION_OFFSET,
  MAX_RECORD_BYTES,
  MIN_RECORD_BYTES,
  RECORD_TRAILER_BYTES,
  checkRecord,
  copyBytes,
  decodeCheckedRecord as decodeGeneric,
  decodeStoredEvent,
  decodeEpoch,
  encodeEpoch,
  encodeEvent,
  encodeTombstone,
  isBatchEndAt,
  keyToUuid,
  summarizeEvent,
  uuidToKey,
  type EventRecord,
  type EventSummary,
  type LogRecord,
  type RecordProblem,
  RecordType,
} from "./record.js";
import { IdempotencyWindow } from "./recent-ids.js";
import { SyncReadGate } from "./sync-read-gate.js";
import type { EpochEntry, ReplicatedLog, StoredHardState } from "./replicated-log.js";
import { MemoryKv, type Kv } from "./index/kv.js";
import { LogIndex, type EventIdHit } from "./index/log-index.js";
import {
  SPARSE_EVERY,
  StreamCache,
  StreamState,
  writeView,
  type StreamCacheOptions,
} from "./index/stream-cache.js";

/** Recent event ids cached in memory in front of the event-id index (not a bound of idempotency). */
export const DEFAULT_IDEMPOTENCY_WINDOW = 100_000;
export const DEFAULT_MAX_SCAN = 100_000;
/** The durable end and the commit position reach the checkpoint file within this. */
export const DEFAULT_CHECKPOINT_EVERY_MS = 100;
/** With a full disk, how often the store looks for free space again. */
export const DEFAULT_STORAGE_FULL_PROBE_EVERY_MS = 1000;
/** Writes resume once this much space is free (or the failed write's size, if larger). */
const STORAGE_FULL_RESUME_BYTES = 64 * 1024;
const READ_BLOCK_BYTES = 256 * 1024;
const RECOVERY_BLOCK_BYTES = 8 * 1024 * 1024;
/** Compared against, a piece at a time, to find the zeros past the end of a log. */
const ZERO_BLOCK = Buffer.alloc(64 * 1024);
/** The smallest unit a disk writes whole: what a power loss tears the last write into. */
const SECTOR_BYTES = 512;
const RECORD_PROBE_BYTES = 4096;
/** Batch ends remembered for cheap boundary checks (older ones are checked on the log). */
const RECENT_BOUNDARIES = 65_536;

/** decodeCheckedRecord, with EPOCH records decoded (null when their payload is bad). */
function decodeCheckedRecord(
  buf: Buffer,
  at: number,
  length: number,
  copy: boolean,
): LogRecord | null {
  const rec = decodeGeneric(buf, at, length, copy);
  if (rec?.kind !== "other" || rec.type !== RecordType.EPOCH) return rec;
  return decodeEpoch(rec);
}
const RAW_READ_BLOCK_BYTES = 64 * 1024;

/** Rejection of a write that a `truncate` cut off before it was committed. */
export class TruncatedError extends Error {
  override readonly name = "TruncatedError";
}

/** Index of the last element of the ascending `list` that is <= `value`, or -1. */
function lastAtOrBelow(list: readonly number[], value: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((list[mid] as number) <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * A stream read walks the log through its events' positions: down through the back-links, and
 * up again when a forward page is cut. Each log read fetches a block around the record it
 * needs: STREAM_READ_BLOCK_BYTES at first, then twice as much each time the walk's next record
 * lies within STREAM_READ_BLOCK_BYTES of the block before, up to MAX_STREAM_READ_BLOCK_BYTES.
 * A stream written in runs (a batch, one writer) is read in a few large reads, as `$all` is
 * (2 KB events: 3x the events per second of 16 KB reads); one whose events lie far apart
 * costs a small read per event, never a large one: after a hop that was not dense, a block of
 * SPARSE_STREAM_READ_BLOCK_BYTES, about the record alone (an aggregate's events written among
 * other streams' read about 1.3x faster than with 16 KB blocks).
 */
const STREAM_READ_BLOCK_BYTES = 16 * 1024;
const SPARSE_STREAM_READ_BLOCK_BYTES = 4 * 1024;
const MAX_STREAM_READ_BLOCK_BYTES = 256 * 1024;

/** The log bytes of a stream read, in blocks (see STREAM_READ_BLOCK_BYTES). */
class StreamWalkReader {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  private block = STREAM_READ_BLOCK_BYTES;
  /** The bytes `bytes` last returned came from `Log.readHeld` (their CRCs need no check). */
  held = false;

  constructor(
    private readonly log: Log,
    private readonly limit: number,
    /** Whether a block not held in memory is read synchronously (sync-read-gate.ts). */
    private readonly syncReads: SyncReadGate,
  ) {}

  /**
   * `length` bytes at `position` (fewer at the limit). `direction`: where the walk goes next,
   * so the block read holds the records it needs next too: below `position` going backwards,
   * above it going forwards.
   */
  async bytes(position: number, length: number, direction: Direction): Promise<Buffer> {
    const end = Math.min(position + length, this.limit);
    if (end <= position) return Buffer.alloc(0);
    const bufEnd = this.start + this.buf.length;
    if (position >= this.start && end <= bufEnd) {
      return this.buf.subarray(position - this.start, end - this.start);
    }
    // The walk's next record starts within STREAM_READ_BLOCK_BYTES of the block it read: the
    // stream is dense here, and a larger block holds about as many bytes of its events.
    const dense =
      direction === "backwards"
        ? position < this.start && this.start - position <= STREAM_READ_BLOCK_BYTES
        : position >= bufEnd - RECORD_PROBE_BYTES && position - bufEnd <= STREAM_READ_BLOCK_BYTES;
    this.block = dense
      ? Math.min(this.block * 2, MAX_STREAM_READ_BLOCK_BYTES)
      : this.buf.length === 0
        ? STREAM_READ_BLOCK_BYTES
        : SPARSE_STREAM_READ_BLOCK_BYTES;
    let blockStart: number;
    let blockEnd: number;
    if (direction === "backwards") {
      blockEnd = Math.min(this.limit, Math.max(end, position + RECORD_PROBE_BYTES));
      blockStart = Math.max(0, Math.min(position, blockEnd - this.block));
    } else {
      blockStart = position;
      blockEnd = Math.min(this.limit, Math.max(end, position + this.block));
    }
    // A walk's blocks mostly come without waiting for I/O: give the event loop a turn now and then.
    const due = turnIfDue();
    if (due !== undefined) await due;
    const blockBytes = blockEnd - blockStart;
    const held = this.log.readHeld(blockStart, blockBytes);
    this.held = held !== undefined;
    this.buf =
      held ??
      (this.syncReads.open
        ? this.syncReads.read(() => this.log.readSync(blockStart, blockBytes))
        : await this.log.read(blockStart, blockBytes));
    this.start = blockStart;
    return this.buf.subarray(
      position - blockStart,
      Math.max(position - blockStart, Math.min(end - blockStart, this.buf.length)),
    );
  }
}

export interface LogStoreOptions {
  logger?: Logger;
  /**
   * Recent event ids kept in memory (with their streams) in front of the event-id index: an
   * in-memory cache, not a bound of idempotency.
   */
  idempotencyWindow?: number;
  /**
   * The engine of the log's index (every stream's state, every event id; `index/`). Default:
   * in memory (`MemoryKv`); `createDiskStore` gives LMDB on disk.
   */
  index?: Kv;
  /** Stream states kept in memory, the index's working set (default 100,000). */
  streamCache?: number;
  /** How the index is written in the background (tests). */
  indexFlush?: Pick<StreamCacheOptions, "flushEntries" | "flushEveryMs">;
  /**
   * true (single node): an append is committed as soon as it is fsync'd. false (cluster): the
   * consensus layer moves the commit position with setCommitPosition().
   */
  autoCommit?: boolean;
  /**
   * How far the checkpoint (the durable end and the commit position; a page-cache write, no
   * fsync) may lag: it is written after a group commit or a commit move once this long has
   * passed since its last write, else by a timer when it has.
   */
  checkpointEveryMs?: number;
  /**
   * After a write failed for want of space (ENOSPC), writes are refused with STORAGE_FULL and
   * the free space is looked at this often; writes resume by themselves once there is room.
   */
  storageFullProbeEveryMs?: number;
  /** Clock for createdMs and maxAgeSec (ms since the epoch). */
  nowMs?: () => number;
  /** Told how long each log sync of the write loop took, in seconds (metrics). */
  onSync?: (seconds: number) => void;
}

export interface LogStoreStats extends StoreStats {
  /** Number of log syncs (fsyncs on disk) done since open. */
  syncs: number;
  /** End of the log including appends still queued. */
  reservedPosition: number;
  durablePosition: number;
  idempotencyWindowSize: number;
  /** Stream states held in memory (the cache of the index, plus streams with changes in flight). */
  cachedStreams: number;
  /** Every committed record below this position is in the persisted index. */
  indexedPosition: number;
  /** The commit position last written to the checkpoint file (what a restart would see). */
  checkpointedCommitPosition: number;
  /** Writes are refused because the disk is full (they resume once space is freed). */
  storageFull: boolean;
  /** How long the write loop's sync in flight has been running, in ms; 0 when none is. */
  syncRunningMs: number;
}

interface PendingWrite {
  start: number;
  data: Buffer;
  end: number;
  /** Applies the write to the committed view. */
  apply: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface CommitWaiter {
  position: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

type Phase = "new" | "open" | "closing" | "closed";

/** A recovered batch above the commit position: its committed-view update, run at commit. */
interface PendingBatch {
  end: number;
  apply: () => void;
}

interface IndexedRecord {
  rec: LogRecord | EventSummary;
  position: number;
  /** An event's stream, set by `indexBatch` for the commit. */
  state: StreamState | undefined;
}

/** The settlement of a write nobody awaits (see `appendRaw`). */
const NOOP = (): void => undefined;

function toStored(rec: EventRecord, position: number): StoredEvent {
  return {
    streamId: rec.streamId,
    revision: rec.revision,
    position,
    id: keyToUuid(rec.idKey),
    type: rec.type,
    isJson: rec.isJson,
    data: rec.data,
    metadata: rec.metadata,
    createdMs: rec.createdMs,
  };
}

/** A position something durable reaches, what reaches it, and what data that makes missing. */
type Reached = readonly [position: number, what: string, data: "durable" | "committed"];

/** Refuses to open a log that ends before a position something durable reaches. */
function refuseEndBefore(end: number, zerosAfter: boolean, reached: readonly Reached[]): void {
  for (const [position, what, data] of reached) {
    if (position > end) {
      throw new StoreError(
        "CORRUPTED",
        `log ends at ${end}${zerosAfter ? " (only zeros after it)" : ""}, before ${what}: ` +
          `${data} data is missing. ${RECOVERY_ADVICE}`,
      );
    }
  }
}

/**
 * Visits the valid records of one block read at `pos`. Either the scan is finished
 * (`done`: `visit` said stop, or a problem at a position), or it goes on at `position`,
 * reading `nextWant` bytes next when a record is larger than the block. `held`: the block
 * came from `Log.readHeld` (framing checked, not CRCs).
 */
function scanBlock(
  buf: Buffer,
  pos: number,
  limit: number,
  visit: (buf: Buffer, at: number, length: number, position: number) => boolean,
  held = false,
): {
  done?: { position: number; problem?: RecordProblem };
  position: number;
  nextWant?: number;
} {
  let off = 0;
  while (off < buf.length) {
    const c = checkRecord(buf, off, held);
    if (!c.ok) {
      if (c.problem === "short" && pos + buf.length < limit) break;
      return { done: { position: pos + off, problem: c.problem }, position: pos + off };
    }
    const more = visit(buf, off, c.length, pos + off);
    off += c.length;
    if (!more) return { done: { position: pos + off }, position: pos + off };
  }
  if (off === 0) {
    // A record larger than the block: read exactly that record next.
    const length = buf.length >= 4 ? buf.readUInt32LE(0) : 0;
    if (length <= buf.length || pos + length > limit) {
      return { done: { position: pos, problem: "short" }, position: pos };
    }
    return { position: pos, nextWant: length };
  }
  return { position: pos + off };
}

export class LogStore implements StreamStore, ReplicatedLog {
  private readonly logger: Logger;
  private readonly autoCommit: boolean;
  private readonly nowMs: () => number;
  private readonly window: IdempotencyWindow;
  private readonly index: LogIndex;
  /** The index's working set: stream states, and what is not persisted yet. */
  private readonly streams: StreamCache;
  /** Whether stream reads read the log file synchronously (sync-read-gate.ts). */
  private readonly syncReads = new SyncReadGate();

  private phase: Phase = "new";
  private eventCount = 0;
  private streamCount = 0;
  private syncCount = 0;
  private syncGate: (() => boolean) | undefined;
  /** When the write loop's sync in flight started (performance.now()); null when none is. */
  private syncStartMs: number | null = null;
  private syncOffLoop: (() => boolean) | undefined;
  private readonly onSync: ((seconds: number) => void) | undefined;

  private reserveEnd = 0;
  private durablePos = 0;
  private commitPos = 0;

  private queue: PendingWrite[] = [];
  private awaitingCommit: PendingWrite[] = [];
  private commitWaiters: CommitWaiter[] = [];
  private writer: Promise<void> | null = null;
  /** A write or sync failed for another reason than space: writes are refused for good. */
  private failure: Error | null = null;
  /** A write failed for want of space: writes are refused until the probe finds room. */
  private full: StoreError | null = null;
  private readonly storageFullProbeEveryMs: number;
  private spaceProbeTimer: NodeJS.Timeout | null = null;
  private readonly listeners = new Set<(commitPosition: number) => void>();
  private readonly durableListeners = new Set<(durableEnd: number) => void>();
  /** The batch being written and synced (its bytes may not be in the log yet). */
  private inFlight: PendingWrite[] = [];
  /** Epochs of the write view (EPOCH records reserved so far), ascending. */
  private epochList: EpochEntry[] = [];
  /** Ends of recent batches, ascending, contiguous up to reserveEnd. */
  private recentEnds: number[] = [];
  /** Target of a truncation in progress. */
  private truncating: number | null = null;

  private background = new Set<Promise<void>>();
  private checkpointInFlight = false;
  private readonly checkpointEveryMs: number;
  private checkpointTimer: NodeJS.Timeout | null = null;
  /** When the last lazy checkpoint write started (performance.now()). */
  private checkpointAtMs = -Infinity;
  /** Durable end and commit position of the last checkpoint write (page cache, maybe not durable). */
  private checkpointedDurable = 0;
  private checkpointedCommit = 0;

  constructor(
    private readonly log: Log,
    options: LogStoreOptions = {},
  ) {
    this.logger = options.logger ?? silentLogger;
    this.autoCommit = options.autoCommit ?? true;
    this.checkpointEveryMs = options.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS;
    if (!(this.checkpointEveryMs >= 0)) throw new RangeError("checkpointEveryMs must be >= 0");
    this.storageFullProbeEveryMs =
      options.storageFullProbeEveryMs ?? DEFAULT_STORAGE_FULL_PROBE_EVERY_MS;
    if (!(this.storageFullProbeEveryMs > 0))
      throw new RangeError("storageFullProbeEveryMs must be > 0");
    this.nowMs = options.nowMs ?? Date.now;
    this.onSync = options.onSync;
    const capacity = options.idempotencyWindow ?? DEFAULT_IDEMPOTENCY_WINDOW;
    if (!Number.isSafeInteger(capacity) || capacity < 0)
      throw new RangeError("idempotencyWindow must be an integer >= 0");
    this.window = new IdempotencyWindow(capacity);
    this.index = new LogIndex(options.index ?? new MemoryKv());
    this.streams = new StreamCache(
      this.index,
      () => ({
        commit: this.commitPos,
        events: this.eventCount,
        streams: this.streamCount,
        epochs: this.epochList,
      }),
      {
        ...options.indexFlush,
        ...(options.streamCache !== undefined ? { capacity: options.streamCache } : {}),
        logger: this.logger,
      },
    );
  }

  // ------------------------------------------------------------------ lifecycle

  async open(): Promise<void> {
    if (this.phase === "open") return;
    if (this.phase === "closing") throw new StoreError("STORE_CLOSED", "store is closing");
    this.streams.reset();
    this.window.clear();
    this.eventCount = 0;
    this.streamCount = 0;
    this.syncCount = 0;
    this.failure = null;
    this.full = null;
    this.queue = [];
    this.awaitingCommit = [];
    this.commitWaiters = [];
    this.inFlight = [];
    this.epochList = [];
    this.recentEnds = [];
    this.truncating = null;
    const started = performance.now();
    await this.log.open();
    let recovered: { commit: number; pending: PendingBatch[]; syncedUpTo: number };
    try {
      if (!(await this.index.open()))
        this.logger.warn({}, "the index has another format; rebuilding it from the log");
      recovered = await this.recover();
      // A process that crashed after a write and before its fsync left those bytes in the
      // page cache only: make them durable before reporting them durable (or committed).
      await this.log.syncFrom(recovered.syncedUpTo);
    } catch (err) {
      await this.streams.stop();
      await this.index
        .close()
        .catch((closeErr: unknown) => this.logger.warn({ err: closeErr }, "closing the index"));
      await this.log.close();
      throw err;
    }
    this.reserveEnd = this.durablePos = this.log.end;
    this.commitPos = recovered.commit;
    // The recovered tail above the commit position: durable, not yet committed.
    for (const b of recovered.pending) this.awaitingCommit.push(pendingWrite(b));
    this.checkpointedCommit = this.commitPos;
    this.checkpointedDurable = this.durablePos;
    this.phase = "open";
    this.streams.start();
    this.streams.noteCommit(this.commitPos);
    this.logger.info(
      {
        events: this.eventCount,
        streams: this.streamCount,
        position: this.commitPos,
        durableEnd: this.durablePos,
        openMs: Math.round(performance.now() - started),
      },
      "store opened",
    );
  }

  async close(): Promise<void> {
    if (this.phase !== "open") return;
    this.phase = "closing";
    this.stopCheckpointTimer();
    this.stopSpaceProbe();
    try {
      while (this.writer !== null) await this.writer;
      await this.settleBackground();
      if (this.failure === null) {
        // Only an optimisation (recovery re-indexes the log from where the index ends).
        await this.streams.persist();
        await this.log.writeCheckpoint({ durable: this.durablePos, commit: this.commitPos }, true);
      }
    } finally {
      this.rejectWaiters(new StoreError("STORE_CLOSED", "store closed"));
      // Derived data: what it could not persist is re-indexed from the log at the next open.
      await this.streams.stop();
      await this.index
        .close()
        .catch((err: unknown) => this.logger.warn({ err }, "could not close the index"));
      await this.log.close();
      this.phase = "closed";
    }
  }

  /** Releases the files at once, without flushing a snapshot or checkpoint (like a crash). */
  async abort(): Promise<void> {
    if (this.phase !== "open") return;
    this.phase = "closing";
    this.stopCheckpointTimer();
    this.stopSpaceProbe();
    const err = new StoreError("STORE_CLOSED", "store aborted");
    this.failure ??= err;
    for (const w of this.queue) w.reject(err);
    this.queue = [];
    while (this.writer !== null) await this.writer.catch(() => undefined);
    await this.settleBackground();
    this.rejectWaiters(err);
    await this.streams.stop();
    await this.index
      .close()
      .catch((closeErr: unknown) => this.logger.warn({ err: closeErr }, "closing the index"));
    await this.log.close();
    this.phase = "closed";
  }

  private async settleBackground(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) =>
      this.logger.warn({ err }, "background storage write failed"),
    );
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  // ------------------------------------------------------------------ recovery

  /**
   * Brings the index up to the log's end from where the persisted index ends, cutting a torn
   * tail. With autoCommit the whole log is committed; without, the commit position is the
   * newer of the index's position and the checkpoint's commit position (both only ever hold
   * committed positions), and the batches above it are indexed into the write view only
   * (returned as pending). An index that does not fit the log (it does not end at a batch
   * boundary) is rebuilt from the start of the log.
   * `syncedUpTo`: the log is known fsync'd up to there (the checkpoint may lag, never lead).
   *
   * Only zeros from a batch boundary to the end are the end of the log (the disk log's
   * preallocated space), cut without a warning unless something durable reaches beyond.
   * A damaged record (or a batch without its end) with no valid record after it is a torn
   * tail, the trace of a crash before an fsync: cut, when it lies after the checkpoint. A
   * damaged record followed by a valid one (a bit flip, a lost block) is corruption, never
   * cut: open refuses, naming the file and the offset, and so does damage before the
   * checkpoint (fsync'd data, maybe acknowledged).
   */
  private async recover(): Promise<{
    commit: number;
    pending: PendingBatch[];
    syncedUpTo: number;
  }> {
    let from = this.loadIndex();
    const indexed = from;
    const end = this.log.end;
    refuseEndBefore(end, false, [
      [indexed, `the position ${indexed} its index reaches`, "committed"],
    ]);
    this.reserveEnd = end;
    if (from > 0 && !this.boundaryOnDisk(from)) {
      this.logger.warn(
        { indexedPosition: from },
        "the index does not fit the log; rebuilding it from the start",
      );
      await this.index.clear();
      from = this.loadIndex();
    }
    const saved = await this.log.readCheckpoint();
    const durable = Math.max(saved.durable ?? 0, from);
    const commitFloor = this.autoCommit
      ? Number.POSITIVE_INFINITY
      : Math.max(from, saved.commit ?? 0);
    const reached: Reached[] = [[durable, `the checkpoint ${durable}`, "durable"]];
    if (!this.autoCommit) {
      reached.push([commitFloor, `the commit checkpoint ${commitFloor}`, "committed"]);
    }
    refuseEndBefore(end, false, reached);
    // Committed data was fsync'd before it was committed: a problem below it is corruption.
    const checkpoint = this.autoCommit ? durable : Math.max(durable, commitFloor);
    const scan = await this.scanIndex(from, end, commitFloor, checkpoint);
    const { problem, problemAt, batchStart } = scan;
    if (problem !== null) {
      if (problemAt === batchStart && (await this.zerosFrom(problemAt))) {
        // Only zeros from a batch boundary on: the log ends there, before the disk log's
        // preallocated space (or before a write a crash cut short ahead of its first byte).
        refuseEndBefore(problemAt, true, [
          [indexed, `the position ${indexed} its index reaches`, "committed"],
          ...reached,
        ]);
        this.logger.debug(
          { position: problemAt, zeroBytes: end - problemAt },
          "the log ends where its preallocated zeros begin",
        );
        await this.log.truncate(problemAt);
        return this.recovered(durable, commitFloor, scan);
      }
      const where = `log record at position ${problemAt} (${this.log.describePosition(problemAt)})`;
      if (problemAt < checkpoint || batchStart < checkpoint) {
        throw new StoreError(
          "CORRUPTED",
          `${where} is damaged (${problem}), before the checkpoint ${checkpoint}: data that ` +
            `was fsync'd (and maybe acknowledged) is damaged. ${RECOVERY_ADVICE}`,
        );
      }
      const valid = problem === "incomplete_batch" ? null : await this.findValidRecord(problemAt);
      const torn = valid === null ? null : await this.tornWriteFrom(problemAt);
      if (valid !== null && torn === null) {
        throw new StoreError(
          "CORRUPTED",
          `${where} is damaged (${problem}), but a valid record follows it at position ` +
            `${valid} (${this.log.describePosition(valid)}): the log is damaged in the ` +
            `middle, not torn at its end by a crash, and the records after the damage may ` +
            `have been acknowledged. ${RECOVERY_ADVICE}`,
        );
      }
      this.logger.warn(
        {
          position: batchStart,
          problem,
          problemAt,
          droppedBytes: end - batchStart,
          ...(torn !== null && { validRecordAfter: valid, neverWrittenSectorAt: torn }),
        },
        torn === null
          ? "truncating a torn tail of the log"
          : "truncating a torn tail of the log: valid records follow the damage, but a sector " +
              "of it the disk never wrote (still zeros) shows that its sync never completed, " +
              "so nothing from there on was acknowledged",
      );
      await this.log.truncate(batchStart);
      this.recentEnds.splice(lastAtOrBelow(this.recentEnds, batchStart) + 1);
    }
    return this.recovered(durable, commitFloor, scan);
  }

  /** What `recover` returns once the log ends at its last complete batch. */
  private recovered(
    durable: number,
    commitFloor: number,
    scan: { pending: PendingBatch[]; straddled: boolean },
  ): { commit: number; pending: PendingBatch[]; syncedUpTo: number } {
    const syncedUpTo = Math.min(durable, this.log.end);
    if (this.autoCommit) return { commit: this.log.end, pending: [], syncedUpTo };
    if (scan.straddled) {
      throw new StoreError(
        "CORRUPTED",
        `the commit checkpoint ${commitFloor} is not a batch boundary of the log`,
      );
    }
    return { commit: commitFloor, pending: scan.pending, syncedUpTo };
  }

  /** Whether every byte from `from` to the end of the log is zero. */
  private async zerosFrom(from: number): Promise<boolean> {
    const end = this.log.end;
    for (let pos = from; pos < end;) {
      const buf = await this.log.read(pos, Math.min(RECOVERY_BLOCK_BYTES, end - pos));
      if (buf.length === 0) return false;
      for (let off = 0; off < buf.length; off += ZERO_BLOCK.length) {
        const part = buf.subarray(off, Math.min(buf.length, off + ZERO_BLOCK.length));
        if (!part.equals(ZERO_BLOCK.subarray(0, part.length))) return false;
      }
      pos += buf.length;
    }
    return true;
  }

  /**
   * Whether the damage at `from`, which valid records follow, is the trace of a power loss
   * during the last write rather than corruption; the first never-written sector if so, null
   * if not. The write loop writes a group and syncs it before it writes the next, and
   * acknowledges nothing before that sync, so a power loss can leave only the last group
   * partly written: the disk wrote some of its sectors and not others (in any order), and the
   * others still hold what was there before, the zeros of preallocated space (bytes past the
   * log's end are always zeros: `truncate` cuts the file). A sector that a completed sync
   * covered is on disk. So when every damaged stretch from `from` to the end of the log shows
   * a sector never written (`zeroSectorIn`), with only valid records between them (and, after
   * the last of them, zeros or a torn tail), none of it was ever synced, and nothing from
   * `from` on was acknowledged.
   * A flipped bit, or damage anywhere else, does not fit: null. (A disk that loses a sector
   * it had reported synced looks the same: that disk lies about fsync, which no log can
   * detect; the check is the one etcd's WAL makes for a torn entry.)
   */
  private async tornWriteFrom(from: number): Promise<number | null> {
    const end = this.log.end;
    let first: number | null = null;
    for (let damaged = from; ;) {
      // Damage with no valid record after it ends the log, as a torn tail does.
      const valid = await this.findValidRecord(damaged);
      if (valid === null) return first;
      const zero = await this.zeroSectorIn(damaged, valid, damaged === from);
      if (zero === null) return null;
      first ??= zero;
      // Past the valid records that follow, to the next damage or the end.
      let pos = valid;
      for (;;) {
        if (pos >= end) return first;
        const head = await this.log.read(pos, 4);
        const length = head.length === 4 ? head.readUInt32LE(0) : 0;
        if (length < MIN_RECORD_BYTES || length > MAX_RECORD_BYTES || pos + length > end) break;
        if (!checkRecord(await this.log.read(pos, length), 0).ok) break;
        pos += length;
      }
      if (await this.zerosFrom(pos)) return first;
      damaged = pos;
    }
  }

  /**
   * Where [from, to), a damaged stretch of the log, shows a sector the disk never wrote, or
   * null. Sectors are 512 bytes at multiples of 512 in their file (a segment's end may not be
   * one). A sector wholly within the stretch that is all zeros is one. With `startsWrite` (the
   * stretch may start where the last write did), so is the sector the stretch starts in, when
   * the bytes from `from` to its end are zeros (4 at least: the damaged record's length):
   * before the write reached it, that sector held the end of the log (valid records, up to
   * `from`) and then preallocated zeros, and a written one would hold the record's header
   * there. (A later stretch starts after valid records of the same write: its first sector
   * was written.)
   */
  private async zeroSectorIn(
    from: number,
    to: number,
    startsWrite: boolean,
  ): Promise<number | null> {
    // Read a block at a time (the stretch may be long), as the sectors are looked at in order.
    let blockAt = from;
    let block: Buffer = Buffer.alloc(0);
    const zeros = async (start: number, end: number): Promise<boolean> => {
      if (end > blockAt + block.length) {
        blockAt = start;
        block = await this.log.read(start, Math.min(RECOVERY_BLOCK_BYTES, to - start));
      }
      return block
        .subarray(start - blockAt, end - blockAt)
        .equals(ZERO_BLOCK.subarray(0, end - start));
    };
    const into = this.log.fileOffset(from) % SECTOR_BYTES;
    const firstEnd = from + SECTOR_BYTES - into;
    if (
      startsWrite &&
      into !== 0 &&
      firstEnd - from >= 4 &&
      firstEnd <= to &&
      this.log.fileOffset(firstEnd - 1) === this.log.fileOffset(from) + (firstEnd - 1 - from) &&
      (await zeros(from, firstEnd))
    )
      return from;
    let pos = into === 0 ? from : firstEnd;
    while (pos + SECTOR_BYTES <= to) {
      const offset = this.log.fileOffset(pos);
      if (offset % SECTOR_BYTES !== 0) {
        pos += SECTOR_BYTES - (offset % SECTOR_BYTES); // realigned in the next file
        continue;
      }
      if (this.log.fileOffset(pos + SECTOR_BYTES - 1) === offset + SECTOR_BYTES - 1) {
        if (await zeros(pos, pos + SECTOR_BYTES)) return pos;
        pos += SECTOR_BYTES;
      } else {
        // The file ends within these 512 bytes: on to the start of the next.
        pos += SECTOR_BYTES - 1 - this.log.fileOffset(pos + SECTOR_BYTES - 1);
      }
    }
    return null;
  }

  /**
   * The position of the first valid record (framing, trailer and CRC) starting after `from`,
   * looked for at every byte up to the end of the log; null when there is none.
   */
  private async findValidRecord(from: number): Promise<number | null> {
    const end = this.log.end;
    let pos = from + 1;
    while (pos + MIN_RECORD_BYTES <= end) {
      const buf = await this.log.read(pos, Math.min(RECOVERY_BLOCK_BYTES, end - pos));
      const candidates = buf.length - MIN_RECORD_BYTES + 1;
      if (candidates <= 0) break;
      for (let off = 0; off < candidates; off++) {
        const length = buf.readUInt32LE(off);
        if (length < MIN_RECORD_BYTES || length > MAX_RECORD_BYTES || pos + off + length > end)
          continue;
        if (off + length <= buf.length) {
          if (checkRecord(buf, off).ok) return pos + off;
          continue;
        }
        // A record running past this block: its trailer first, the whole record only then.
        const trailer = await this.log.read(pos + off + length - RECORD_TRAILER_BYTES, 4);
        if (trailer.length < 4 || trailer.readUInt32LE(0) !== length) continue;
        if (checkRecord(await this.log.read(pos + off, length), 0).ok) return pos + off;
      }
      pos += candidates;
    }
    return null;
  }

  /** Resets the index in memory to what the persisted index holds; returns where it ends. */
  private loadIndex(): number {
    this.streams.reset();
    this.window.clear();
    const from = this.index.persistedUpTo;
    const totals = this.index.totals;
    this.eventCount = totals.events;
    this.streamCount = totals.streams;
    this.epochList = this.index.epochs();
    this.recentEnds = [from];
    // While recovering, the commit position is where the index may be persisted up to.
    this.commitPos = from;
    return from;
  }

  /**
   * Scans the log from `from` to `limit`, indexing every complete batch: batches ending at or
   * below `committedUpTo` into both views, later ones into the write view only (their
   * committed-view updates are returned, to run at commit). Stops at the first problem. A long
   * scan persists the index on the way (at batch ends below `durableUpTo`), so memory stays
   * bounded while a large log is re-indexed.
   */
  private async scanIndex(
    from: number,
    limit: number,
    committedUpTo: number,
    durableUpTo: number,
  ): Promise<{
    problem: RecordProblem | "incomplete_batch" | null;
    problemAt: number;
    batchStart: number;
    pending: PendingBatch[];
    /** A batch starts below `committedUpTo` and ends above it: not a boundary. */
    straddled: boolean;
  }> {
    let batch: IndexedRecord[] = [];
    let batchStart = from;
    let badPayloadAt = -1;
    let straddled = false;
    const pending: PendingBatch[] = [];
    let pauseAt = -1;
    let scan: { position: number; problem?: RecordProblem };
    for (let pos = from; ; pos = pauseAt) {
      pauseAt = -1;
      scan = await this.scanForward(
        pos,
        limit,
        RECOVERY_BLOCK_BYTES,
        (buf, at, length, position) => {
          const end = position + length;
          // committedUpTo is a batch boundary: a record ending at or below it is in a committed batch.
          const committed = end <= committedUpTo;
          // Fast path: plain committed events only need their index fields; others are decoded.
          const summary = summarizeEvent(buf, at, length);
          const rec =
            summary !== null && !isMetadataStream(summary.streamId) && committed
              ? summary
              : decodeCheckedRecord(buf, at, length, false);
          if (rec === null) {
            badPayloadAt = position;
            return false;
          }
          batch.push({ rec, position, state: undefined });
          if (rec.batchEnd) {
            if (end <= committedUpTo) {
              for (const r of batch) this.recoverRecord(r.rec, r.position);
              if (end <= durableUpTo && this.streams.wantsPersist) pauseAt = end;
            } else {
              if (batchStart < committedUpTo) {
                // Its first records were taken as committed summaries: stop, the caller refuses.
                straddled = true;
                batch = [];
                return false;
              }
              pending.push({ end, apply: this.indexBatch(batch) });
            }
            batch = [];
            batchStart = end;
            this.noteBoundary(end);
          }
          return pauseAt < 0;
        },
      );
      if (pauseAt < 0 || scan.problem !== undefined) break;
      this.commitPos = pauseAt;
      await this.streams.persist();
    }
    let problem: RecordProblem | "incomplete_batch" | null = scan.problem ?? null;
    let problemAt = scan.problem !== undefined ? scan.position : -1;
    if (badPayloadAt >= 0) {
      problem = "bad_payload";
      problemAt = badPayloadAt;
    } else if (problem === null && batch.length > 0) {
      problem = "incomplete_batch";
      problemAt = batchStart;
    }
    return { problem, problemAt, batchStart, pending, straddled };
  }

  private recoverRecord(rec: LogRecord | EventSummary, position: number): void {
    if (rec.kind === "summary") {
      this.recoverEvent(rec, position);
      return;
    }
    if (rec.kind === "tombstone") {
      const s = this.stateFor(rec.streamId);
      s.tombstoned = s.wTombstoned = true;
      this.streams.committed(s);
      return;
    }
    if (rec.kind === "epoch") {
      this.epochList.push({ epochNumber: rec.epochNumber, epochId: rec.epochId, position });
      return;
    }
    if (rec.kind !== "event") return;
    this.recoverEvent(rec, position);
    const metaOf = metadataTarget(rec.streamId, rec.type);
    if (metaOf !== undefined) {
      const target = this.stateFor(metaOf);
      target.meta = target.wMeta = parseMetadata(rec.data);
      this.streams.committed(target);
    }
  }

  /**
   * Indexes a batch of decoded records (replicated, or recovered above the commit position)
   * into the write view, exactly as a local append does, but for the recent-id window: that
   * cache holds this node's own appends only (a retry of any other is answered by the event-id
   * index); returns the committed-view update to run when the batch commits.
   */
  private indexBatch(recs: readonly IndexedRecord[]): () => void {
    // The commit goes over the records again (a follower indexes every event it receives:
    // no closure per event). The rarer records keep a closure each.
    let others: Array<() => void> | undefined;
    for (const r of recs) {
      const { rec, position } = r;
      if (rec.kind === "event" || rec.kind === "summary") {
        const s = this.stateFor(rec.streamId);
        const rev = rec.revision;
        if (rev % SPARSE_EVERY === 0) s.sparse.set(rev / SPARSE_EVERY, position);
        this.streams.addId(rec.idKey, position, rev);
        s.wLast = rev;
        s.wLastPos = position;
        r.state = s;
        const metaOf = rec.kind === "event" ? metadataTarget(rec.streamId, rec.type) : undefined;
        if (metaOf !== undefined) {
          const target = this.stateFor(metaOf);
          const meta = parseMetadata((rec as EventRecord).data);
          target.wMeta = meta;
          (others ??= []).push(() => {
            target.meta = meta;
            this.streams.committed(target);
          });
        }
      } else if (rec.kind === "tombstone") {
        const s = this.stateFor(rec.streamId);
        s.wTombstoned = true;
        (others ??= []).push(() => {
          s.tombstoned = true;
          this.streams.committed(s);
        });
      } else if (rec.kind === "epoch") {
        this.epochList.push({ epochNumber: rec.epochNumber, epochId: rec.epochId, position });
      }
    }
    return () => {
      for (const r of recs) {
        const s = r.state;
        if (s === undefined) continue;
        if (s.last < 0) this.streamCount++;
        s.last = (r.rec as EventSummary | EventRecord).revision;
        s.lastPos = r.position;
        this.eventCount++;
        this.streams.committed(s);
      }
      if (others !== undefined) for (const op of others) op();
    };
  }

  private noteBoundary(end: number): void {
    this.recentEnds.push(end);
    if (this.recentEnds.length > 2 * RECENT_BOUNDARIES)
      this.recentEnds.splice(0, this.recentEnds.length - RECENT_BOUNDARIES);
  }

  private recoverEvent(rec: EventSummary | EventRecord, position: number): void {
    const s = this.stateFor(rec.streamId);
    if (rec.revision !== s.last + 1) {
      throw new StoreError(
        "CORRUPTED",
        `event at ${position} has revision ${rec.revision} of ${rec.streamId}, expected ${s.last + 1}`,
      );
    }
    if (s.last < 0) this.streamCount++;
    s.last = s.wLast = rec.revision;
    s.lastPos = s.wLastPos = position;
    if (rec.revision % SPARSE_EVERY === 0) s.sparse.set(rec.revision / SPARSE_EVERY, position);
    this.streams.addId(rec.idKey, position, rec.revision);
    this.eventCount++;
    this.streams.committed(s);
  }

  private stateFor(name: string): StreamState {
    return this.streams.getOrCreate(name);
  }

  // ------------------------------------------------------------------ writes

  private assertWritable(evenWhenFull = false): void {
    if (this.phase !== "open") throw new StoreError("STORE_CLOSED", "store is not open");
    if (this.failure !== null) throw this.failure;
    if (this.full !== null && !evenWhenFull) throw this.full;
    if (this.truncating !== null) throw invalid("the log is being truncated; writes are refused");
  }

  private assertReadable(): void {
    if (this.phase !== "open") throw new StoreError("STORE_CLOSED", "store is not open");
  }

  append(streamId: string, expected: ExpectedVersion, events: NewEvent[]): Promise<WriteResult> {
    try {
      return this.appendOnce(streamId, expected, events, true);
    } catch (err) {
      // A refusal (a StoreError): the caller gets it as a rejection, as from an async function.
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * `useIdIndex` false: the event-id index was asked already, and the ids are not this
   * stream's. Not an async function: a new append (the common case) decides synchronously
   * and gets the write's own promise, without a promise per layer; it throws its refusals
   * (`append` turns them into a rejection).
   */
  private appendOnce(
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
    useIdIndex: boolean,
  ): Promise<WriteResult> {
    this.assertWritable();
    validateStreamId(streamId);
    validateExpectedVersion(expected, streamId);
    // The ids' 16 bytes come out of their validation (one pass over each id's text).
    const keys = validateNewEvents(events, streamId);
    const target = targetOfMetadataStream(streamId);
    let newMeta: StreamMetadata | undefined;
    if (target !== undefined) {
      assertNotTombstoned(target, this.streams.get(target)?.wTombstoned === true);
      newMeta = metadataOfAppend(streamId, events);
    }
    const state = this.streams.get(streamId);
    assertNotTombstoned(streamId, state?.wTombstoned === true);
    const view = writeView(state);

    // Idempotent retry of a recent append? (Not when the first id is not in the window: the
    // decision is "new" then, so the common append looks the window up once.)
    const k0 = keys[0];
    const inWindow = k0 !== undefined && this.window.has(k0);
    if (inWindow) {
      const recent = decideFromRecentIds(view, expected, keys, (key) => {
        const e = this.window.get(key);
        return state !== undefined && e?.stream === state.name ? e : undefined;
      });
      if (recent.kind === "conflict") return Promise.resolve(recent.result);
      if (recent.kind === "idempotent") {
        const result = recent.result;
        return this.waitForCommit(result.position + 1).then(() => result);
      }
    }
    // A retry older than the window: the event-id index knows every id (idempotency.ts).
    if (
      useIdIndex &&
      state !== undefined &&
      k0 !== undefined &&
      !inWindow &&
      findsRetriesById(expected, view)
    ) {
      const hit = this.streams.id(k0);
      if (hit !== undefined && hit.revision <= state.wLast) {
        return this.matchIndexed(state, hit, keys).then(
          // Not this stream's event: decide again on the state as it is now.
          (fromIndex) => fromIndex ?? this.appendOnce(streamId, expected, events, false),
        );
      }
    }

    const check = checkExpectedVersion(streamId, expected, view);
    if (check.kind === "conflict") return Promise.resolve(check.result);
    if (check.kind === "compare-ids") {
      return state === undefined
        ? Promise.resolve(wrongExpectedVersion(view))
        : this.matchLog(state, check.fromRevision, keys);
    }
    if (events.length === 0) {
      return this.waitForCommit(this.reserveEnd).then(() => ({
        ok: true,
        nextExpectedVersion: view.last,
        position: state?.wLastPos ?? -1,
      }));
    }
    const s = state ?? this.stateFor(streamId);
    const targetState =
      target !== undefined && newMeta !== undefined ? this.stateFor(target) : undefined;
    return this.enqueueEvents(s, events, keys, targetState, newMeta ?? null);
  }

  async delete(streamId: string, expected: ExpectedVersion, hard: boolean): Promise<WriteResult> {
    this.assertWritable();
    validateStreamId(streamId);
    validateExpectedVersion(expected, streamId);
    const state = this.streams.get(streamId);
    const decision = decideDelete(streamId, expected, writeView(state), hard);
    if (decision.kind === "conflict") return decision.result;
    const last = decision.nextExpectedVersion;
    if (decision.kind === "tombstone") {
      const s = state ?? this.stateFor(streamId);
      const position = this.reserveEnd;
      const data = encodeTombstone({ batchEnd: true, streamId, createdMs: this.nowMs() });
      s.wTombstoned = true;
      await this.enqueue(position, data, () => {
        s.tombstoned = true;
        this.streams.committed(s);
      });
      return { ok: true, nextExpectedVersion: last, position };
    }
    const metaState = this.stateFor(metadataStreamOf(streamId));
    const targetState = this.stateFor(streamId);
    const id = randomUUID();
    const data = Buffer.from(JSON.stringify(decision.metadata), "utf8");
    const result = await this.enqueueEvents(
      metaState,
      [{ id, type: METADATA_EVENT_TYPE, isJson: true, data, metadata: new Uint8Array(0) }],
      [uuidToKey(id)],
      targetState,
      decision.metadata,
    );
    return result.ok ? { ok: true, nextExpectedVersion: last, position: result.position } : result;
  }

  /**
   * The event-id index says where the first id was written: the stream's events from there
   * decide (`decideFromIdIndex`). Null when the event is not this stream's.
   */
  private async matchIndexed(
    state: StreamState,
    hit: EventIdHit,
    keys: string[],
  ): Promise<WriteResult | null> {
    // The answer reflects the stream as it was when the append was made.
    const view = writeView(state);
    // The original append still pending: its result once it is committed (as from the window).
    await this.waitForCommit(hit.position + 1);
    if (hit.revision > state.last) return null;
    const hi = Math.min(hit.revision + keys.length - 1, state.last);
    const decision = decideFromIdIndex(
      view,
      hit,
      keys,
      storedIds(await this.readWhole(state, hit.revision, hi)),
    );
    return decision.kind === "new" ? null : decision.result;
  }

  /** Idempotency by reading the stream: do revisions from.. hold these ids? (`decideFromStream`) */
  private async matchLog(state: StreamState, from: number, keys: string[]): Promise<WriteResult> {
    // The answer reflects the stream as it was when the append was made.
    const view = writeView(state);
    const hi = from + keys.length - 1;
    if (keys.length === 0 || hi > state.wLast) return wrongExpectedVersion(view);
    await this.waitForCommit(state.wLastPos + 1);
    if (hi > state.last) return wrongExpectedVersion(view);
    const recs = await this.readWhole(state, from, hi);
    return decideFromStream(view, from, keys, storedIds(recs)).result;
  }

  /** Throws (synchronously) an event that cannot be encoded, before anything changes. */
  private enqueueEvents(
    s: StreamState,
    events: NewEvent[],
    keys: string[],
    metaTarget: StreamState | undefined,
    meta: StreamMetadata | null,
  ): Promise<WriteResult> {
    const createdMs = this.nowMs();
    const start = this.reserveEnd;
    const buffers: Buffer[] = [];
    const positions: number[] = [];
    let pos = start;
    let prev = s.wLastPos;
    let rev = s.wLast;
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as NewEvent;
      rev++;
      let buf: Buffer;
      try {
        buf = encodeEvent({
          batchEnd: i === events.length - 1,
          streamId: s.name,
          revision: rev,
          prevPosition: prev,
          idKey: keys[i] as string,
          type: e.type,
          isJson: e.isJson,
          createdMs,
          data: e.data,
          metadata: e.metadata,
        });
      } catch (err) {
        if (err instanceof RangeError) throw invalid(err.message, s.name);
        throw err;
      }
      buffers.push(buf);
      positions.push(pos);
      prev = pos;
      pos += buf.length;
    }
    // From here on nothing throws: reserve and update the write view.
    const firstRev = s.wLast + 1;
    for (let i = 0; i < positions.length; i++) {
      const r = firstRev + i;
      const p = positions[i] as number;
      if (r % SPARSE_EVERY === 0) s.sparse.set(r / SPARSE_EVERY, p);
      this.window.put(keys[i] as string, s.name, r, p);
      this.streams.addId(keys[i] as string, p, r);
    }
    s.wLast = rev;
    s.wLastPos = prev;
    if (metaTarget !== undefined) metaTarget.wMeta = meta;
    const lastRev = rev;
    const lastPos = prev;
    const count = events.length;
    const result: WriteResult = { ok: true, nextExpectedVersion: lastRev, position: lastPos };
    return this.enqueueFor(
      start,
      buffers.length === 1 ? (buffers[0] as Buffer) : Buffer.concat(buffers, pos - start),
      () => {
        if (s.last < 0) this.streamCount++;
        s.last = lastRev;
        s.lastPos = lastPos;
        this.eventCount += count;
        this.streams.committed(s);
        if (metaTarget !== undefined) {
          metaTarget.meta = meta;
          this.streams.committed(metaTarget);
        }
      },
      result,
    );
  }

  private enqueue(start: number, data: Buffer, apply: () => void): Promise<void> {
    return this.enqueueFor(start, data, apply, undefined);
  }

  /** `enqueue`, resolving with `result` once committed. */
  private enqueueFor<T>(start: number, data: Buffer, apply: () => void, result: T): Promise<T> {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = () => res(result);
      reject = rej;
    });
    this.enqueueWrite(start, data, apply, resolve, reject);
    return promise;
  }

  /** Reserves and queues one batch's write; `resolve` runs once it is committed. */
  private enqueueWrite(
    start: number,
    data: Buffer,
    apply: () => void,
    resolve: () => void,
    reject: (err: unknown) => void,
  ): void {
    if (start !== this.reserveEnd)
      throw new Error(
        `internal: enqueue at ${start} but the log is reserved up to ${this.reserveEnd}`,
      );
    this.reserveEnd = start + data.length;
    this.noteBoundary(this.reserveEnd);
    this.queue.push({ start, data, end: start + data.length, apply, resolve, reject });
    if (this.writer === null) this.writer = this.writeLoop();
  }

  /** The group-commit loop: everything queued goes out in one write and one sync. */
  private async writeLoop(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.failure === null) {
        const batch = this.queue;
        this.queue = [];
        this.inFlight = batch;
        const first = batch[0] as PendingWrite;
        const data = batch.length === 1 ? first.data : Buffer.concat(batch.map((w) => w.data));
        let stage = "write";
        try {
          if (first.start !== this.log.end)
            throw new Error(
              `internal: write at ${first.start} but the log ends at ${this.log.end}`,
            );
          await this.log.write(first.start, data);
          // A group of several writes means more are arriving: sync in the background (see
          // DiskLog.sync) while the loop gathers the next group. A lone write's sync may block
          // this thread; what the gate says is still to go out first (a leader's Append to
          // its followers) gets one turn of the loop before it.
          const background = batch.length > 1 || this.syncOffLoop?.() === true;
          if (!background && this.syncGate?.() === true) await setImmediatePromise();
          stage = "fsync";
          const syncStart = performance.now();
          this.syncStartMs = syncStart;
          await this.log.sync(background);
          this.syncStartMs = null;
          this.onSync?.((performance.now() - syncStart) / 1000);
        } catch (err) {
          this.syncStartMs = null;
          this.inFlight = [];
          await this.writeFailed(err, stage, batch, data.length);
          return;
        }
        this.inFlight = [];
        this.syncCount++;
        this.durablePos = first.start + data.length;
        for (const w of batch) this.awaitingCommit.push(w);
        if (this.autoCommit) this.commitTo(this.durablePos);
        this.notifyDurable();
        this.afterSync();
      }
    } finally {
      this.writer = null;
    }
  }

  /**
   * A write or its fsync failed: nothing of `batch` or the queue is durable. The log, its end
   * and its last epoch go back to the durable end (the file is cut there), so the node never
   * reports or votes with records it does not have; then they reject. For want of space
   * (ENOSPC, EDQUOT) the store then refuses writes with STORAGE_FULL until the probe finds
   * room again, and keeps serving reads; any other failure refuses writes until a restart
   * (IO_FAILED). A write is said not to have been made only when the cut succeeded: otherwise
   * its records may still be in the file, and come back at the next open.
   */
  private async writeFailed(
    cause: unknown,
    stage: string,
    batch: PendingWrite[],
    bytes: number,
  ): Promise<void> {
    const code = (cause as NodeJS.ErrnoException | null)?.code;
    const noSpace = code === "ENOSPC" || code === "EDQUOT";
    const reason = cause instanceof Error ? cause.message : String(cause);
    let cutBack = true;
    // Writes are refused from now on, while the log is cut back, and after.
    const refusal = (outcome: string): string =>
      noSpace && cutBack
        ? `the disk is full (${reason}): ${outcome}writes are refused until space is freed ` +
          `(reads still work; writes resume by themselves)`
        : `log ${stage} failed (${reason}): ${outcome}the store refuses further writes until ` +
          `the node is restarted`;
    if (noSpace) this.full = new StoreError("STORAGE_FULL", refusal(""));
    else this.failure = new StoreError("IO_FAILED", refusal(""), undefined, { cause });
    const failed = [...batch, ...this.queue];
    this.queue = [];
    try {
      await this.rollBackWriteView(failed, this.durablePos);
      if (this.log.end > this.durablePos) await this.log.truncate(this.durablePos);
    } catch (rollbackErr) {
      cutBack = false;
      this.logger.error(
        { err: rollbackErr, position: this.durablePos },
        "could not cut the log back to its durable end",
      );
    }
    const errCode = noSpace && cutBack ? "STORAGE_FULL" : "IO_FAILED";
    const err = new FailedWriteError(
      errCode,
      refusal(
        cutBack
          ? "the write was not made, and "
          : "the write's outcome is unknown (the log could not be cut back, so it may be " +
              "there after a restart: retry with the same event ids), and ",
      ),
      undefined,
      { cause },
    );
    // What later writes are refused with, at once.
    const refused = new StoreError(errCode, refusal(""), undefined, { cause });
    if (noSpace && cutBack) {
      this.full = refused;
      this.logger.error(
        { err: cause, position: this.durablePos, bytes },
        "log write failed: the disk is full; writes are refused until space is freed",
      );
    } else {
      this.full = null;
      this.failure = refused;
      this.logger.error(
        { err: cause, position: this.durablePos },
        `log ${stage} failed; the store refuses further writes until the node is restarted`,
      );
    }
    for (const w of failed) w.reject(err);
    const still: CommitWaiter[] = [];
    for (const w of this.commitWaiters) {
      if (w.position > this.durablePos) w.reject(err);
      else still.push(w);
    }
    this.commitWaiters = still;
    if (noSpace && cutBack) this.probeSpace(Math.max(STORAGE_FULL_RESUME_BYTES, bytes));
  }

  /**
   * Undoes the write view's updates of records that are cut off (`cut`, in log order, all at
   * or beyond `to`, never committed): writes that were never made, or a truncated tail. The
   * end, recent boundaries and epochs are cut at `to`; each stream they touched goes back to
   * the revision before its first cut event (whose back-link names the previous one); their
   * ids leave the idempotency window and the event-id index (only committed ids are
   * persisted: these are in memory). The committed view is untouched, so reads go on
   * meanwhile; the persisted index needs nothing.
   */
  private async rollBackWriteView(
    cut: ReadonlyArray<{ readonly start: number; readonly data: Buffer }>,
    to: number,
  ): Promise<void> {
    this.reserveEnd = to;
    this.recentEnds.splice(lastAtOrBelow(this.recentEnds, to) + 1);
    while ((this.epochList[this.epochList.length - 1]?.position ?? -1) >= to) this.epochList.pop();
    const rolledBack = new Set<StreamState>();
    const metaTargets = new Set<StreamState>();
    for (const w of cut) {
      let off = 0;
      while (off < w.data.length) {
        const c = checkRecord(w.data, off);
        if (!c.ok) break;
        const rec = decodeCheckedRecord(w.data, off, c.length, false);
        const position = w.start + off;
        off += c.length;
        if (rec === null || (rec.kind !== "event" && rec.kind !== "tombstone")) continue;
        const s = this.streams.get(rec.streamId);
        if (s === undefined) continue;
        if (rec.kind === "tombstone") {
          s.wTombstoned = s.tombstoned;
          continue;
        }
        // (An id that the failed write took over from another stream's entry is forgotten.)
        if (this.window.get(rec.idKey)?.position === position) this.window.delete(rec.idKey);
        const metaOf = metadataTarget(rec.streamId, rec.type);
        const target = metaOf === undefined ? undefined : this.streams.get(metaOf);
        if (target !== undefined) metaTargets.add(target);
        if (rolledBack.has(s)) continue;
        rolledBack.add(s);
        s.wLast = rec.revision - 1;
        s.wLastPos = rec.prevPosition;
        for (const k of s.sparse.keys()) if (k * SPARSE_EVERY >= rec.revision) s.sparse.delete(k);
      }
    }
    this.streams.truncateIds(to);
    for (const target of metaTargets) target.wMeta = await this.durableMetadata(target);
  }

  /** The metadata of a stream as of its metadata stream's write view (the last `$metadata`). */
  private async durableMetadata(target: StreamState): Promise<StreamMetadata | null> {
    const metaStream = this.stateFor(metadataStreamOf(target.name));
    if (metaStream.wLast === metaStream.last) return target.meta;
    const reader = new StreamWalkReader(this.log, this.durablePos, this.syncReads);
    let pos = metaStream.wLastPos;
    while (pos >= 0) {
      const rec = await this.readEventAt(reader, pos, "backwards");
      if (rec === null)
        throw new StoreError("CORRUPTED", `expected ${metaStream.name} at position ${pos}`);
      if (rec.type === METADATA_EVENT_TYPE) return parseMetadata(rec.data);
      pos = rec.prevPosition;
    }
    return null;
  }

  /** Looks for free space every storageFullProbeEveryMs; writes resume once `needed` is free. */
  private probeSpace(needed: number): void {
    this.stopSpaceProbe();
    this.spaceProbeTimer = setTimeout(() => {
      this.spaceProbeTimer = null;
      if (this.phase !== "open" || this.full === null) return;
      this.log.availableBytes().then(
        (free) => {
          if (this.phase !== "open" || this.full === null) return;
          if (free < needed) {
            this.probeSpace(needed);
            return;
          }
          this.full = null;
          this.logger.info({ freeBytes: free }, "disk space is available again; writes resume");
        },
        (err: unknown) => {
          this.logger.warn({ err }, "could not read the free disk space");
          this.probeSpace(needed);
        },
      );
    }, this.storageFullProbeEveryMs);
    this.spaceProbeTimer.unref();
  }

  private stopSpaceProbe(): void {
    if (this.spaceProbeTimer === null) return;
    clearTimeout(this.spaceProbeTimer);
    this.spaceProbeTimer = null;
  }

  private fail(cause: unknown, inFlight: PendingWrite[]): void {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const err = new StoreError(
      "IO_FAILED",
      `cutting the log failed (${reason}): the store refuses further writes until the node is ` +
        `restarted`,
      undefined,
      { cause },
    );
    this.failure = err;
    this.logger.error({ err: cause }, "cutting the log failed; the store refuses further writes");
    for (const w of inFlight) w.reject(err);
    for (const w of this.queue) w.reject(err);
    this.queue = [];
    const still: CommitWaiter[] = [];
    for (const w of this.commitWaiters) {
      if (w.position > this.durablePos) w.reject(err);
      else still.push(w);
    }
    this.commitWaiters = still;
  }

  private afterSync(): void {
    this.checkpointSoon();
  }

  /**
   * The checkpoint only lags (a crash may lose it: the durable end and the commit position
   * are found again, or learnt from the leader), so it is written at most once per
   * checkpointEveryMs rather than once per group commit: a syscall less on each sequential
   * append. At once when that long has passed since the last write, else by a timer then.
   */
  private checkpointSoon(): void {
    const waitMs = this.checkpointAtMs + this.checkpointEveryMs - performance.now();
    if (waitMs <= 0 && this.writeCheckpointLazily()) return;
    this.scheduleCheckpoint(Math.max(1, waitMs));
  }

  /**
   * Records the durable end and the commit position in the checkpoint, without fsync. One
   * write at a time; none while a truncation runs (it writes the checkpoint itself). Returns
   * false when it could not start one now.
   */
  private writeCheckpointLazily(): boolean {
    if (this.checkpointInFlight || this.truncating !== null) return false;
    this.checkpointInFlight = true;
    this.checkpointAtMs = performance.now();
    const durable = this.durablePos;
    const commit = this.commitPos;
    this.track(
      this.log
        .writeCheckpoint({ durable, commit }, false)
        .then(() => {
          this.checkpointedDurable = Math.max(this.checkpointedDurable, durable);
          this.checkpointedCommit = Math.max(this.checkpointedCommit, commit);
        })
        .finally(() => {
          this.checkpointInFlight = false;
        }),
    );
    return true;
  }

  private scheduleCheckpoint(delayMs: number): void {
    if (this.checkpointTimer !== null || this.phase !== "open") return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      if (this.phase !== "open") return;
      if (this.durablePos <= this.checkpointedDurable && this.commitPos <= this.checkpointedCommit)
        return;
      this.checkpointSoon();
    }, delayMs);
    this.checkpointTimer.unref();
  }

  private stopCheckpointTimer(): void {
    if (this.checkpointTimer === null) return;
    clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
  }

  /**
   * Moves the commit position (cluster use; on a single node the store does it after each
   * sync). Must be a record boundary at or below the durable end.
   */
  setCommitPosition(position: number): void {
    if (position > this.durablePos)
      throw new RangeError(`commit position ${position} beyond durable end ${this.durablePos}`);
    if (position <= this.commitPos) return;
    if (!this.isRecordBoundary(position))
      throw new RangeError(`commit position ${position} is not a record (batch) boundary`);
    this.commitTo(position);
  }

  private commitTo(position: number): void {
    this.commitPos = position;
    if (!this.autoCommit) this.checkpointSoon();
    let n = 0;
    while (
      n < this.awaitingCommit.length &&
      (this.awaitingCommit[n] as PendingWrite).end <= position
    ) {
      (this.awaitingCommit[n] as PendingWrite).apply();
      n++;
    }
    const done = this.awaitingCommit.splice(0, n);
    this.streams.noteCommit(position);
    if (this.commitWaiters.length > 0) {
      const still: CommitWaiter[] = [];
      for (const w of this.commitWaiters) {
        if (w.position <= position) w.resolve();
        else still.push(w);
      }
      this.commitWaiters = still;
    }
    for (const l of this.listeners) {
      try {
        l(position);
      } catch (err) {
        this.logger.warn({ err }, "onCommit listener threw");
      }
    }
    for (const w of done) w.resolve();
  }

  private waitForCommit(position: number): Promise<void> {
    if (position <= this.commitPos) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.commitWaiters.push({ position, resolve, reject }));
  }

  /** On close: commit waiters and writes durable but never committed (autoCommit false) reject. */
  private rejectWaiters(err: unknown): void {
    for (const w of this.commitWaiters) w.reject(err);
    this.commitWaiters = [];
    for (const w of this.awaitingCommit) w.reject(err);
    this.awaitingCommit = [];
  }

  /**
   * Cluster use, when this node stops leading: every write not committed (durable, or still
   * being written and synced: a stalled disk's writes wait for as long as it stalls) and every
   * wait for a commit rejects with `err` now, as its outcome is unknown: a later leader may
   * commit the records or truncate them. The records stay; a later commit still applies them
   * to the committed view.
   */
  abandonUncommitted(err: Error): void {
    const noop = (): void => undefined;
    for (const w of [...this.inFlight, ...this.queue, ...this.awaitingCommit]) {
      const reject = w.reject;
      w.resolve = noop;
      w.reject = noop;
      reject(err);
    }
    const waiters = this.commitWaiters;
    this.commitWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  // ------------------------------------------------------------------ cluster (replication)

  /** Everything below this position is durable (fsync'd). */
  /**
   * `gate` is asked before each sync; when it returns true the sync waits for one turn of the
   * event loop. A cluster leader uses it so that records it has not yet sent to its followers
   * go out before a sync that blocks the thread, and their syncs overlap with its own.
   */
  setSyncGate(gate: (() => boolean) | undefined): void {
    this.syncGate = gate;
  }

  /**
   * While `offLoop()` says so, every sync runs on the thread pool (as a background sync), never
   * inline on the event loop: a cluster node's disk stall must not hold up its heartbeats and
   * votes.
   */
  setSyncOffLoop(offLoop: (() => boolean) | undefined): void {
    this.syncOffLoop = offLoop;
  }

  get durableEnd(): number {
    return this.durablePos;
  }

  /** End of the log including writes still queued (where the next record goes). */
  get endPosition(): number {
    return this.reserveEnd;
  }

  /**
   * Called after each sync with the new durable end (the core's `localDurable`). While a
   * truncation is in progress, never reports beyond its target.
   */
  onDurable(listener: (durableEnd: number) => void): () => void {
    const wrapped = (p: number): void => listener(p);
    this.durableListeners.add(wrapped);
    return () => {
      this.durableListeners.delete(wrapped);
    };
  }

  private notifyDurable(): void {
    const p = Math.min(this.durablePos, this.truncating ?? Number.POSITIVE_INFINITY);
    for (const l of this.durableListeners) {
      try {
        l(p);
      } catch (err) {
        this.logger.warn({ err }, "onDurable listener threw");
      }
    }
  }

  /** The epochs of the log (EPOCH records written or queued), ascending. */
  epochs(): readonly EpochEntry[] {
    return this.epochList.slice();
  }

  /** Epoch of the record at `position`: the last EPOCH record at or before it; 0 before any. */
  epochAt(position: number): number {
    let lo = 0;
    let hi = this.epochList.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.epochList[mid] as EpochEntry).position <= position) lo = mid + 1;
      else hi = mid;
    }
    return this.epochList[lo - 1]?.epochNumber ?? 0;
  }

  /** Number of the last epoch (0 when none). */
  get lastEpoch(): number {
    return this.epochList[this.epochList.length - 1]?.epochNumber ?? 0;
  }

  /**
   * Writes an EPOCH record (a batch of its own) through the group commit. Throws at once
   * (nothing written) unless `epochNumber` is above the last epoch. Resolves when committed.
   */
  appendEpoch(epoch: {
    epochNumber: number;
    epochId: string;
    leaderInstanceId: string;
  }): Promise<{ position: number }> {
    this.assertWritable();
    if (!isUuid(epoch.epochId)) throw invalid(`epochId ${String(epoch.epochId)} is not a UUID`);
    if (!Number.isSafeInteger(epoch.epochNumber) || epoch.epochNumber <= this.lastEpoch) {
      throw invalid(
        `epoch ${epoch.epochNumber} must be an integer above the last epoch ${this.lastEpoch}`,
      );
    }
    let data: Buffer;
    try {
      data = encodeEpoch(epoch);
    } catch (err) {
      if (err instanceof RangeError) throw invalid(err.message);
      throw err;
    }
    const position = this.reserveEnd;
    this.epochList.push({ epochNumber: epoch.epochNumber, epochId: epoch.epochId, position });
    return this.enqueue(position, data, () => undefined).then(() => ({ position }));
  }

  /**
   * Is `position` the end of an atomic batch (or 0)? Batches are the unit of replication:
   * commit and truncation points are batch ends. Cheap for recent positions; older ones are
   * checked by reading the record that ends there (trailer, CRC, batch-end flag).
   */
  isRecordBoundary(position: number): boolean {
    if (!Number.isSafeInteger(position) || position < 0 || position > this.reserveEnd) return false;
    if (position === 0 || position === this.reserveEnd) return true;
    const first = this.recentEnds[0];
    if (first !== undefined && position >= first) {
      return this.recentEnds[lastAtOrBelow(this.recentEnds, position)] === position;
    }
    return this.boundaryOnDisk(position);
  }

  /** Does a valid record that ends an atomic batch end at `position` (read from the log)? */
  private boundaryOnDisk(position: number): boolean {
    if (position < MIN_RECORD_BYTES) return false;
    const trailer = this.readBytesSync(position - RECORD_TRAILER_BYTES, RECORD_TRAILER_BYTES);
    if (trailer.length < RECORD_TRAILER_BYTES) return false;
    const length = trailer.readUInt32LE(0);
    if (length < MIN_RECORD_BYTES || length > MAX_RECORD_BYTES || length > position) return false;
    const buf = this.readBytesSync(position - length, length);
    const c = checkRecord(buf, 0);
    return c.ok && c.length === length && isBatchEndAt(buf);
  }

  /** The last batch boundary at or below `position` (0 when none). */
  lastBoundaryAtOrBefore(position: number): number {
    if (position >= this.reserveEnd) return this.reserveEnd;
    if (position <= 0) return 0;
    const first = this.recentEnds[0];
    if (first !== undefined && position >= first) {
      return this.recentEnds[lastAtOrBelow(this.recentEnds, position)] as number;
    }
    if (this.isRecordBoundary(position)) return position;
    // Walk forward from the nearest known boundary below (an epoch start, or 0).
    let from = 0;
    for (const e of this.epochList) if (e.position <= position) from = e.position;
    let last = from;
    this.walkSync(from, position, (buf, at, length, p) => {
      if (isBatchEndAt(buf, at)) last = p + length;
      return true;
    });
    return last;
  }

  /**
   * Whole batches from the boundary `fromPosition` (committed or not, including writes still
   * queued): at least one batch if there is any, then more while they fit in `maxBytes`.
   * Synchronous (the consensus core's log view is): on disk it blocks on a read.
   */
  readRaw(
    fromPosition: number,
    maxBytes: number,
  ): { bytes: Buffer; end: number; batchEnds: number[] } {
    this.assertReadable();
    if (!this.isRecordBoundary(fromPosition))
      throw invalid(`position ${fromPosition} is not a record boundary of this log`);
    const inMemory = this.readRawInMemory(fromPosition, maxBytes);
    if (inMemory !== undefined) return inMemory;
    const batchEnds: number[] = [];
    let end = fromPosition;
    const res = this.walkSync(fromPosition, this.reserveEnd, (buf, at, length, position) => {
      if (!isBatchEndAt(buf, at)) return true;
      const recEnd = position + length;
      if (batchEnds.length > 0 && recEnd - fromPosition > maxBytes) return false;
      batchEnds.push(recEnd);
      end = recEnd;
      return recEnd - fromPosition < maxBytes;
    });
    if (res.problem !== undefined)
      throw new StoreError(
        "CORRUPTED",
        `log record at position ${res.position} is damaged (${res.problem})`,
      );
    return { bytes: this.readBytesSync(fromPosition, end - fromPosition), end, batchEnds };
  }

  /**
   * Appends whole records received from a leader at `position`, which must be the end of
   * this log. Every record's framing, CRC and payload is verified, the bytes must end with a
   * batch end, event revisions and back-links must continue this log's streams and epochs must
   * increase; otherwise this throws at once and changes nothing. The batches then go through
   * the group commit and are indexed exactly like local appends. Resolves when committed.
   * With `crcVerified` the caller has verified the CRCs of exactly these bytes (a follower does
   * on receipt), so they are not computed a second time.
   */
  appendRaw(position: number, bytes: Uint8Array, crcVerified = false): Promise<void> {
    this.assertWritable();
    if (position !== this.reserveEnd)
      throw invalid(`appendRaw at ${position}, but this log ends at ${this.reserveEnd}`);
    if (bytes.length === 0) throw invalid("appendRaw of no bytes");
    const buf = Buffer.from(bytes); // a copy: the caller may reuse its buffer
    const batches: Array<{ start: number; end: number; recs: IndexedRecord[] }> = [];
    /** Where each stream of these bytes is so far (one object per stream, not per event). */
    const streams = new Map<string, { last: number; lastPos: number }>();
    let lastEpoch = this.lastEpoch;
    let recs: IndexedRecord[] = [];
    let batchStart = position;
    let off = 0;
    while (off < buf.length) {
      const at = position + off;
      const c = checkRecord(buf, off, crcVerified);
      if (!c.ok) {
        throw invalid(
          c.problem === "short"
            ? `appendRaw: the bytes end inside the record at ${at} (torn input)`
            : `appendRaw: the record at ${at} is damaged (${c.problem})`,
        );
      }
      // Events of plain streams need only their index fields; the rest is decoded in full.
      const summary = summarizeEvent(buf, off, c.length, true);
      const rec =
        summary !== null && !isMetadataStream(summary.streamId)
          ? summary
          : decodeCheckedRecord(buf, off, c.length, false);
      if (rec === null) throw invalid(`appendRaw: the record at ${at} has a bad payload`);
      if (rec.kind === "event" || rec.kind === "summary") {
        let prev = streams.get(rec.streamId);
        if (prev === undefined) {
          const s = this.streams.get(rec.streamId);
          prev = { last: s?.wLast ?? -1, lastPos: s?.wLastPos ?? -1 };
          streams.set(rec.streamId, prev);
        }
        if (rec.revision !== prev.last + 1 || rec.prevPosition !== prev.lastPos) {
          throw invalid(
            `appendRaw: the event at ${at} is ${rec.streamId}@${rec.revision} after ${rec.prevPosition}, ` +
              `but this log continues that stream at revision ${prev.last + 1} after ${prev.lastPos}`,
            rec.streamId,
          );
        }
        prev.last = rec.revision;
        prev.lastPos = at;
      } else if (rec.kind === "epoch") {
        if (recs.length > 0 || !rec.batchEnd)
          throw invalid(`appendRaw: the EPOCH record at ${at} is not a batch of its own`);
        if (rec.epochNumber <= lastEpoch)
          throw invalid(
            `appendRaw: epoch ${rec.epochNumber} at ${at} is not above epoch ${lastEpoch}`,
          );
        lastEpoch = rec.epochNumber;
      }
      recs.push({ rec, position: at, state: undefined });
      off += c.length;
      if (rec.batchEnd) {
        batches.push({ start: batchStart, end: position + off, recs });
        recs = [];
        batchStart = position + off;
      }
    }
    if (recs.length > 0)
      throw invalid(`appendRaw: the bytes end inside an atomic batch starting at ${batchStart}`);
    // Valid: from here on nothing throws. Batches commit in order, so the last one's promise
    // stands for them all (a failure or a cut rejects every write from it on).
    const last = batches.length - 1;
    for (let i = 0; i < last; i++) {
      const b = batches[i] as (typeof batches)[number];
      this.enqueueWrite(
        b.start,
        buf.subarray(b.start - position, b.end - position),
        this.indexBatch(b.recs),
        NOOP,
        NOOP,
      );
    }
    const b = batches[last] as (typeof batches)[number];
    return this.enqueue(
      b.start,
      buf.subarray(b.start - position, b.end - position),
      this.indexBatch(b.recs),
    );
  }

  /**
   * Cuts the log back to the batch boundary `position` (at or above the commit position:
   * committed data is never removed). Queued and unsynced writes beyond it reject with a
   * `TruncatedError`; the write view of every stream the cut records touched goes back (the
   * committed view, which readers see, and the persisted index never change). Writes are
   * refused while it runs; afterwards they continue at `position`.
   */
  async truncate(position: number): Promise<void> {
    this.assertWritable(true); // a full disk does not stop a truncation: it frees space
    if (!Number.isSafeInteger(position) || position < this.commitPos) {
      throw invalid(
        `cannot truncate to ${position}: below the commit position ${this.commitPos} (committed data is never removed)`,
      );
    }
    if (position > this.reserveEnd)
      throw invalid(`cannot truncate to ${position}: beyond the end of the log ${this.reserveEnd}`);
    if (!this.isRecordBoundary(position))
      throw invalid(`cannot truncate to ${position}: not a record boundary`);
    if (position === this.reserveEnd) return;
    this.truncating = position;
    const cut = new TruncatedError(`the log was truncated to ${position}`);
    try {
      const kept: PendingWrite[] = [];
      const dropped: PendingWrite[] = [];
      for (const w of this.queue) {
        if (w.start >= position) {
          w.reject(cut);
          dropped.push(w);
        } else {
          kept.push(w);
        }
      }
      this.queue = kept;
      this.reserveEnd = position;
      this.recentEnds.splice(lastAtOrBelow(this.recentEnds, position) + 1);
      while (this.writer !== null) await this.writer;
      if (this.failure !== null) throw this.failure;
      // A write that failed meanwhile rolled the log back to its durable end.
      if (this.durablePos < position)
        throw (
          this.full ?? new Error(`internal: the log ends at ${this.durablePos}, before ${position}`)
        );
      this.reserveEnd = position;
      await this.settleBackground();
      const survivors: PendingWrite[] = [];
      for (const w of this.awaitingCommit) {
        if (w.end <= position) survivors.push(w);
        else w.reject(cut);
      }
      this.awaitingCommit = survivors;
      const waiting: CommitWaiter[] = [];
      for (const w of this.commitWaiters) {
        if (w.position <= position) waiting.push(w);
        else w.reject(cut);
      }
      this.commitWaiters = waiting;
      // What is cut: the log's tail from `position`, then queued writes that never reached it.
      const logEnd = this.log.end;
      // (A copy: the memory log hands out views of its blocks, which the cut clears.)
      const tail = Buffer.from(
        logEnd > position ? await this.log.read(position, logEnd - position) : Buffer.alloc(0),
      );
      // The checkpoint first: recovery refuses a log that ends before it.
      if (this.durablePos > position) {
        await this.log.writeCheckpoint({ durable: position, commit: this.commitPos }, true);
        this.checkpointedDurable = position;
      }
      if (logEnd > position) await this.log.truncate(position);
      this.durablePos = Math.min(this.durablePos, position);
      await this.rollBackWriteView([{ start: position, data: tail }, ...dropped], position);
    } catch (err) {
      if (!(err instanceof TruncatedError) && err !== this.full && err !== this.failure)
        this.fail(err, []);
      throw err;
    } finally {
      this.truncating = null;
    }
  }

  /** Persists the consensus hard state atomically; resolves once durable. */
  async writeHardState(state: StoredHardState): Promise<void> {
    if (this.phase !== "open") throw new StoreError("STORE_CLOSED", "store is not open");
    if (!Number.isSafeInteger(state.epoch) || state.epoch < 0)
      throw invalid("hard state epoch must be an integer >= 0");
    const body = Buffer.from(
      JSON.stringify({
        epoch: state.epoch,
        votedFor: state.votedFor ?? null,
        ...(state.recovering === true ? { recovering: true } : {}),
        ...(state.voters !== undefined ? { voters: state.voters } : {}),
      }),
      "utf8",
    );
    const out = Buffer.allocUnsafe(4 + body.length);
    out.writeUInt32LE(crc32c(body), 0);
    body.copy(out, 4);
    await this.log.writeHardState(out);
  }

  /** The last hard state written, or null when none was. */
  async readHardState(): Promise<StoredHardState | null> {
    if (this.phase !== "open") throw new StoreError("STORE_CLOSED", "store is not open");
    const buf = await this.log.readHardState();
    if (buf === null) return null;
    const body = buf.subarray(4);
    if (buf.length < 4 || crc32c(body) !== buf.readUInt32LE(0))
      throw new StoreError("CORRUPTED", "the consensus hard state is damaged");
    const json = JSON.parse(body.toString("utf8")) as {
      epoch: number;
      votedFor: string | null;
      recovering?: boolean;
      voters?: string[];
    };
    return {
      epoch: json.epoch,
      votedFor: json.votedFor ?? undefined,
      ...(json.recovering === true ? { recovering: true } : {}),
      ...(Array.isArray(json.voters) ? { voters: json.voters } : {}),
    };
  }

  /** Bytes of the write view (the log, then writes in flight and queued), synchronously. */
  /**
   * `readRaw` from the writes in flight and queued when `fromPosition` is where one of them
   * starts. Each holds exactly one batch, made by this process's encoder or CRC-checked on
   * receipt (`appendRaw`), so the records need no walk and no CRC: a leader proposes what it
   * has just written this way. Undefined when `fromPosition` is not in memory.
   */
  private readRawInMemory(
    fromPosition: number,
    maxBytes: number,
  ): { bytes: Buffer; end: number; batchEnds: number[] } | undefined {
    const first = this.inFlight[0] ?? this.queue[0];
    if (first === undefined || fromPosition < first.start) return undefined;
    const parts: Buffer[] = [];
    const batchEnds: number[] = [];
    scan: for (const writes of [this.inFlight, this.queue]) {
      for (const w of writes) {
        if (w.start < fromPosition) continue;
        if (w.start !== (batchEnds.at(-1) ?? fromPosition)) return undefined;
        if (batchEnds.length > 0 && w.end - fromPosition > maxBytes) break scan;
        parts.push(w.data);
        batchEnds.push(w.end);
        if (w.end - fromPosition >= maxBytes) break scan;
      }
    }
    const end = batchEnds.at(-1);
    if (end === undefined) return undefined;
    const bytes = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
    return { bytes, end, batchEnds };
  }

  private readBytesSync(position: number, length: number): Buffer {
    const end = Math.min(position + length, this.reserveEnd);
    if (position < 0 || end <= position) return Buffer.alloc(0);
    // The writes in flight and queued hold the log's last bytes (from the end of the file
    // before the write in flight) in memory: those are not read back from the file. A
    // leader proposes what it has just written this way, without a read.
    const memoryStart = (this.inFlight[0] ?? this.queue[0])?.start ?? this.log.end;
    const parts: Buffer[] = [];
    if (position < memoryStart)
      parts.push(this.log.readSync(position, Math.min(end, memoryStart) - position));
    if (end > memoryStart) {
      const lo = Math.max(position, memoryStart);
      for (const w of [...this.inFlight, ...this.queue]) {
        if (w.end <= lo || w.start >= end) continue;
        const from = Math.max(lo, w.start);
        parts.push(w.data.subarray(from - w.start, Math.min(end, w.end) - w.start));
      }
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** scanForward over the write view, synchronously. */
  private walkSync(
    from: number,
    limit: number,
    visit: (buf: Buffer, at: number, length: number, position: number) => boolean,
  ): { position: number; problem?: RecordProblem } {
    let pos = from;
    let want = RAW_READ_BLOCK_BYTES;
    while (pos < limit) {
      const step = scanBlock(
        this.readBytesSync(pos, Math.min(want, limit - pos)),
        pos,
        limit,
        visit,
      );
      if (step.done) return step.done;
      want = step.nextWant ?? RAW_READ_BLOCK_BYTES;
      pos = step.position;
    }
    return { position: pos };
  }

  // ------------------------------------------------------------------ reads

  get commitPosition(): number {
    return this.commitPos;
  }

  onCommit(listener: (commitPosition: number) => void): () => void {
    const wrapped = (p: number): void => listener(p);
    this.listeners.add(wrapped);
    return () => {
      this.listeners.delete(wrapped);
    };
  }

  getMetadata(streamId: string): Promise<StreamMetadata | null> {
    return Promise.resolve(this.streams.peek(streamId)?.meta ?? null);
  }

  stats(): LogStoreStats {
    return {
      events: this.eventCount,
      streams: this.streamCount,
      logBytes: this.log.sizeOnDisk,
      commitPosition: this.commitPos,
      syncs: this.syncCount,
      reservedPosition: this.reserveEnd,
      durablePosition: this.durablePos,
      idempotencyWindowSize: this.window.size,
      cachedStreams: this.streams.size,
      indexedPosition: this.streams.persistedUpTo,
      checkpointedCommitPosition: this.checkpointedCommit,
      storageFull: this.full !== null,
      ...(this.failure !== null &&
        this.phase === "open" && { writesRefused: this.failure.message }),
      syncRunningMs: this.syncStartMs === null ? 0 : performance.now() - this.syncStartMs,
      slowReadPauses: this.syncReads.pauses,
    };
  }

  async readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult> {
    this.assertReadable();
    validateStreamId(streamId);
    validateReadStreamOptions(options, streamId);
    const state = this.streams.get(streamId);
    const readable = readableRange(streamId, state ?? ABSENT_STREAM, this.nowMs());
    const plan = planStreamRead(options, readable);
    const page =
      state === undefined || plan.to < plan.from
        ? { recs: [], cut: false }
        : await this.readRange(
            state,
            plan.from,
            plan.to,
            options.direction,
            options.maxBytes ?? READ_PAGE_BYTES,
          );
    const recs = page.recs;
    const last = recs[recs.length - 1];
    // A page cut short for its bytes goes on after its last event.
    const cutAfter = page.cut && last !== undefined ? last.rec.revision : undefined;
    return {
      events: recs
        .filter((r) => withinMaxAge(r.rec.createdMs, readable))
        .map((r) => toStored(r.rec, r.position)),
      nextRevision:
        cutAfter === undefined
          ? plan.nextRevision
          : cutAfter + (options.direction === "forwards" ? 1 : -1),
      endOfStream: cutAfter === undefined && plan.endOfStream,
      lastRevision: readable.last,
    };
  }

  /** Events lo..hi (committed) of a stream, ascending, all of them (one append's, at most). */
  private async readWhole(
    state: StreamState,
    lo: number,
    hi: number,
  ): Promise<Array<{ rec: EventRecord; position: number }>> {
    return (await this.readRange(state, lo, hi, "forwards", Number.POSITIVE_INFINITY)).recs;
  }

  /**
   * Events lo..hi (committed) of a stream in the read's order, found through the sparse index
   * and back-links, as many as fit in `maxBytes` (page-bytes.ts): forwards the first of them,
   * backwards the last. `cut`: the page ends before `hi` (forwards) or `lo` (backwards).
   *
   * The walk goes down from `hi`. Backwards, that is the page's order. Forwards, the events the
   * walk meets first are the page's last: they are kept while all fit, the common case; once
   * they do not, the walk goes on down to `lo` through the back-links alone, and the page is
   * read up from `lo`. Either way no more than about `maxBytes` of events are held at once.
   */
  private async readRange(
    state: StreamState,
    lo: number,
    hi: number,
    direction: Direction,
    maxBytes: number,
  ): Promise<{ recs: Array<{ rec: EventRecord; position: number }>; cut: boolean }> {
    const k = Math.ceil(hi / SPARSE_EVERY);
    let rev: number;
    let pos: number;
    const sparsePos = k * SPARSE_EVERY <= state.last ? this.streams.sparseAt(state, k) : undefined;
    if (sparsePos !== undefined) {
      rev = k * SPARSE_EVERY;
      pos = sparsePos;
    } else {
      rev = state.last;
      pos = state.lastPos;
    }
    const reader = new StreamWalkReader(this.log, this.durablePos, this.syncReads);
    const backLink = async (at: number): Promise<number> => {
      const link = await reader.bytes(at + EVENT_PREV_POSITION_OFFSET, 8, "backwards");
      if (link.length < 8)
        throw new StoreError(
          "CORRUPTED",
          `cannot read the back-link of the event at ${at}`,
          state.name,
        );
      return link.readDoubleLE(0);
    };
    const eventAt = async (at: number, revision: number, walk: Direction): Promise<EventRecord> => {
      const rec = await this.readEventAt(reader, at, walk);
      if (rec === null || rec.streamId !== state.name || rec.revision !== revision) {
        throw new StoreError(
          "CORRUPTED",
          `expected ${state.name}@${revision} at position ${at}`,
          state.name,
        );
      }
      return rec;
    };
    while (rev > hi) {
      pos = await backLink(pos);
      rev--;
    }
    const out: Array<{ rec: EventRecord; position: number }> = [];
    let bytes = new PageBytes(maxBytes);
    while (rev >= lo) {
      const rec = await eventAt(pos, rev, "backwards");
      if (!bytes.fits(rec)) break;
      out.push({ rec, position: pos });
      pos = rec.prevPosition;
      rev--;
    }
    if (direction === "backwards") return { recs: out, cut: rev >= lo };
    if (rev < lo) return { recs: out.reverse(), cut: false };
    // Forwards, and lo..hi do not fit: the positions of the revisions below those read (the
    // events read are let go), then the page from lo up.
    const above = out.map((r) => r.position).reverse();
    out.length = 0;
    const positions: number[] = [];
    while (rev >= lo) {
      positions.push(pos);
      if (rev > lo) pos = await backLink(pos);
      rev--;
    }
    positions.reverse();
    positions.push(...above);
    const page: Array<{ rec: EventRecord; position: number }> = [];
    bytes = new PageBytes(maxBytes);
    for (let i = 0; i < positions.length; i++) {
      const at = positions[i] as number;
      const rec = await eventAt(at, lo + i, "forwards");
      if (!bytes.fits(rec)) return { recs: page, cut: true };
      page.push({ rec, position: at });
    }
    return { recs: page, cut: false };
  }

  private async readEventAt(
    reader: StreamWalkReader,
    position: number,
    walk: Direction,
  ): Promise<EventRecord | null> {
    const limit = this.durablePos;
    let buf = await reader.bytes(position, RECORD_PROBE_BYTES, walk);
    let c = checkRecord(buf, 0, reader.held);
    if (!c.ok && c.problem === "short" && buf.length >= 4) {
      const length = buf.readUInt32LE(0);
      if (length <= MAX_RECORD_BYTES && position + length <= limit) {
        buf = await reader.bytes(position, length, walk);
        c = checkRecord(buf, 0, reader.held);
      }
    }
    if (!c.ok) return null;
    const rec = decodeCheckedRecord(buf, 0, c.length, true);
    return rec?.kind === "event" ? rec : null;
  }

  async readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    this.assertReadable();
    const { direction, fromPosition, maxCount, filter } = options;
    const maxScan = options.maxScan ?? DEFAULT_MAX_SCAN;
    const commit = this.commitPos;
    validateReadAllOptions(options, commit);
    const nowMs = this.nowMs();
    const events: StoredEvent[] = [];
    let scanned = 0;
    // Each stream's committed view, looked up once per read (from the index when not cached).
    const views = new Map<string, StreamView>();
    const viewOf = (name: string): StreamView => {
      let v = views.get(name);
      if (v === undefined) {
        v = this.streams.peek(name) ?? ABSENT_STREAM;
        views.set(name, v);
      }
      return v;
    };
    const bytes = new PageBytes(options.maxBytes ?? READ_PAGE_BYTES);
    // Where the next page starts when this one ends before an event for its bytes: at the
    // event forwards, after it backwards (positions there are exclusive).
    let cutAt: number | undefined;
    // A filtered read copies out the data of the events its filter keeps only.
    const copy = filter === undefined;
    const take = (buf: Buffer, at: number, length: number, position: number): boolean => {
      const ev = decodeStoredEvent(buf, at, length, position, copy);
      // Records of other types (epochs, tombstones) are checked as before and skipped.
      if (ev === null || (ev === undefined && decodeCheckedRecord(buf, at, length, false) === null))
        throw new StoreError("CORRUPTED", `undecodable record at position ${position}`);
      scanned++;
      if (ev !== undefined && visibleInAll(ev, viewOf(ev.streamId), nowMs)) {
        if (copy || filter(ev)) {
          if (!bytes.fits(ev)) {
            scanned--;
            cutAt = direction === "forwards" ? position : position + length;
            return false;
          }
          if (!copy) {
            ev.data = copyBytes(ev.data as Buffer);
            ev.metadata = copyBytes(ev.metadata as Buffer);
          }
          events.push(ev);
        }
      }
      return events.length < maxCount && scanned < maxScan;
    };

    if (direction === "forwards") {
      const from = fromPosition === "end" ? commit : fromPosition;
      const res = await this.scanForward(from, commit, READ_BLOCK_BYTES, take);
      if (res.problem !== undefined) {
        if (res.position === from) throw invalid(`position ${from} is not the start of a record`);
        throw new StoreError(
          "CORRUPTED",
          `log record at position ${res.position} is damaged (${res.problem})`,
        );
      }
      if (cutAt !== undefined) return { events, nextPosition: cutAt, endOfStream: false, scanned };
      return { events, nextPosition: res.position, endOfStream: res.position >= commit, scanned };
    }
    const from = fromPosition === "end" ? commit : fromPosition;
    const pos = await this.scanBackward(from, take);
    if (cutAt !== undefined) return { events, nextPosition: cutAt, endOfStream: false, scanned };
    return { events, nextPosition: pos, endOfStream: pos <= 0, scanned };
  }

  /**
   * Visits valid records from `from` up to `limit`. Stops when `visit` returns false (after that
   * record) or at the first problem, reporting where.
   */
  private async scanForward(
    from: number,
    limit: number,
    blockBytes: number,
    visit: (buf: Buffer, at: number, length: number, position: number) => boolean,
  ): Promise<{ position: number; problem?: RecordProblem }> {
    let pos = from;
    let want = blockBytes;
    while (pos < limit) {
      // Blocks read from memory come without a turn of the event loop: give one now and then.
      const due = turnIfDue();
      if (due !== undefined) await due;
      const length = Math.min(want, limit - pos);
      const held = this.log.readHeld(pos, length);
      const step = scanBlock(
        held ?? (await this.log.read(pos, length)),
        pos,
        limit,
        visit,
        held !== undefined,
      );
      if (step.done) return step.done;
      want = step.nextWant ?? blockBytes;
      pos = step.position;
    }
    return { position: pos };
  }

  /** Visits valid records backwards from `from` (exclusive); returns where it stopped (exclusive bound). */
  private async scanBackward(
    from: number,
    visit: (buf: Buffer, at: number, length: number, position: number) => boolean,
  ): Promise<number> {
    let pos = from;
    let want = READ_BLOCK_BYTES;
    while (pos > 0) {
      const due = turnIfDue();
      if (due !== undefined) await due;
      const start = Math.max(0, pos - want);
      const held = this.log.readHeld(start, pos - start);
      const buf = held ?? (await this.log.read(start, pos - start));
      let end = buf.length;
      while (end >= RECORD_TRAILER_BYTES) {
        const length = buf.readUInt32LE(end - RECORD_TRAILER_BYTES);
        if (length > end) break;
        const c = checkRecord(buf, end - length, held !== undefined);
        if (!c.ok || c.length !== length) {
          if (start + end === from) throw invalid(`position ${from} is not the end of a record`);
          throw new StoreError(
            "CORRUPTED",
            `log record ending at position ${start + end} is damaged`,
          );
        }
        end -= length;
        if (!visit(buf, end, length, start + end)) return start + end;
      }
      if (end === buf.length) {
        // No whole record ends at `pos` in this block: one larger than the block (its trailer
        // says how large: read that much next), or none.
        const length =
          end >= RECORD_TRAILER_BYTES ? buf.readUInt32LE(end - RECORD_TRAILER_BYTES) : 0;
        if (length > end && length <= MAX_RECORD_BYTES && length <= pos && want < length) {
          want = length;
          continue;
        }
        // A position the caller chose, not damage.
        if (pos === from) throw invalid(`position ${from} is not the end of a record`);
        throw new StoreError("CORRUPTED", `log record ending at position ${pos} is damaged`);
      }
      want = READ_BLOCK_BYTES;
      pos = start + end;
    }
    return pos;
  }
}

/** An awaiting-commit entry for a rescanned batch, keeping the promise of its append if any. */
/** A recovered batch above the commit position, waiting for its commit like a write. */
function pendingWrite(batch: PendingBatch): PendingWrite {
  return {
    start: 0,
    data: Buffer.alloc(0),
    end: batch.end,
    apply: batch.apply,
    resolve: () => undefined,
    reject: () => undefined,
  };
}

/** The ids and positions of events read back, for the idempotency decisions. */
function storedIds(recs: ReadonlyArray<{ rec: EventRecord; position: number }>): StoredId[] {
  return recs.map((r) => ({ id: r.rec.idKey, position: r.position }));
}
