/**
 * The StreamStore on a shared PostgreSQL database (`--db postgres://...`). Stateless: every
 * instance on the database serves reads and writes; the database keeps everything.
 *
 * Writes are group-committed: appends and deletes queue, and one transaction at a time per
 * instance takes every write queued so far. The transaction locks the `head` row first (the
 * next `$all` position), reads the rows of the streams it writes, decides every write with the
 * shared stream rules (`batch.ts`), inserts the events, updates the stream rows and the head,
 * notifies `chorus_commit` and commits: one round trip of reads, one of writes, one WAL flush
 * for all of them. Because the head lock is held until commit, positions are handed out in
 * commit order (docs/postgres.md: a reader never sees position p without every position below).
 *
 * Readers see the database's committed rows; `commitPosition` is this instance's knowledge of
 * the committed head: moved by its own commits, by `chorus_commit` notifications from other
 * instances, and by a poll (the fallback when notifications are lost with a connection).
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import postgres, { type Options, type Sql, type TransactionSql } from "postgres";
import { invalid } from "../streams/errors.js";
import { targetOfMetadataStream } from "../streams/metadata.js";
import {
  validateExpectedVersion,
  validateNewEvents,
  validateReadAllOptions,
  validateReadStreamOptions,
  validateStreamId,
} from "../streams/validate.js";
import {
  planStreamRead,
  readableRange,
  visibleInAll,
  withinMaxAge,
} from "../streams/visibility.js";
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
import { boolArray, byteaArray, intArray, textArray, uuidArray } from "./arrays.js";
import { ABSENT_ROW, Batch, idsOf, streamsOf, type StreamRow, type WriteOp } from "./batch.js";
import { withDeadline } from "./deadline.js";
import { migrate } from "./schema.js";
import { eventBytes, PageBytes, READ_PAGE_BYTES } from "../streams/page-bytes.js";
import { databaseStoreError, describeDatabaseError, redactDatabaseUrl } from "./url.js";

/** The channel commits are announced on (payload: the new head position). */
export const COMMIT_CHANNEL = "chorus_commit";
const DEFAULT_POLL_INTERVAL_MS = 1_000;
const DEFAULT_MAX_CONNECTIONS = 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** The longest wait between attempts to reconnect to the database. */
const MAX_RECONNECT_DELAY_MS = 1_000;
/**
 * At most this many writes go into one transaction; the rest go into the next. Smaller
 * batches with several in flight (FAST_IN_FLIGHT) keep the client, the instance and
 * PostgreSQL busy at once instead of in turn: 1,000 x 2 -> 128 x 3 gave append-pipelined
 * +17% (and 128 x 3 beat 64 x 4), medians of 3, same run.
 */
const MAX_BATCH_WRITES = 128;
/** ... and at most about this many bytes of event data and metadata. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/** Rows per INSERT statement (a large append is inserted in several, in one transaction). */
const INSERT_CHUNK_ROWS = 2_000;
/** Rows fetched per query while scanning `$all`. */
const SCAN_CHUNK_ROWS = 1_000;
const DEFAULT_MAX_SCAN = 100_000;

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// URL (several hosts and target_session_attrs allowed). */
  readonly url: string;
  readonly logger: Logger;
  /** Connections in the pool (reads and the writer). Default 10. */
  readonly maxConnections?: number;
  /** How often the committed head is polled besides notifications. Default 1,000 ms. */
  readonly pollIntervalMs?: number;
  /** Deadline for the first connection at open. Default 10,000 ms. */
  readonly connectTimeoutMs?: number;
  /** Clock for createdMs and maxAge (tests). */
  readonly nowMs?: () => number;
  /**
   * Names this instance's sessions in `pg_stat_activity.application_name` (what an operator
   * matches to a member of `/gossip`). Default "chorus-server".
   */
  readonly applicationName?: string;
}

interface PendingWrite {
  readonly op: WriteOp;
  readonly bytes: number;
  readonly resolve: (result: WriteResult) => void;
  readonly reject: (err: unknown) => void;
}

interface StreamRowDb {
  stream_id: string;
  last_revision: number;
  last_position: number;
  tombstoned: boolean;
  meta: string | null;
  version: number;
}

/**
 * A stream row as this instance last saw it, with the row's version: a random token the
 * writer of each change draws (`newVersion`), so that two instances changing a row from the
 * same state never arrive at the same version (a counter would let a decision made on one
 * instance's change pass the check against another's).
 */
type CachedRow = StreamRow & { readonly version: number };

/** `n` fresh row versions: random, 48 bits each (safe as JS numbers and as int8). */
function newVersions(n: number): number[] {
  const bytes = randomBytes(6 * n);
  return Array.from({ length: n }, (_, i) => bytes.readUIntBE(6 * i, 6));
}

/** Stream rows kept for the one-round-trip write (the oldest are forgotten beyond this). */
const MAX_CACHED_STREAMS = 100_000;

/**
 * The longest a write transaction or statement may go unanswered before its writes are
 * answered UNAVAILABLE (an unknown outcome: clients retry, and retries are idempotent) and
 * the write loop goes on; a wedged writer connection is replaced.
 */
const WRITE_TIMEOUT_MS = 15_000;

/**
 * How long the database waits for an instance in the middle of a transaction before it ends
 * the session (`idle_in_transaction_session_timeout`). A write transaction holds the head
 * lock, which every instance's writes take: an instance cut off from the database (or paused)
 * between two round trips of one would hold up every instance's writes until then. Between
 * its round trips an instance only decides on what it read (milliseconds); a transaction ended
 * this way answers its writes UNAVAILABLE, and their retries are idempotent.
 */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 2_000;

function unavailable(message: string): StoreError {
  return new StoreError("UNAVAILABLE", `the database is unavailable: ${message}`);
}

