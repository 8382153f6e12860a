/**
 * The StreamStore over a Log: appends with expected versions and idempotency, group commit,
 * reads, deletes, metadata, recovery. The same code runs over the disk and the memory log.
 */
import { randomUUID } from "node:crypto";
import {
  METADATA_EVENT_TYPE,
  eventTypeProblem,
  isMetadataStream,
  isUuid,
  metadataStreamOf,
  streamNameProblem,
} from "@chorus/protocol";
import {
  StoreError,
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
import { silentLogger, type Log, type Logger } from "./log.js";
import {
  EVENT_PREV_POSITION_OFFSET,
  MAX_RECORD_BYTES,
  RECORD_TRAILER_BYTES,
  checkRecord,
  decodeCheckedRecord,
  encodeEvent,
  encodeTombstone,
  keyToUuid,
  summarizeEvent,
  uuidToKey,
  type EventRecord,
  type EventSummary,
  type LogRecord,
  type RecordProblem,
} from "./record.js";
import {
  IdempotencyWindow,
  SOFT_DELETED_KEY,
  SPARSE_EVERY,
  StreamState,
  decodeSnapshot,
  encodeSnapshot,
  firstReadable,
  isSoftDeleted,
  maxAgeCutoffMs,
  parseMetadata,
} from "./stream-index.js";

export const DEFAULT_IDEMPOTENCY_WINDOW = 100_000;
export const DEFAULT_SNAPSHOT_EVERY_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_SCAN = 100_000;
const READ_BLOCK_BYTES = 256 * 1024;
const RECOVERY_BLOCK_BYTES = 8 * 1024 * 1024;
const RECORD_PROBE_BYTES = 4096;
/** A stream read walks backwards; each log read fetches this much before the record it needs. */
const STREAM_READ_BLOCK_BYTES = 16 * 1024;

/** Serves reads from the last block fetched; blocks extend backwards (stream reads follow back-links). */
class BackwardReader {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;

  constructor(
    private readonly log: Log,
    private readonly limit: number,
  ) {}

  async bytes(position: number, length: number): Promise<Buffer> {
    const end = Math.min(position + length, this.limit);
    if (end <= position) return Buffer.alloc(0);
    if (position >= this.start && end <= this.start + this.buf.length) {
      return this.buf.subarray(position - this.start, end - this.start);
    }
    const blockEnd = Math.min(this.limit, Math.max(end, position + RECORD_PROBE_BYTES));
    const blockStart = Math.max(0, Math.min(position, blockEnd - STREAM_READ_BLOCK_BYTES));
    this.buf = await this.log.read(blockStart, blockEnd - blockStart);
    this.start = blockStart;
    return this.buf.subarray(
      position - blockStart,
      Math.max(position - blockStart, Math.min(end - blockStart, this.buf.length)),
    );
  }
}

export interface LogStoreOptions {
  logger?: Logger;
  /** Recent event ids remembered for `any` / `stream_exists` idempotency. */
  idempotencyWindow?: number;
  /** Write an index snapshot every this many bytes of log (and on close). */
  snapshotEveryBytes?: number;
  /**
   * true (single node): an append is committed as soon as it is fsync'd. false (cluster): the
   * consensus layer moves the commit position with setCommitPosition().
   */
  autoCommit?: boolean;
  /** Clock for createdMs and maxAgeSec (ms since the epoch). */
  nowMs?: () => number;
}

export interface LogStoreStats extends StoreStats {
  /** Number of log syncs (fsyncs on disk) done since open. */
  syncs: number;
  /** End of the log including appends still queued. */
  reservedPosition: number;
  durablePosition: number;
  idempotencyWindowSize: number;
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

function wev(state: StreamState | undefined): WriteResult {
  return {
    ok: false,
    wrongExpectedVersion: {
      streamExists: state !== undefined && streamExistsForWrite(state),
      actualRevision: state?.wLast ?? -1,
    },
  };
}

function streamExistsForWrite(s: StreamState): boolean {
  return s.wLast >= 0 && !isSoftDeleted(s.wMeta, s.wLast);
}

function invalid(message: string, streamId?: string): StoreError {
  return new StoreError("INVALID_ARGUMENT", message, streamId);
}

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

export class LogStore implements StreamStore {
  private readonly logger: Logger;
  private readonly snapshotEveryBytes: number;
  private readonly autoCommit: boolean;
  private readonly nowMs: () => number;
  private readonly window: IdempotencyWindow;

  private phase: Phase = "new";
  private streams = new Map<string, StreamState>();
  private eventCount = 0;
  private streamCount = 0;
  private syncCount = 0;

  private reserveEnd = 0;
  private durableEnd = 0;
  private commitPos = 0;

  private queue: PendingWrite[] = [];
  private awaitingCommit: PendingWrite[] = [];
  private commitWaiters: CommitWaiter[] = [];
  private writer: Promise<void> | null = null;
  private failure: Error | null = null;
  private readonly listeners = new Set<(commitPosition: number) => void>();

  private background = new Set<Promise<void>>();
  private checkpointInFlight = false;
  private snapshotInFlight = false;
  private lastSnapshotPos = 0;

  constructor(
    private readonly log: Log,
    options: LogStoreOptions = {},
  ) {
    this.logger = options.logger ?? silentLogger;
    this.snapshotEveryBytes = options.snapshotEveryBytes ?? DEFAULT_SNAPSHOT_EVERY_BYTES;
    this.autoCommit = options.autoCommit ?? true;
    this.nowMs = options.nowMs ?? Date.now;
    const capacity = options.idempotencyWindow ?? DEFAULT_IDEMPOTENCY_WINDOW;
    if (!Number.isSafeInteger(capacity) || capacity < 0)
      throw new RangeError("idempotencyWindow must be an integer >= 0");
    this.window = new IdempotencyWindow(capacity);
  }

  // ------------------------------------------------------------------ lifecycle

  async open(): Promise<void> {
    if (this.phase === "open") return;
    if (this.phase === "closing") throw new StoreError("STORE_CLOSED", "store is closing");
    this.streams = new Map();
    this.window.clear();
    this.eventCount = 0;
    this.streamCount = 0;
    this.syncCount = 0;
    this.failure = null;
    this.queue = [];
    this.awaitingCommit = [];
    this.commitWaiters = [];
    const started = performance.now();
    await this.log.open();
    try {
      await this.recover();
    } catch (err) {
      await this.log.close();
      throw err;
    }
    this.reserveEnd = this.durableEnd = this.commitPos = this.log.end;
    this.lastSnapshotPos = this.commitPos;
    this.phase = "open";
    this.logger.info(
      {
        events: this.eventCount,
        streams: this.streamCount,
        position: this.commitPos,
        openMs: Math.round(performance.now() - started),
      },
      "store opened",
    );
  }

  async close(): Promise<void> {
    if (this.phase !== "open") return;
    this.phase = "closing";
    try {
      while (this.writer !== null) await this.writer;
      await this.settleBackground();
      if (this.failure === null) {
        await this.log.writeSnapshot(
          encodeSnapshot(this.commitPos, this.eventCount, this.streams.values(), this.window),
        );
        await this.log.writeCheckpoint(this.durableEnd, true);
      }
    } finally {
      this.rejectWaiters(new StoreError("STORE_CLOSED", "store closed"));
      await this.log.close();
      this.phase = "closed";
    }
  }

  /** Releases the files at once, without flushing a snapshot or checkpoint (like a crash). */
  async abort(): Promise<void> {
    if (this.phase !== "open") return;
    this.phase = "closing";
    const err = new StoreError("STORE_CLOSED", "store aborted");
    this.failure ??= err;
    for (const w of this.queue) w.reject(err);
    this.queue = [];
    while (this.writer !== null) await this.writer.catch(() => undefined);
    await this.settleBackground();
    this.rejectWaiters(err);
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

  private async recover(): Promise<void> {
    let from = 0;
    const snapBytes = await this.log.readSnapshot();
    if (snapBytes !== null) {
      const snap = decodeSnapshot(snapBytes);
      if (snap === null) {
        this.logger.warn({}, "index snapshot unreadable; rebuilding the index from the whole log");
      } else if (snap.position > this.log.end) {
        throw new StoreError(
          "CORRUPTED",
          `log ends at ${this.log.end}, before the index snapshot position ${snap.position}`,
        );
      } else {
        this.streams = snap.streams;
        for (const [key, entry] of snap.window) this.window.add(key, entry);
        this.eventCount = snap.events;
        for (const s of this.streams.values()) if (s.last >= 0) this.streamCount++;
        from = snap.position;
      }
    }
    const checkpoint = (await this.log.readCheckpoint()) ?? from;
    if (checkpoint > this.log.end) {
      throw new StoreError(
        "CORRUPTED",
        `log ends at ${this.log.end}, before the checkpoint ${checkpoint}: durable data is missing`,
      );
    }

    let batch: Array<{ rec: LogRecord | EventSummary; position: number }> = [];
    let batchStart = from;
    let badPayloadAt = -1;
    const end = this.log.end;
    const scan = await this.scanForward(
      from,
      end,
      RECOVERY_BLOCK_BYTES,
      (buf, at, length, position) => {
        // Fast path: plain events only need their index fields; metadata events and others are decoded.
        const summary = summarizeEvent(buf, at, length);
        const rec =
          summary !== null && !summary.streamId.startsWith("$$")
            ? summary
            : decodeCheckedRecord(buf, at, length, false);
        if (rec === null) {
          badPayloadAt = position;
          return false;
        }
        batch.push({ rec, position });
        if (rec.batchEnd) {
          for (const r of batch) this.recoverRecord(r.rec, r.position);
          batch = [];
          batchStart = position + length;
        }
        return true;
      },
    );
    let problem: RecordProblem | "incomplete_batch" | null = scan.problem ?? null;
    let problemAt = scan.problem !== undefined ? scan.position : -1;
    if (badPayloadAt >= 0) {
      problem = "bad_payload";
      problemAt = badPayloadAt;
    } else if (problem === null && batch.length > 0) {
      problem = "incomplete_batch";
      problemAt = batchStart;
    }
    if (problem === null) return;
    if (problemAt < checkpoint || batchStart < checkpoint) {
      throw new StoreError(
        "CORRUPTED",
        `log record at position ${problemAt} is damaged (${problem}), before the checkpoint ${checkpoint}`,
      );
    }
    this.logger.warn(
      { position: batchStart, problem, problemAt, droppedBytes: end - batchStart },
      "truncating a torn tail of the log",
    );
    await this.log.truncate(batchStart);
  }

  private recoverRecord(rec: LogRecord | EventSummary, position: number): void {
    if (!("kind" in rec)) {
      this.recoverEvent(rec, position);
      return;
    }
    if (rec.kind === "tombstone") {
      const s = this.stateFor(rec.streamId);
      s.tombstoned = s.wTombstoned = true;
      return;
    }
    if (rec.kind !== "event") return;
    this.recoverEvent(rec, position);
    if (rec.type === METADATA_EVENT_TYPE && isMetadataStream(rec.streamId)) {
      const target = this.stateFor(rec.streamId.slice(2));
      target.meta = target.wMeta = parseMetadata(rec.data);
    }
  }

  private recoverEvent(rec: EventSummary, position: number): void {
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
    if (rec.revision % SPARSE_EVERY === 0) s.sparse[rec.revision / SPARSE_EVERY] = position;
    this.window.add(rec.idKey, { stream: s, revision: rec.revision, position });
    this.eventCount++;
  }

  private stateFor(name: string): StreamState {
    let s = this.streams.get(name);
    if (s === undefined) {
      s = new StreamState(name);
      this.streams.set(name, s);
    }
    return s;
  }

  // ------------------------------------------------------------------ writes

  private assertWritable(): void {
    if (this.phase !== "open") throw new StoreError("STORE_CLOSED", "store is not open");
    if (this.failure !== null) throw this.failure;
  }

  private assertReadable(): void {
    if (this.phase !== "open") throw new StoreError("STORE_CLOSED", "store is not open");
  }

  async append(
    streamId: string,
    expected: ExpectedVersion,
    events: NewEvent[],
  ): Promise<WriteResult> {
    this.assertWritable();
    const nameProblem = streamNameProblem(streamId);
    if (nameProblem !== null) throw invalid(nameProblem, streamId);
    validateExpected(expected, streamId);
    if (!Array.isArray(events)) throw invalid("events must be an array", streamId);
    const keys: string[] = [];
    for (const e of events) {
      if (!isUuid(e.id)) throw invalid(`event id ${String(e.id)} is not a UUID`, streamId);
      const typeProblem = eventTypeProblem(e.type);
      if (typeProblem !== null) throw invalid(typeProblem, streamId);
      if (!(e.data instanceof Uint8Array) || !(e.metadata instanceof Uint8Array)) {
        throw invalid("event data and metadata must be byte arrays", streamId);
      }
      keys.push(uuidToKey(e.id));
    }
    let newMeta: StreamMetadata | null | undefined;
    let target: string | undefined;
    if (isMetadataStream(streamId)) {
      target = streamId.slice(2);
      if (this.streams.get(target)?.wTombstoned === true) {
        throw new StoreError("STREAM_DELETED", `stream ${target} is deleted`, target);
      }
      for (const e of events) {
        if (e.type !== METADATA_EVENT_TYPE) continue;
        const meta = parseMetadata(e.data);
        if (meta === null) throw invalid("stream metadata must be a JSON object", streamId);
        newMeta = meta;
      }
    }
    const state = this.streams.get(streamId);
    if (state?.wTombstoned === true)
      throw new StoreError("STREAM_DELETED", `stream ${streamId} is deleted`, streamId);

    // Idempotent retry of a recent append?
    const fromWindow = this.matchWindow(state, expected, keys);
    if (fromWindow === "partial") return wev(state);
    if (fromWindow !== null) {
      await this.waitForCommit(fromWindow.position + 1);
      return fromWindow;
    }

    const exists = state !== undefined && streamExistsForWrite(state);
    const last = state?.wLast ?? -1;
    switch (expected.kind) {
      case "any":
        break;
      case "stream_exists":
        if (!exists) return wev(state);
        break;
      case "no_stream":
        if (exists) return this.matchLog(state, 0, keys);
        break;
      case "exact":
        if (expected.revision !== last) {
          return state !== undefined && expected.revision < last
            ? this.matchLog(state, expected.revision + 1, keys)
            : wev(state);
        }
        break;
    }
    if (events.length === 0) {
      await this.waitForCommit(this.reserveEnd);
      return { ok: true, nextExpectedVersion: last, position: state?.wLastPos ?? -1 };
    }
    const s = state ?? this.stateFor(streamId);
    const targetState =
      target !== undefined && newMeta !== undefined ? this.stateFor(target) : undefined;
    return this.enqueueEvents(s, events, keys, targetState, newMeta ?? null);
  }

  async delete(streamId: string, expected: ExpectedVersion, hard: boolean): Promise<WriteResult> {
    this.assertWritable();
    const nameProblem = streamNameProblem(streamId);
    if (nameProblem !== null) throw invalid(nameProblem, streamId);
    validateExpected(expected, streamId);
    const state = this.streams.get(streamId);
    if (state?.wTombstoned === true)
      throw new StoreError("STREAM_DELETED", `stream ${streamId} is deleted`, streamId);
    const exists = state !== undefined && streamExistsForWrite(state);
    const last = state?.wLast ?? -1;
    if (
      (expected.kind === "no_stream" && exists) ||
      (expected.kind === "stream_exists" && !exists) ||
      (expected.kind === "exact" && expected.revision !== last)
    ) {
      return wev(state);
    }
    if (hard) {
      const s = state ?? this.stateFor(streamId);
      const position = this.reserveEnd;
      const data = encodeTombstone({ batchEnd: true, streamId, createdMs: this.nowMs() });
      s.wTombstoned = true;
      await this.enqueue(position, data, () => {
        s.tombstoned = true;
      });
      return { ok: true, nextExpectedVersion: last, position };
    }
    if (isMetadataStream(streamId))
      throw invalid("a metadata stream cannot be soft-deleted", streamId);
    const metaState = this.stateFor(metadataStreamOf(streamId));
    const targetState = this.stateFor(streamId);
    const meta: StreamMetadata = {
      ...(targetState.wMeta ?? {}),
      truncateBefore: last + 1,
      [SOFT_DELETED_KEY]: true,
    };
    const id = randomUUID();
    const data = Buffer.from(JSON.stringify(meta), "utf8");
    const result = await this.enqueueEvents(
      metaState,
      [{ id, type: METADATA_EVENT_TYPE, isJson: true, data, metadata: new Uint8Array(0) }],
      [uuidToKey(id)],
      targetState,
      meta,
    );
    return result.ok ? { ok: true, nextExpectedVersion: last, position: result.position } : result;
  }

  /** Looks the ids up in the idempotency window. */
  private matchWindow(
    state: StreamState | undefined,
    expected: ExpectedVersion,
    keys: string[],
  ): (WriteResult & { ok: true }) | "partial" | null {
    const k0 = keys[0];
    if (state === undefined || k0 === undefined) return null;
    const first = this.window.get(k0);
    if (first?.stream !== state) return null;
    if (expected.kind === "exact" && first.revision !== expected.revision + 1) return null;
    let lastPosition = first.position;
    for (let i = 1; i < keys.length; i++) {
      const e = this.window.get(keys[i] ?? "");
      if (e?.stream !== state || e.revision !== first.revision + i) return "partial";
      lastPosition = e.position;
    }
    return {
      ok: true,
      nextExpectedVersion: first.revision + keys.length - 1,
      position: lastPosition,
    };
  }

  /** Idempotency by reading the stream: do revisions from.. hold these ids? */
  private async matchLog(state: StreamState, from: number, keys: string[]): Promise<WriteResult> {
    // The answer reflects the stream as it was when the append was made.
    const mismatch = wev(state);
    const hi = from + keys.length - 1;
    if (keys.length === 0 || hi > state.wLast) return mismatch;
    await this.waitForCommit(state.wLastPos + 1);
    if (hi > state.last) return mismatch;
    const recs = await this.readRange(state, from, hi);
    for (let i = 0; i < keys.length; i++) {
      if (recs[i]?.rec.idKey !== keys[i]) return mismatch;
    }
    const lastRec = recs[recs.length - 1];
    return lastRec === undefined
      ? mismatch
      : { ok: true, nextExpectedVersion: hi, position: lastRec.position };
  }

  private async enqueueEvents(
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
      if (r % SPARSE_EVERY === 0) s.sparse[r / SPARSE_EVERY] = p;
      this.window.add(keys[i] as string, { stream: s, revision: r, position: p });
    }
    s.wLast = rev;
    s.wLastPos = prev;
    if (metaTarget !== undefined) metaTarget.wMeta = meta;
    const lastRev = rev;
    const lastPos = prev;
    const count = events.length;
    await this.enqueue(
      start,
      buffers.length === 1 ? (buffers[0] as Buffer) : Buffer.concat(buffers, pos - start),
      () => {
        if (s.last < 0) this.streamCount++;
        s.last = lastRev;
        s.lastPos = lastPos;
        this.eventCount += count;
        if (metaTarget !== undefined) metaTarget.meta = meta;
      },
    );
    return { ok: true, nextExpectedVersion: lastRev, position: lastPos };
  }

  private enqueue(start: number, data: Buffer, apply: () => void): Promise<void> {
    if (start !== this.reserveEnd)
      throw new Error(
        `internal: enqueue at ${start} but the log is reserved up to ${this.reserveEnd}`,
      );
    this.reserveEnd = start + data.length;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ start, data, end: start + data.length, apply, resolve, reject });
      if (this.writer === null) this.writer = this.writeLoop();
    });
  }

  /** The group-commit loop: everything queued goes out in one write and one sync. */
  private async writeLoop(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.failure === null) {
        const batch = this.queue;
        this.queue = [];
        const first = batch[0] as PendingWrite;
        const data = batch.length === 1 ? first.data : Buffer.concat(batch.map((w) => w.data));
        try {
          if (first.start !== this.log.end)
            throw new Error(
              `internal: write at ${first.start} but the log ends at ${this.log.end}`,
            );
          await this.log.write(first.start, data);
          await this.log.sync();
        } catch (err) {
          this.fail(err, batch);
          return;
        }
        this.syncCount++;
        this.durableEnd = first.start + data.length;
        for (const w of batch) this.awaitingCommit.push(w);
        if (this.autoCommit) this.setCommitPosition(this.durableEnd);
        this.afterSync();
      }
    } finally {
      this.writer = null;
    }
  }

  private fail(cause: unknown, inFlight: PendingWrite[]): void {
    const err = cause instanceof Error ? cause : new Error(String(cause));
    this.failure = err;
    this.logger.error({ err }, "log write or sync failed; the store refuses further writes");
    for (const w of inFlight) w.reject(err);
    for (const w of this.queue) w.reject(err);
    this.queue = [];
    const still: CommitWaiter[] = [];
    for (const w of this.commitWaiters) {
      if (w.position > this.durableEnd) w.reject(err);
      else still.push(w);
    }
    this.commitWaiters = still;
  }

  private afterSync(): void {
    if (!this.checkpointInFlight) {
      this.checkpointInFlight = true;
      this.track(
        this.log.writeCheckpoint(this.durableEnd, false).finally(() => {
          this.checkpointInFlight = false;
        }),
      );
    }
    if (
      !this.snapshotInFlight &&
      this.commitPos - this.lastSnapshotPos >= this.snapshotEveryBytes
    ) {
      this.snapshotInFlight = true;
      this.lastSnapshotPos = this.commitPos;
      const bytes = encodeSnapshot(
        this.commitPos,
        this.eventCount,
        this.streams.values(),
        this.window,
      );
      this.track(
        this.log.writeSnapshot(bytes).finally(() => {
          this.snapshotInFlight = false;
        }),
      );
    }
  }

  /**
   * Moves the commit position (cluster use; on a single node the store does it after each
   * sync). Must be a record boundary at or below the durable end.
   */
  setCommitPosition(position: number): void {
    if (position > this.durableEnd)
      throw new RangeError(`commit position ${position} beyond durable end ${this.durableEnd}`);
    if (position <= this.commitPos) return;
    this.commitPos = position;
    let n = 0;
    while (
      n < this.awaitingCommit.length &&
      (this.awaitingCommit[n] as PendingWrite).end <= position
    ) {
      (this.awaitingCommit[n] as PendingWrite).apply();
      n++;
    }
    const done = this.awaitingCommit.splice(0, n);
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

  private rejectWaiters(err: unknown): void {
    for (const w of this.commitWaiters) w.reject(err);
    this.commitWaiters = [];
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

  getMetadata(streamId: string): StreamMetadata | null {
    return this.streams.get(streamId)?.meta ?? null;
  }

  stats(): LogStoreStats {
    return {
      events: this.eventCount,
      streams: this.streamCount,
      logBytes: this.log.sizeOnDisk,
      commitPosition: this.commitPos,
      syncs: this.syncCount,
      reservedPosition: this.reserveEnd,
      durablePosition: this.durableEnd,
      idempotencyWindowSize: this.window.size,
    };
  }

  async readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult> {
    this.assertReadable();
    const nameProblem = streamNameProblem(streamId);
    if (nameProblem !== null) throw invalid(nameProblem, streamId);
    const { direction, fromRevision, maxCount } = options;
    if (!Number.isSafeInteger(maxCount) || maxCount < 1)
      throw invalid("maxCount must be a positive integer", streamId);
    if (fromRevision !== "end" && (!Number.isSafeInteger(fromRevision) || fromRevision < 0)) {
      throw invalid('fromRevision must be an integer >= 0 or "end"', streamId);
    }
    if (direction !== "forwards" && direction !== "backwards")
      throw invalid("direction must be forwards or backwards", streamId);
    const state = this.streams.get(streamId);
    if (state?.tombstoned === true)
      throw new StoreError("STREAM_DELETED", `stream ${streamId} is deleted`, streamId);
    const meta = isMetadataStream(streamId) ? null : (state?.meta ?? null);
    if (state === undefined || state.last < 0 || isSoftDeleted(meta, state.last)) {
      throw new StoreError("STREAM_NOT_FOUND", `stream ${streamId} not found`, streamId);
    }
    const last = state.last;
    const first = firstReadable(meta, last);
    const cutoff = maxAgeCutoffMs(meta, this.nowMs());
    const keep = (r: { rec: EventRecord; position: number }): boolean => r.rec.createdMs >= cutoff;
    if (direction === "forwards") {
      const start = Math.max(fromRevision === "end" ? last + 1 : fromRevision, first);
      if (start > last)
        return { events: [], nextRevision: start, endOfStream: true, lastRevision: last };
      const hi = Math.min(start + maxCount - 1, last);
      const recs = await this.readRange(state, start, hi);
      return {
        events: recs.filter(keep).map((r) => toStored(r.rec, r.position)),
        nextRevision: hi + 1,
        endOfStream: hi >= last,
        lastRevision: last,
      };
    }
    const from = fromRevision === "end" ? last : Math.min(fromRevision, last);
    if (from < first)
      return { events: [], nextRevision: -1, endOfStream: true, lastRevision: last };
    const lo = Math.max(from - maxCount + 1, first);
    const recs = await this.readRange(state, lo, from);
    recs.reverse();
    return {
      events: recs.filter(keep).map((r) => toStored(r.rec, r.position)),
      nextRevision: lo - 1,
      endOfStream: lo <= first,
      lastRevision: last,
    };
  }

  /** Events lo..hi (committed) of a stream, ascending, found through the sparse index and back-links. */
  private async readRange(
    state: StreamState,
    lo: number,
    hi: number,
  ): Promise<Array<{ rec: EventRecord; position: number }>> {
    const k = Math.ceil(hi / SPARSE_EVERY);
    let rev: number;
    let pos: number;
    const sparsePos = state.sparse[k];
    if (k * SPARSE_EVERY <= state.last && sparsePos !== undefined) {
      rev = k * SPARSE_EVERY;
      pos = sparsePos;
    } else {
      rev = state.last;
      pos = state.lastPos;
    }
    const reader = new BackwardReader(this.log, this.durableEnd);
    while (rev > hi) {
      const link = await reader.bytes(pos + EVENT_PREV_POSITION_OFFSET, 8);
      if (link.length < 8)
        throw new StoreError(
          "CORRUPTED",
          `cannot read the back-link of the event at ${pos}`,
          state.name,
        );
      pos = link.readDoubleLE(0);
      rev--;
    }
    const out: Array<{ rec: EventRecord; position: number }> = [];
    while (rev >= lo) {
      const rec = await this.readEventAt(reader, pos);
      if (rec === null || rec.streamId !== state.name || rec.revision !== rev) {
        throw new StoreError(
          "CORRUPTED",
          `expected ${state.name}@${rev} at position ${pos}`,
          state.name,
        );
      }
      out.push({ rec, position: pos });
      pos = rec.prevPosition;
      rev--;
    }
    out.reverse();
    return out;
  }

  private async readEventAt(reader: BackwardReader, position: number): Promise<EventRecord | null> {
    const limit = this.durableEnd;
    let buf = await reader.bytes(position, RECORD_PROBE_BYTES);
    let c = checkRecord(buf, 0);
    if (!c.ok && c.problem === "short" && buf.length >= 4) {
      const length = buf.readUInt32LE(0);
      if (length <= MAX_RECORD_BYTES && position + length <= limit) {
        buf = await reader.bytes(position, length);
        c = checkRecord(buf, 0);
      }
    }
    if (!c.ok) return null;
    const rec = decodeCheckedRecord(buf, 0, c.length, true);
    return rec?.kind === "event" ? rec : null;
  }

  /** Is an event of $all visible under its stream's delete / metadata rules? */
  private visible(rec: EventRecord, nowMs: number): boolean {
    const s = this.streams.get(rec.streamId);
    if (s === undefined) return true;
    if (s.tombstoned) return false;
    if (isMetadataStream(rec.streamId) || s.meta === null) return true;
    if (rec.revision < firstReadable(s.meta, s.last)) return false;
    return rec.createdMs >= maxAgeCutoffMs(s.meta, nowMs);
  }

  async readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    this.assertReadable();
    const { direction, fromPosition, maxCount, filter } = options;
    const maxScan = options.maxScan ?? DEFAULT_MAX_SCAN;
    if (!Number.isSafeInteger(maxCount) || maxCount < 1)
      throw invalid("maxCount must be a positive integer");
    if (!(maxScan >= 1)) throw invalid("maxScan must be >= 1");
    const commit = this.commitPos;
    if (
      fromPosition !== "end" &&
      (!Number.isSafeInteger(fromPosition) || fromPosition < 0 || fromPosition > commit)
    ) {
      throw invalid(
        `fromPosition must be an integer between 0 and the commit position ${commit}, or "end"`,
      );
    }
    const nowMs = this.nowMs();
    const events: StoredEvent[] = [];
    let scanned = 0;
    const take = (rec: LogRecord | null, position: number): boolean => {
      if (rec === null)
        throw new StoreError("CORRUPTED", `undecodable record at position ${position}`);
      scanned++;
      if (rec.kind === "event" && this.visible(rec, nowMs)) {
        const ev = toStored(rec, position);
        if (filter === undefined || filter(ev)) events.push(ev);
      }
      return events.length < maxCount && scanned < maxScan;
    };

    if (direction === "forwards") {
      const from = fromPosition === "end" ? commit : fromPosition;
      const res = await this.scanForward(
        from,
        commit,
        READ_BLOCK_BYTES,
        (buf, at, length, position) => take(decodeCheckedRecord(buf, at, length, true), position),
      );
      if (res.problem !== undefined) {
        if (res.position === from) throw invalid(`position ${from} is not the start of a record`);
        throw new StoreError(
          "CORRUPTED",
          `log record at position ${res.position} is damaged (${res.problem})`,
        );
      }
      return { events, nextPosition: res.position, endOfStream: res.position >= commit };
    }
    if (direction !== "backwards") throw invalid("direction must be forwards or backwards");
    const from = fromPosition === "end" ? commit : fromPosition;
    const pos = await this.scanBackward(from, (buf, at, length, position) =>
      take(decodeCheckedRecord(buf, at, length, true), position),
    );
    return { events, nextPosition: pos, endOfStream: pos <= 0 };
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
      const buf = await this.log.read(pos, Math.min(want, limit - pos));
      want = blockBytes;
      let off = 0;
      while (off < buf.length) {
        const c = checkRecord(buf, off);
        if (!c.ok) {
          if (c.problem === "short" && pos + buf.length < limit) break;
          return { position: pos + off, problem: c.problem };
        }
        const more = visit(buf, off, c.length, pos + off);
        off += c.length;
        if (!more) return { position: pos + off };
      }
      if (off === 0) {
        // A record larger than the block: read exactly that record next.
        const length = buf.length >= 4 ? buf.readUInt32LE(0) : 0;
        if (length <= buf.length || pos + length > limit)
          return { position: pos, problem: "short" };
        want = length;
      }
      pos += off;
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
      const start = Math.max(0, pos - want);
      const buf = await this.log.read(start, pos - start);
      want = READ_BLOCK_BYTES;
      let end = buf.length;
      while (end >= RECORD_TRAILER_BYTES) {
        const length = buf.readUInt32LE(end - RECORD_TRAILER_BYTES);
        if (length > end) break;
        const c = checkRecord(buf, end - length);
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
        const length =
          end >= RECORD_TRAILER_BYTES ? buf.readUInt32LE(end - RECORD_TRAILER_BYTES) : 0;
        if (start === 0 || length > MAX_RECORD_BYTES || length <= end) {
          throw new StoreError(
            "CORRUPTED",
            `log record ending at position ${start + end} is damaged`,
          );
        }
        want = length;
      }
      pos = start + end;
    }
    return pos;
  }
}

function validateExpected(expected: ExpectedVersion, streamId: string): void {
  switch (expected?.kind) {
    case "any":
    case "no_stream":
    case "stream_exists":
      return;
    case "exact":
      if (Number.isSafeInteger(expected.revision) && expected.revision >= 0) return;
      throw invalid("expected revision must be an integer >= 0", streamId);
    default:
      throw invalid("unknown expected version", streamId);
  }
}