/** A write's deadline error: the interrupt's cause, or no answer within WRITE_TIMEOUT_MS. */
function writeUnanswered(cause?: Error): Error {
  return cause ?? unavailable(`no answer from the database within ${WRITE_TIMEOUT_MS} ms`);
}

/** One-round-trip statements in flight at once on the writer connection. */
const FAST_IN_FLIGHT = 3;

/** A one-round-trip statement in flight: settles to the writes it did not answer (if any). */
interface FastWrite {
  readonly done: Promise<PendingWrite[] | undefined>;
  /** Set once `done` has settled. */
  finished: boolean;
}

/** Why the one-round-trip write was not taken: the rows must be read (slow path). */
const READ_ROWS = new Error("the write needs the stream rows read");

/**
 * Events whose data and metadata together are larger than this come without them in the rows
 * of a read, which then reads them one at a time, once its page takes them (`withData`): a
 * chunk of SCAN_CHUNK_ROWS rows holds at most this much each, where events may be as large as
 * an append (1 MiB by default), and a page holds about READ_PAGE_BYTES (page-bytes.ts).
 */
const INLINE_DATA_BYTES = 64 * 1024;
const NO_BYTES = new Uint8Array(0);

/**
 * What `eventBytes` (page-bytes.ts) adds to an event's data, metadata and names: pages are
 * measured in the database as in memory.
 */
const EVENT_FIXED_BYTES = eventBytes({
  data: new Uint8Array(0),
  metadata: new Uint8Array(0),
  streamId: "",
  type: "",
});

/**
 * The data and metadata of a read's rows, null for a large event (INLINE_DATA_BYTES), and
 * `own`: the event's bytes as a page counts them. `t`: the events table's alias, if any.
 */
function sizedColumns(sql: Sql, t?: string) {
  const c = (column: string) => (t === undefined ? sql(column) : sql(`${t}.${column}`));
  const payload = sql`octet_length(${c("data")}) + octet_length(${c("metadata")})`;
  return sql`
    CASE WHEN ${payload} <= ${INLINE_DATA_BYTES} THEN ${c("data")} END AS data,
    CASE WHEN ${payload} <= ${INLINE_DATA_BYTES} THEN ${c("metadata")} END AS metadata,
    ${payload} + octet_length(${c("stream_id")}) + octet_length(${c("event_type")})
      + ${EVENT_FIXED_BYTES} AS own`;
}

/** A row of a read: data and metadata null for a large event (`sizedColumns`). */
type SizedRowDb = Omit<EventRowDb, "data" | "metadata"> & {
  data: Buffer | null;
  metadata: Buffer | null;
  own: number | string;
};

/** A row of a `$all` scan: a sized row of the event, and its stream's. */
type ChunkRowDb = SizedRowDb & StreamRowDb;

/** The event of a row, with its data and metadata read now if the row came without them. */
async function withData(sql: Sql, r: SizedRowDb): Promise<StoredEvent> {
  if (r.data !== null && r.metadata !== null) return toStored(r);
  const [full] = await sql<{ data: Buffer; metadata: Buffer }[]>`
    SELECT data, metadata FROM chorus.events WHERE position = ${r.position}`;
  if (full === undefined)
    throw new StoreError(
      "CORRUPTED",
      `the event at position ${r.position} is gone from the database`,
    );
  return toStored({ ...r, data: full.data, metadata: full.metadata });
}

interface EventRowDb {
  position: number;
  stream_id: string;
  revision: number;
  event_id: string;
  event_type: string;
  is_json: boolean;
  data: Buffer;
  metadata: Buffer;
  created_ms: number;
}

/** What `PostgresStore.session` takes beyond the pool size. */
export interface SessionOptions {
  readonly onClose?: () => void;
  readonly idleSessionTimeoutMs?: number;
}

/** int8 as a JS number: positions and revisions stay below 2^53. */
const INT8 = {
  to: 20,
  from: [20],
  serialize: (x: number) => String(x),
  parse: (x: string) => Number(x),
};

export class PostgresStore implements StreamStore {
  readonly #o: PostgresStoreOptions;
  readonly #now: () => number;
  #sql: Sql | undefined;
  #commit = 0;
  readonly #listeners = new Set<(commitPosition: number) => void>();
  readonly #queue: PendingWrite[] = [];
  #writing: Promise<void> | undefined;
  #state: "new" | "open" | "closing" | "closed" = "new";
  #poll: NodeJS.Timeout | undefined;
  #unlisten: (() => Promise<void>) | undefined;
  #stats: StoreStats = { events: 0, streams: 0, logBytes: 0, commitPosition: 0 };
  /**
   * Stream rows this instance read or wrote. Appends to streams found here are decided on them
   * and written in one round trip (`chorus.write_appends`), which checks each row's version:
   * a row another instance changed since sends the batch back to the read-then-write path.
   */
  readonly #rows = new Map<string, CachedRow>();
  /** One-round-trip statements sent and not yet answered, oldest first. */
  readonly #inFlight: FastWrite[] = [];
  /**
   * A pool of one connection for the one-round-trip statements: one connection keeps them in
   * order; a pool (not a reserved connection of the main pool) reconnects by itself.
   */
  #writer: Sql | undefined;
  /** The writer pool's first query (array types learnt); awaited before it is used. */
  #writerWarm: Promise<void> = Promise.resolve();
  /** Wakes the write loop while it waits for a statement in flight. */
  #wake: (() => void) | undefined;
  /** The server's `server_version_num` (read at open). */
  #serverVersion = 0;
  /** The waits of the statements and transactions in flight (interrupt()). */
  readonly #waits = new Set<(cause: Error) => void>();
  /**
   * WARNINGs the database sent on any of this store's sessions. A write in flight while one
   * arrives is answered as an unknown outcome (`#warnedDuring`).
   */
  #warnings = 0;
  #lastWarning = "";

  constructor(options: PostgresStoreOptions) {
    this.#o = options;
    this.#now = options.nowMs ?? Date.now;
  }

  /** The connection pool (open stores only): the instances' membership shares it. */
  get sql(): Sql {
    if (this.#sql === undefined) throw new StoreError("STORE_CLOSED", "the store is not open");
    return this.#sql;
  }

  /**
   * Whether sessions can be given an idle timeout (`idle_session_timeout`, PostgreSQL 14 and
   * later; known once the store is open).
   */
  get idleSessionTimeouts(): boolean {
    return this.#serverVersion >= 140_000;
  }

  /**
   * A new pool of `max` connections to the database with this store's settings (the
   * membership's lock takes one of its own). `onClose`: told when one of its connections
   * closes. `idleSessionTimeoutMs` (where `idleSessionTimeouts`): the database ends a session
   * of the pool that has sent nothing for that long. The caller ends the pool.
   */
  session(max: number, sessionOptions: SessionOptions = {}): Sql {
    return this.#session(max, sessionOptions, false);
  }

  /**
   * `writes`: a pool of this store's own, which its writes use: a warning on it concerns them
   * (#onNotice). Other pools (the membership's lock session) only log theirs.
   */
  #session(max: number, sessionOptions: SessionOptions, writes: boolean): Sql {
    const { onClose, idleSessionTimeoutMs } = sessionOptions;
    const connectTimeoutMs = this.#o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const options: Options<{ int8: typeof INT8 }> = {
      max,
      ...(onClose !== undefined && { onclose: onClose }),
      connect_timeout: Math.max(1, Math.ceil(connectTimeoutMs / 1000)),
      // Connections live as long as the pool: a session-level lock must not lapse with them.
      max_lifetime: null,
      onnotice: (notice) => this.#onNotice(notice, writes),
      types: { int8: INT8 },
      connection: {
        application_name: this.#o.applicationName ?? "chorus-server",
        // A session of this instance that stops mid-transaction (cut off, paused, wedged)
        // gives the head lock back instead of holding up every instance's writes.
        idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
        ...(idleSessionTimeoutMs !== undefined &&
          this.idleSessionTimeouts && { idle_session_timeout: idleSessionTimeoutMs }),
      },
      // Reconnect attempts (seconds): the driver's default grows to 20 s between attempts,
      // which would keep an instance out of service that long after a failover completed.
      backoff: (attempt: number) => Math.min(0.05 * 2 ** attempt, MAX_RECONNECT_DELAY_MS / 1000),
    };
    return postgres(this.#o.url, options);
  }

  /**
   * A commit whose wait for a synchronous standby is cancelled (an operator's
   * pg_cancel_backend on a session that seems stuck while the standby is away) succeeds, with
   * a WARNING: "The transaction has already committed locally, but might not have been
   * replicated to the standby." A failover to that standby loses the write. No SQLSTATE tells
   * that warning apart (01000) and its text may be translated, so any WARNING counts, and every
   * write in flight when one arrives is answered as an unknown outcome: the client retries
   * with the same event ids, and the retry is answered by a transaction whose own commit the
   * standby confirmed (its head lock gives it a transaction id, so it waits too; the
   * write-ahead log is in order). Warnings are rare; a needless retry is cheap.
   */
  #onNotice(notice: postgres.Notice, writes: boolean): void {
    if (notice.severity !== "WARNING") return;
    const text = [notice.message, notice.detail].filter(Boolean).join(" ");
    if (!writes) {
      this.#o.logger.warn({ warning: text }, "the database sent a warning");
      return;
    }
    this.#warnings++;
    this.#lastWarning = text;
    this.#o.logger.warn(
      { warning: text },
      "the database sent a warning: writes in flight are answered as unknown outcomes",
    );
  }

  /**
   * Whether a warning arrived since `#warnings` was `before` (the write was sent then): its
   * writes are answered with this error. A notice comes before the answer to its statement
   * on the same connection, so a write's own warning is always seen here.
   */
  #warnedDuring(before: number): StoreError | undefined {
    if (this.#warnings === before) return undefined;
    return unavailable(
      `the database warned while this write was in flight (${this.#lastWarning}): it may not have reached a synchronous standby, so its outcome is unknown; retry with the same event ids`,
    );
  }

  /** The URL without its password, for messages and logs. */
  get where(): string {
    return redactDatabaseUrl(this.#o.url);
  }

  async open(): Promise<void> {
    if (this.#state !== "new") throw new Error("the store was opened already");
    const sql = this.#session(this.#o.maxConnections ?? DEFAULT_MAX_CONNECTIONS, {}, true);
    this.#sql = sql;
    const writer = this.#session(1, {}, true);
    this.#writer = writer;
    try {
      await migrate(sql);
      const [version] = await sql<
        { v: number }[]
      >`SELECT current_setting('server_version_num')::int AS v`;
      this.#serverVersion = version?.v ?? 0;
      // The driver learns the array types on a connection's first query; the one-round-trip
      // statements pass arrays of them.
      await writer`SELECT 1`;
      this.#setCommit(await this.#readHead(sql));
      const listener = await sql.listen(
        COMMIT_CHANNEL,
        (payload) => {
          const head = Number(payload);
          if (Number.isSafeInteger(head)) this.#setCommit(head);
        },
        // On every (re)connect of the listening connection: notifications may have been missed.
        () => void this.#pollHead(),
      );
      this.#unlisten = () => listener.unlisten();
    } catch (err) {
      await sql.end({ timeout: 0 }).catch(() => undefined);
      await writer.end({ timeout: 0 }).catch(() => undefined);
      this.#sql = undefined;
      this.#writer = undefined;
      this.#state = "closed";
      throw new Error(`cannot use the database ${this.where}: ${describeDatabaseError(err)}`, {
        cause: err,
      });
    }
    this.#state = "open";
    const every = this.#o.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#poll = setInterval(() => void this.#pollHead(), every);
    this.#poll.unref();
    void this.#refreshStats();
  }

  async close(): Promise<void> {
    if (this.#state === "closed" || this.#state === "new") {
      this.#state = "closed";
      return;
    }
    if (this.#state === "closing") return;
    this.#state = "closing";
    clearInterval(this.#poll);
    // Writes already queued are finished; new ones are refused (assertOpen).
    while (this.#writing !== undefined) await this.#writing;
    await this.#writer?.end({ timeout: 5 });
    this.#writer = undefined;
    await this.#unlisten?.().catch(() => undefined);
    await this.#sql?.end({ timeout: 5 });
    this.#state = "closed";
  }

  // ---------------------------------------------------------------- writes

  append(streamId: string, expected: ExpectedVersion, events: NewEvent[]): Promise<WriteResult> {
    try {
      this.#assertOpen();
      validateStreamId(streamId);
      validateExpectedVersion(expected, streamId);
      validateNewEvents(events, streamId);
      assertStorableText(streamId, events);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    let bytes = 0;
    for (const e of events) bytes += e.data.byteLength + e.metadata.byteLength + 64;
    return this.#enqueue({ kind: "append", streamId, expected, events }, bytes);
  }

  delete(streamId: string, expected: ExpectedVersion, hard: boolean): Promise<WriteResult> {
    try {
      this.#assertOpen();
      validateStreamId(streamId);
      validateExpectedVersion(expected, streamId);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.#enqueue({ kind: "delete", streamId, expected, hard }, 64);
  }

  /**
   * The database cannot be reached (the instances' heartbeat says so): the writes queued and
   * in flight, and the reads in flight, are answered UNAVAILABLE now (writes as unknown
   * outcomes: clients retry them, and retries are idempotent), instead of after
   * WRITE_TIMEOUT_MS each, or, for reads, whenever the network gives up.
   */
  interrupt(message: string): void {
    const error = unavailable(message);
    for (const interrupt of [...this.#waits]) interrupt(error);
    for (const w of this.#queue.splice(0)) w.reject(error);
  }

  #enqueue(op: WriteOp, bytes: number): Promise<WriteResult> {
    return new Promise<WriteResult>((resolve, reject) => {
      this.#queue.push({ op, bytes, resolve, reject });
      this.#writing ??= this.#writeLoop();
      this.#wake?.();
    });
  }

  async #writeLoop(): Promise<void> {
    try {
      for (;;) {
        if (this.#queue.length === 0) {
          // Nothing new: wait for the oldest statement in flight, or for a new write.
          const oldest = this.#inFlight[0];
          if (oldest === undefined) break;
          const woken = new Promise<void>((resolve) => (this.#wake = resolve));
          await Promise.race([oldest.done, woken]);
          this.#wake = undefined;
          if (oldest.finished) {
            this.#inFlight.shift();
            await this.#afterFast(await oldest.done);
          }
          continue;
        }
        const writes = this.#takeBatch();
        const sent = await this.#sendOnKnownRows(writes);
        if (sent !== undefined) {
          this.#inFlight.push(sent);
          if (this.#inFlight.length >= FAST_IN_FLIGHT) {
            const oldest = this.#inFlight.shift() as FastWrite;
            await this.#afterFast(await oldest.done);
          }
          continue;
        }
        // The read-then-write path sees every earlier write committed.
        await this.#drainFast();
        await this.#readThenWrite(writes);
      }
    } finally {
      this.#writing = undefined;
    }
  }

  /** The next batch from the queue: up to MAX_BATCH_WRITES writes and about MAX_BATCH_BYTES. */
  #takeBatch(): PendingWrite[] {
    let n = 0;
    let bytes = 0;
    while (
      n < this.#queue.length &&
      n < MAX_BATCH_WRITES &&
      (n === 0 || bytes + (this.#queue[n] as PendingWrite).bytes <= MAX_BATCH_BYTES)
    ) {
      bytes += (this.#queue[n] as PendingWrite).bytes;
      n++;
    }
    return this.#queue.splice(0, n);
  }

  /** Waits for every one-round-trip statement in flight (and for what they send back). */
  async #drainFast(): Promise<void> {
    for (let f = this.#inFlight.shift(); f !== undefined; f = this.#inFlight.shift())
      await this.#afterFast(await f.done);
  }

  /**
   * A one-round-trip statement came back unanswered (a row changed, an id was in its stream
   * already): every later one in flight is waited for, then each goes through the
   * read-then-write path in order (a later one on the same stream failed its version check
   * too, so a stream's writes keep their order).
   */
  async #afterFast(unanswered: PendingWrite[] | undefined): Promise<void> {
    if (unanswered === undefined) return;
    const again = [unanswered];
    for (let f = this.#inFlight.shift(); f !== undefined; f = this.#inFlight.shift()) {
      const more = await f.done;
      if (more !== undefined) again.push(more);
    }
    for (const writes of again) await this.#readThenWrite(writes);
  }

  #failAll(writes: readonly PendingWrite[], err: unknown): void {
    const error = databaseStoreError(err) ?? err;
    if (!(error instanceof StoreError))
      this.#o.logger.error({ err: error }, "a write transaction failed");
    for (const w of writes) w.reject(error);
  }

  /**
   * The one-round-trip write: every write is an append of events to a stream whose row is
   * cached, each decided (shared rules) as a plain write on that row; one statement
   * (`chorus.write_appends`, its own transaction) checks the rows' versions, takes the
   * positions and inserts. Undefined (nothing sent) when the batch does not qualify. The
   * statement goes out on the writer connection, behind any still in flight (FAST_IN_FLIGHT):
   * while PostgreSQL runs one, the next batch is decided and sent, and the answers to the
   * previous one go back to the clients. The cached rows are moved on at once (a new version),
   * so the next batch is decided on them; a statement that fails its check leaves them
   * stale, and the next one on those streams fails its check too.
   */
  async #sendOnKnownRows(writes: PendingWrite[]): Promise<FastWrite | undefined> {
    for (const { op } of writes) {
      if (op.kind !== "append" || op.events.length === 0 || !this.#rows.has(op.streamId))
        return undefined;
      if (targetOfMetadataStream(op.streamId) !== undefined) return undefined;
    }
    const nowMs = this.#now();
    // The version of each row as the decisions saw it: the statement checks the rows are still
    // at it. (The cache may change before the statement is sent: a statement in flight that
    // fails forgets its rows, and the writer connection may be awaited.)
    const seen = new Map<string, number>();
    const batch = new Batch(
      {
        stream: (id) => {
          const row = this.#rows.get(id);
          if (row !== undefined && !seen.has(id)) seen.set(id, row.version);
          return row;
        },
        // Unknown here: an id already stored is refused by the unique constraint instead.
        idInStream: () => undefined,
        readIds: () => Promise.reject(READ_ROWS),
      },
      0, // positions are offsets until the database assigns the first
      nowMs,
    );
    const results: Array<WriteResult & { ok: true }> = [];
    for (const { op } of writes) {
      const before = batch.events.length;
      let result: WriteResult;
      try {
        result = await batch.decide(op);
      } catch {
        return undefined;
      }
      if (!result.ok || batch.events.length === before) return undefined;
      results.push(result);
    }
    // A row forgotten while deciding (a failed statement): decided as absent, so not here.
    for (const id of batch.changedStreams.keys()) if (!seen.has(id)) return undefined;
    let writer: Sql;
    try {
      writer = await this.#writerReady();
    } catch (err) {
      this.#failAll(writes, err);
      return { done: Promise.resolve(undefined), finished: true };
    }
    const next = newVersions(batch.changedStreams.size);
    const streams = [...batch.changedStreams].map(([id, row], i) => ({
      id,
      row,
      version: seen.get(id) as number,
      next: next[i] as number,
    }));
    for (const { id, row, next } of streams) this.#remember(id, { ...row, version: next });
    const events = batch.events;
    // Array literals built here rather than by the driver, whose generic serialiser (copies,
    // two regular expressions per element) took ~10% of the instance's CPU (arrays.ts).
    // Only appends, so the events' offsets are 0, 1, 2, ... in order: the function takes them
    // from the arrays' order, and one createdMs for all of them.
    const warnings = this.#warnings;
    const statement = writer<{ first: number }[]>`SELECT chorus.write_appends(
        ${textArray(streams.map((x) => x.id))}::text[], ${intArray(streams.map((x) => x.version))}::int8[],
        ${intArray(streams.map((x) => x.next))}::int8[],
        ${intArray(streams.map((x) => x.row.last))}::int8[],
        ${intArray(streams.map((x) => x.row.lastPosition))}::int8[],
        ${textArray(events.map((e) => e.streamId))}::text[],
        ${intArray(events.map((e) => e.revision))}::int8[], ${uuidArray(events.map((e) => e.id))}::uuid[],
        ${textArray(events.map((e) => e.type))}::text[], ${boolArray(events.map((e) => e.isJson))}::bool[],
        ${byteaArray(events.map((e) => e.data))}::bytea[], ${byteaArray(events.map((e) => e.metadata))}::bytea[],
        ${nowMs}::int8) AS first`.execute();
    const done = withDeadline(
      statement,
      WRITE_TIMEOUT_MS,
      (cause) => {
        // No answer: the connection may be wedged. Its statements count as unknown outcomes
        // (clients retry; retries are idempotent) and the next ones go on a new connection.
        this.#replaceWriter(writer);
        return writeUnanswered(cause);
      },
      this.#waits,
    ).then(
      ([row]) => {
        const warned = this.#warnedDuring(warnings);
        if (warned !== undefined) {
          for (const { id } of streams) this.#rows.delete(id);
          this.#failAll(writes, warned);
          return undefined;
        }
        const first = (row as { first: number }).first;
        for (const { id, row: r, next } of streams) {
          const now = this.#rows.get(id);
          // In place: the row moved to the recent end of the cache when this was sent.
          if (now?.version === next)
            this.#rows.set(id, { ...now, lastPosition: first + r.lastPosition });
        }
        this.#setCommit(first + batch.nextPosition);
        writes.forEach((w, i) => {
          const r = results[i] as WriteResult & { ok: true };
          w.resolve({ ...r, position: first + r.position });
        });
        return undefined;
      },
      (err: unknown) => {
        for (const { id } of streams) this.#rows.delete(id);
        const code = (err as { code?: unknown }).code;
        if (code === "CH001" || code === "23505") return writes;
        this.#failAll(writes, err);
        return undefined;
      },
    );
    const fast: FastWrite = { done, finished: false };
    void done.finally(() => (fast.finished = true));
    return fast;
  }

  /**
   * The writer pool, once its first query (which teaches the driver the array types) is done.
   * That query has a deadline, and one that failed is not kept: the pool is replaced, so the
   * next batch waits on a new connection instead of failing on the old answer for good (a
   * replacement started while the link was broken failed with it).
   */
  async #writerReady(): Promise<Sql> {
    const writer = this.#writer as Sql;
    try {
      await withDeadline(this.#writerWarm, WRITE_TIMEOUT_MS, writeUnanswered, this.#waits);
    } catch (err) {
      this.#replaceWriter(writer);
      throw err;
    }
    return writer;
  }

  /** Ends a writer pool that stopped answering and starts another (once). */
  #replaceWriter(stuck: Sql): void {
    if (this.#writer !== stuck || this.#state !== "open") return;
    const writer = this.#session(1, {}, true);
    this.#writer = writer;
    this.#writerWarm = writer`SELECT 1`.then(() => undefined);
    this.#writerWarm.catch(() => undefined);
    void stuck.end({ timeout: 0 }).catch(() => undefined);
  }

  #remember(streamId: string, row: CachedRow): void {
    this.#rows.delete(streamId);
    this.#rows.set(streamId, row);
    if (this.#rows.size > MAX_CACHED_STREAMS) {
      const oldest = this.#rows.keys().next().value;
      if (oldest !== undefined) this.#rows.delete(oldest);
    }
  }

  /** The read-then-write transaction: rows and ids read under the position lock, then written. */
  async #readThenWrite(writes: PendingWrite[]): Promise<void> {
    const sql = this.#sql as Sql;
    const ops = writes.map((w) => w.op);
    const outcomes: Array<{ ok: true; result: WriteResult } | { ok: false; error: unknown }> = [];
    let head: number;
    let loaded: StreamRowDb[] = [];
    let changed = new Map<string, StreamRow>();
    const versions = new Map<string, number>();
    const warnings = this.#warnings;
    try {
      head = await withDeadline(
        sql.begin(async (tx) => {
          // One round trip, in this order: the driver sends a statement when it is first
          // awaited or executed, and the reads must come after the head lock (each then sees
          // every write committed before the lock was granted; an id read before it could
          // miss an event committed meanwhile, and be inserted again).
          const lock = tx<
            { next_position: number }[]
          >`SELECT next_position FROM chorus.head WHERE id = 1 FOR UPDATE`.execute();
          const streamRows = tx<
            StreamRowDb[]
          >`SELECT stream_id, last_revision, last_position, tombstoned, meta, version FROM chorus.streams WHERE stream_id = ANY(${[...streamsOf(ops)]})`.execute();
          const [[h], rows, hits] = await Promise.all([lock, streamRows, this.#loadIds(tx, ops)]);
          const streams = new Map(rows.map((r) => [r.stream_id, toStreamRow(r)]));
          loaded = rows;
          const batch = new Batch(
            {
              stream: (id) => streams.get(id),
              idInStream: (streamId, id) => hits.get(`${id}\u0000${streamId}`),
              readIds: (streamId, from, to) => this.#readIds(tx, streamId, from, to),
            },
            (h as { next_position: number }).next_position,
            this.#now(),
          );
          for (const op of ops) {
            try {
              outcomes.push({ ok: true, result: await batch.decide(op) });
            } catch (err) {
              if (!(err instanceof StoreError)) throw err;
              outcomes.push({ ok: false, error: err });
            }
          }
          changed = batch.changedStreams;
          const next = newVersions(changed.size);
          [...changed.keys()].forEach((id, i) => versions.set(id, next[i] as number));
          if (batch.changedStreams.size === 0 && batch.events.length === 0) return this.#commit;
          await Promise.all([
            ...insertEvents(tx, batch),
            upsertStreams(tx, batch.changedStreams, versions),
            tx`UPDATE chorus.head SET next_position = ${batch.nextPosition} WHERE id = 1`,
            tx`SELECT pg_notify(${COMMIT_CHANNEL}, ${String(batch.nextPosition)})`,
          ]);
          return batch.nextPosition;
        }),
        WRITE_TIMEOUT_MS,
        writeUnanswered,
        this.#waits,
      );
    } catch (err) {
      for (const r of loaded) this.#rows.delete(r.stream_id);
      this.#failAll(writes, err);
      return;
    }
    // Writes refused (a wrong expected version) or found already written (a retry) are
    // answered on what the transaction read: only a commit the standby confirmed vouches for it.
    const warned = this.#warnedDuring(warnings);
    if (warned !== undefined) {
      for (const r of loaded) this.#rows.delete(r.stream_id);
      this.#failAll(writes, warned);
      return;
    }
    // The rows as they are now: as read, or as written with their new versions.
    for (const r of loaded) this.#remember(r.stream_id, { ...toStreamRow(r), version: r.version });
    for (const [id, row] of changed)
      this.#remember(id, { ...row, version: versions.get(id) as number });
    this.#setCommit(head);
    writes.forEach((w, i) => {
      const o = outcomes[i];
      if (o?.ok === true) w.resolve(o.result);
      else w.reject(o?.error);
    });
  }

  async #loadIds(
    tx: TransactionSql,
    ops: readonly WriteOp[],
  ): Promise<Map<string, { revision: number; position: number }>> {
    const ids = idsOf(ops);
    const hits = new Map<string, { revision: number; position: number }>();
    if (ids.length === 0) return hits;
    const rows = await tx<
      { stream_id: string; event_id: string; revision: number; position: number }[]
    >`
      SELECT e.stream_id, e.event_id, e.revision, e.position
      FROM unnest(${ids.map((f) => f.streamId)}::text[], ${ids.map((f) => f.id)}::uuid[]) AS k(stream_id, event_id)
      JOIN chorus.events e ON e.stream_id = k.stream_id AND e.event_id = k.event_id`;
    for (const r of rows)
      hits.set(`${r.event_id}\u0000${r.stream_id}`, { revision: r.revision, position: r.position });
    return hits;
  }

  async #readIds(
    tx: TransactionSql,
    streamId: string,
    from: number,
    to: number,
  ): Promise<Array<{ id: string; revision: number; position: number }>> {
    const rows = await tx<{ event_id: string; revision: number; position: number }[]>`
      SELECT event_id, revision, position FROM chorus.events
      WHERE stream_id = ${streamId} AND revision BETWEEN ${from} AND ${to} ORDER BY revision`;
    return rows.map((r) => ({ id: r.event_id, revision: r.revision, position: r.position }));
  }

  // ---------------------------------------------------------------- reads

  async readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult> {
    this.#assertOpen();
    validateStreamId(streamId);
    validateReadStreamOptions(options, streamId);
    const sql = this.#sql as Sql;
    return this.#db(async () => {
      const view = (await this.#streamRow(sql, streamId)) ?? ABSENT_ROW;
      const readable = readableRange(streamId, view, this.#now());
      const plan = planStreamRead(options, readable);
      const backwards = options.direction === "backwards";
      const order = backwards ? sql`DESC` : sql`ASC`;
      const bytes = new PageBytes(options.maxBytes ?? READ_PAGE_BYTES);
      const events: StoredEvent[] = [];
      // The page's revisions in its order, SCAN_CHUNK_ROWS at a time, until it is full for
      // its bytes (page-bytes.ts); a large event's data is read once the page takes it.
      let lo = plan.from;
      let hi = plan.to;
      while (lo <= hi) {
        const rows = await sql<SizedRowDb[]>`
          SELECT position, stream_id, revision, event_id, event_type, is_json, created_ms,
                 ${sizedColumns(sql)}
          FROM chorus.events
          WHERE stream_id = ${streamId} AND revision BETWEEN ${lo} AND ${hi}
          ORDER BY revision ${order} LIMIT ${SCAN_CHUNK_ROWS}`;
        const last = rows[rows.length - 1];
        if (last === undefined) break;
        for (const r of rows) {
          if (!bytes.fitsSize(Number(r.own))) {
            return {
              events: events.filter((e) => withinMaxAge(e.createdMs, readable)),
              nextRevision: r.revision,
              endOfStream: false,
              lastRevision: readable.last,
            };
          }
          events.push(await withData(sql, r));
        }
        if (backwards) hi = last.revision - 1;
        else lo = last.revision + 1;
      }
      return {
        events: events.filter((e) => withinMaxAge(e.createdMs, readable)),
        nextRevision: plan.nextRevision,
        endOfStream: plan.endOfStream,
        lastRevision: readable.last,
      };
    });
  }

  async readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    this.#assertOpen();
    const sql = this.#sql as Sql;
    const { direction, fromPosition, maxCount, filter } = options;
    // A position from another instance may be ahead of what this one has heard of.
    if (typeof fromPosition === "number" && fromPosition > this.#commit) await this.#pollHead();
    const commit = this.#commit;
    validateReadAllOptions(options, commit);
    const maxScan = options.maxScan ?? DEFAULT_MAX_SCAN;
    const nowMs = this.#now();
    const events: StoredEvent[] = [];
    let scanned = 0;
    const bytes = new PageBytes(options.maxBytes ?? READ_PAGE_BYTES);
    // Up to `limit` rows from `pos` on in the read's order (large events without their data).
    const chunk = (pos: number, limit: number, forwards: boolean) => sql<ChunkRowDb[]>`
      SELECT e.position, e.stream_id, e.revision, e.event_id, e.event_type, e.is_json,
             e.created_ms, ${sizedColumns(sql, "e")}, s.last_revision, s.last_position,
             s.tombstoned, s.meta
      FROM chorus.events e JOIN chorus.streams s ON s.stream_id = e.stream_id
      WHERE ${forwards ? sql`e.position >= ${pos} AND e.position < ${commit}` : sql`e.position < ${pos}`}
      ORDER BY e.position ${forwards ? sql`ASC` : sql`DESC`} LIMIT ${limit}`;
    return this.#db(async () => {
      const forwards = direction === "forwards";
      let pos = fromPosition === "end" ? commit : fromPosition;
      while ((forwards ? pos < commit : pos > 0) && events.length < maxCount && scanned < maxScan) {
        const limit = Math.min(SCAN_CHUNK_ROWS, maxScan - scanned);
        const rows = await chunk(pos, limit, forwards);
        let all = true;
        for (const r of rows) {
          // Filters decide on streams and types (a large event's data comes once it is taken).
          const ev = toStored(r);
          if (visibleInAll(ev, toStreamRow(r), nowMs) && (filter === undefined || filter(ev))) {
            // Ends before the event, which the next page starts with.
            if (!bytes.fitsSize(Number(r.own)))
              return { events, nextPosition: pos, endOfStream: false, scanned };
            events.push(r.data === null ? await withData(sql, r) : ev);
          }
          scanned++;
          // Forwards the next page starts after this row; backwards below it (exclusive).
          pos = forwards ? r.position + 1 : r.position;
          if (events.length >= maxCount) {
            all = r === rows[rows.length - 1];
            break;
          }
        }
        // Nothing more this way (positions may have gaps: tombstones).
        if (all && rows.length < limit) pos = forwards ? commit : 0;
      }
      return {
        events,
        nextPosition: pos,
        endOfStream: forwards ? pos >= commit : pos <= 0,
        scanned,
      };
    });
  }

  async getMetadata(streamId: string): Promise<StreamMetadata | null> {
    this.#assertOpen();
    const sql = this.#sql as Sql;
    return this.#db(async () => (await this.#streamRow(sql, streamId))?.meta ?? null);
  }

  get commitPosition(): number {
    return this.#commit;
  }

  onCommit(listener: (commitPosition: number) => void): () => void {
    const wrapped = (p: number): void => listener(p);
    this.#listeners.add(wrapped);
    return () => {
      this.#listeners.delete(wrapped);
    };
  }

  /** Estimates from the database's statistics (refreshed with the head poll), and the head. */
  stats(): StoreStats {
    return { ...this.#stats, commitPosition: this.#commit };
  }

  // ---------------------------------------------------------------- internals

  #assertOpen(): void {
    if (this.#state !== "open") throw new StoreError("STORE_CLOSED", "the store is closed");
  }

  /**
   * Runs a read; a lost or unusable database connection becomes StoreError UNAVAILABLE, and so
   * does interrupt() while it runs.
   */
  async #db<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await withDeadline(
        work(),
        Infinity,
        (cause) => cause ?? unavailable("interrupted"),
        this.#waits,
      );
    } catch (err) {
      throw databaseStoreError(err) ?? err;
    }
  }

  async #streamRow(sql: Sql, streamId: string): Promise<StreamRow | undefined> {
    const [row] = await sql<StreamRowDb[]>`
      SELECT stream_id, last_revision, last_position, tombstoned, meta, version
      FROM chorus.streams WHERE stream_id = ${streamId}`;
    return row === undefined ? undefined : toStreamRow(row);
  }

  async #readHead(sql: Sql): Promise<number> {
    const [row] = await sql<
      { next_position: number }[]
    >`SELECT next_position FROM chorus.head WHERE id = 1`;
    return row?.next_position ?? 0;
  }

  async #pollHead(): Promise<void> {
    const sql = this.#sql;
    if (sql === undefined || this.#state !== "open") return;
    try {
      this.#setCommit(await this.#readHead(sql));
      await this.#refreshStats();
    } catch (err) {
      this.#o.logger.debug({ err: describeDatabaseError(err) }, "polling the database head failed");
    }
  }

  async #refreshStats(): Promise<void> {
    const sql = this.#sql;
    if (sql === undefined) return;
    try {
      const [row] = await sql<{ events: number; streams: number; bytes: number }[]>`
        SELECT (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'chorus.events'::regclass) AS events,
               (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'chorus.streams'::regclass) AS streams,
               pg_total_relation_size('chorus.events')::int8 AS bytes`;
      if (row)
        this.#stats = {
          events: row.events,
          streams: row.streams,
          logBytes: row.bytes,
          commitPosition: 0,
        };
    } catch {
      // statistics are best effort
    }
  }

  #setCommit(head: number): void {
    if (head <= this.#commit) return;
    this.#commit = head;
    for (const l of this.#listeners) l(head);
  }
}

/** PostgreSQL text cannot hold NUL characters (stream ids cannot have control characters anyway). */
function assertStorableText(streamId: string, events: readonly NewEvent[]): void {
  for (const e of events) {
    if (e.type.includes("\u0000"))
      throw invalid(
        "event type must not contain NUL characters (the database cannot store them)",
        streamId,
      );
  }
}

function toStreamRow(r: StreamRowDb): StreamRow {
  return {
    last: r.last_revision,
    lastPosition: r.last_position,
    tombstoned: r.tombstoned,
    meta: r.meta === null ? null : (JSON.parse(r.meta) as StreamMetadata),
  };
}

/** The event of a row (a large event's data and metadata empty until `withData` reads them). */
function toStored(r: EventRowDb | SizedRowDb): StoredEvent {
  return {
    streamId: r.stream_id,
    revision: r.revision,
    position: r.position,
    id: r.event_id,
    type: r.event_type,
    isJson: r.is_json,
    data: r.data ?? NO_BYTES,
    metadata: r.metadata ?? NO_BYTES,
    createdMs: r.created_ms,
  };
}

function insertEvents(tx: TransactionSql, batch: Batch): Array<Promise<unknown>> {
  const out: Array<Promise<unknown>> = [];
  for (let i = 0; i < batch.events.length; i += INSERT_CHUNK_ROWS) {
    const rows = batch.events.slice(i, i + INSERT_CHUNK_ROWS);
    out.push(tx`
      INSERT INTO chorus.events (position, stream_id, revision, event_id, event_type, is_json, data, metadata, created_ms)
      SELECT * FROM unnest(
        ${rows.map((e) => e.position)}::int8[], ${rows.map((e) => e.streamId)}::text[],
        ${rows.map((e) => e.revision)}::int8[], ${rows.map((e) => e.id)}::uuid[],
        ${rows.map((e) => e.type)}::text[], ${boolArray(rows.map((e) => e.isJson))}::bool[],
        ${byteaArray(rows.map((e) => e.data))}::bytea[], ${byteaArray(rows.map((e) => e.metadata))}::bytea[],
        ${rows.map((e) => e.createdMs)}::int8[])`);
  }
  return out;
}

/** Writes the changed stream rows, each with its new version (`versions`, by stream). */
function upsertStreams(
  tx: TransactionSql,
  changed: ReadonlyMap<string, StreamRow>,
  versions: ReadonlyMap<string, number>,
): Promise<unknown> {
  const names = [...changed.keys()];
  const rows = names.map((n) => changed.get(n) as StreamRow);
  return tx`
    INSERT INTO chorus.streams (stream_id, last_revision, last_position, tombstoned, meta, version)
    SELECT * FROM unnest(${names}::text[], ${rows.map((r) => r.last)}::int8[],
      ${rows.map((r) => r.lastPosition)}::int8[], ${boolArray(rows.map((r) => r.tombstoned))}::bool[],
      ${rows.map((r) => (r.meta === null ? null : JSON.stringify(r.meta)))}::text[],
      ${names.map((n) => versions.get(n) as number)}::int8[])
    ON CONFLICT (stream_id) DO UPDATE SET last_revision = EXCLUDED.last_revision,
      last_position = EXCLUDED.last_position, tombstoned = EXCLUDED.tombstoned, meta = EXCLUDED.meta,
      version = EXCLUDED.version`;
}
