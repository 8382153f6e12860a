/**
 * The event-id index on disk, in LMDB (`lmdb` on npm: memory-mapped B+trees, crash-safe
 * commits). One environment file `<dir>/event-ids.mdb` (plus `event-ids.mdb-lock`) with:
 *
 * - `ids` (named database): 16-byte event id → [f64 LE position][f64 LE revision] of its
 *   latest occurrence;
 * - `batches` (named database): [u64 BE position of its first event] → the batch as written
 *   ([16-byte id][f64 LE position][f64 LE revision] per event), in position order, so a
 *   truncation is a range delete (the batch holding the cut, and every later one);
 * - `persistedUpTo` (a key of the main database) → f64 LE: every event below this log
 *   position is in `ids`.
 *
 * Lookups are synchronous B+tree reads of the memory map on the event loop's thread
 * (O(log n)). Added events wait in memory (`PendingIds`, visible to lookups) until the log is
 * durable past them, then go to LMDB in one write transaction per `flushEntries` events or
 * `flushEveryMs`, whichever comes first, with `persistedUpTo` last. Writes run in a worker
 * thread of their own (the event loop only packs 32 bytes per event and hands them over), and
 * LMDB syncs in the background (`overlappingSync`): no fsync on the append path. A crash
 * loses at most the entries not yet written; the store re-indexes the log from
 * `persistedUpTo` at open. Truncation removes entries at or above the cut, synced before it
 * resolves.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { open, type Database, type RootDatabase, type Transaction } from "lmdb";
import type { Logger } from "../log.js";
import { PendingIds, type EventIdHit, type EventIdIndex } from "./event-id-index.js";

export const EVENT_ID_INDEX_FILE = "event-ids.mdb";
export const DEFAULT_FLUSH_ENTRIES = 65_536;
export const DEFAULT_FLUSH_EVERY_MS = 5000;

const PERSISTED_UP_TO = "persistedUpTo";
/** Bytes per event handed to the writer: id, f64 position, f64 revision. */
const ENTRY_BYTES = 32;

/** The writer thread (CommonJS, evaluated: it must run from the sources under test as well). */
const WRITER_SOURCE = `
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const { open } = require(workerData.lmdb);
const env = open({ path: workerData.path, keyEncoding: "binary", encoding: "binary", maxDbs: 4 });
const ids = env.openDB({ name: "ids", keyEncoding: "binary", encoding: "binary" });
const batches = env.openDB({ name: "batches", keyEncoding: "binary", encoding: "binary" });
const UP = Buffer.from(${JSON.stringify(PERSISTED_UP_TO)}, "utf8");
const E = ${ENTRY_BYTES};
function f64(v) { const b = Buffer.allocUnsafe(8); b.writeDoubleLE(v, 0); return b; }
function positionKey(p) {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(p / 4294967296), 0);
  b.writeUInt32BE(p % 4294967296, 4);
  return b;
}
// Reused for every put of a write (LMDB copies keys and values).
const key = Buffer.allocUnsafe(16);
const value = Buffer.allocUnsafe(16);
function write(b, n, upTo) {
  // Ids roughly in key order (by their first 4 bytes; a stable sort, so the later of two
  // occurrences of an id stays last): neighbouring inserts touch the same B+tree pages.
  const prefix = new Uint32Array(n);
  for (let i = 0; i < n; i++) prefix[i] = b.readUInt32BE(i * E);
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((x, y) => prefix[x] - prefix[y]);
  env.transactionSync(() => {
    for (const i of order) {
      b.copy(key, 0, i * E, i * E + 16);
      b.copy(value, 0, i * E + 16, i * E + 32);
      ids.putSync(key, value);
    }
    // The batch itself, under its first position: what a truncation needs.
    if (n > 0) batches.putSync(positionKey(b.readDoubleLE(16)), b);
    env.putSync(UP, f64(upTo));
  });
}
function truncate(p) {
  if (p === 0) {
    // Everything: persistedUpTo first (entries left over by a crash are harmless: every hit
    // is checked against the log).
    env.putSync(UP, f64(0));
    ids.clearSync();
    batches.clearSync();
    return;
  }
  env.transactionSync(() => {
    // The batch holding p (the last one starting at or below it) and every later one.
    let start = positionKey(p);
    for (const { key } of batches.getRange({ start, reverse: true, limit: 1 })) start = Buffer.from(key);
    const found = [];
    for (const { key, value } of batches.getRange({ start })) found.push([Buffer.from(key), Buffer.from(value)]);
    for (const [k, v] of found) {
      let keep = 0;
      while (keep < v.length && v.readDoubleLE(keep + 16) < p) keep += E;
      for (let o = keep; o < v.length; o += E) {
        const id = v.subarray(o, o + 16);
        const current = ids.get(id);
        // Only when it is this occurrence (an older one of the same id is then lost: ids
        // are written twice only by appends that were not retries).
        if (current !== undefined && current.readDoubleLE(0) === v.readDoubleLE(o + 16)) ids.removeSync(id);
      }
      if (keep === 0) batches.removeSync(k);
      else if (keep < v.length) batches.putSync(k, v.subarray(0, keep));
    }
    env.putSync(UP, f64(p));
  });
}
async function handle(m) {
  if (m.op === "write") {
    write(Buffer.from(m.buf), m.n, m.upTo);
  } else if (m.op === "truncate") {
    truncate(m.position);
    await env.flushed;
  } else if (m.op === "close") {
    await env.close();
  }
}
parentPort.on("message", (m) => {
  handle(m).then(
    () => parentPort.postMessage({ seq: m.seq }),
    (err) => parentPort.postMessage({ seq: m.seq, error: String((err && err.stack) || err) }),
  );
});
`;

type Request =
  | { op: "ready" }
  | { op: "write"; buf: ArrayBuffer; n: number; upTo: number }
  | { op: "truncate"; position: number }
  | { op: "close" };

export interface LmdbEventIdIndexOptions {
  /** The LMDB file (its lock file is `<path>-lock`). */
  path: string;
  logger?: Logger;
  /** Write to LMDB once this many durable entries wait in memory. */
  flushEntries?: number;
  /** ... or this long after the log became durable past an entry, whichever comes first. */
  flushEveryMs?: number;
}

export class LmdbEventIdIndex implements EventIdIndex {
  private readonly path: string;
  private readonly logger: Logger | undefined;
  private readonly flushEntries: number;
  private readonly flushEveryMs: number;
  private readonly pending = new PendingIds();
  private env: RootDatabase<Buffer, Buffer> | null = null;
  private ids: Database<Buffer, Buffer> | null = null;
  /**
   * One read transaction for every lookup, renewed after each write of the writer (lmdb's own
   * would be renewed, and a timer set, at every turn of the event loop).
   */
  private readTxn: Transaction | null = null;
  private readOptions: { transaction: Transaction } | undefined;
  private writer: Worker | null = null;
  private writerBroken: Error | null = null;
  private readonly replies = new Map<
    number,
    { resolve: () => void; reject: (err: Error) => void }
  >();
  private seq = 0;
  /** Lookups reuse one key buffer (LMDB copies it). */
  private readonly key = Buffer.alloc(16);
  private persisted = 0;
  private durableEnd = 0;
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failedFlushes = 0;

  constructor(options: LmdbEventIdIndexOptions) {
    this.path = options.path;
    this.logger = options.logger;
    this.flushEntries = options.flushEntries ?? DEFAULT_FLUSH_ENTRIES;
    this.flushEveryMs = options.flushEveryMs ?? DEFAULT_FLUSH_EVERY_MS;
    if (!(this.flushEntries >= 1)) throw new RangeError("flushEntries must be >= 1");
    if (!(this.flushEveryMs >= 0)) throw new RangeError("flushEveryMs must be >= 0");
  }

  get persistedUpTo(): number {
    return this.persisted;
  }

  get memoryEntries(): number {
    return this.pending.length;
  }

  async open(): Promise<void> {
    if (this.env !== null) return;
    this.pending.clear();
    let env: RootDatabase<Buffer, Buffer>;
    try {
      env = open<Buffer, Buffer>({
        path: this.path,
        keyEncoding: "binary",
        encoding: "binary",
        maxDbs: 4,
      });
    } catch (err) {
      throw new Error(
        `cannot open the event-id index ${this.path}: ${err instanceof Error ? err.message : String(err)} ` +
          `(it is derived from the log: delete it and ${this.path}-lock to rebuild it at the next start)`,
        { cause: err },
      );
    }
    this.env = env;
    this.ids = env.openDB<Buffer, Buffer>({
      name: "ids",
      keyEncoding: "binary",
      encoding: "binary",
    });
    const saved = env.get(Buffer.from(PERSISTED_UP_TO, "utf8"));
    this.persisted = saved !== undefined && saved.length === 8 ? saved.readDoubleLE(0) : 0;
    this.durableEnd = this.persisted;
    this.renewReadTxn();
    this.writerBroken = null;
    const writer = new Worker(WRITER_SOURCE, {
      eval: true,
      workerData: { lmdb: createRequire(import.meta.url).resolve("lmdb"), path: this.path },
    });
    writer.unref(); // ref'd only while a request is outstanding
    writer.on("message", (m: { seq: number; error?: string }) => {
      const r = this.replies.get(m.seq);
      if (r === undefined) return;
      this.replies.delete(m.seq);
      if (this.replies.size === 0) writer.unref();
      if (m.error === undefined) r.resolve();
      else r.reject(new Error(`event-id index writer: ${m.error}`));
    });
    const broken = (err: Error): void => {
      this.writerBroken = err;
      for (const r of this.replies.values()) r.reject(err);
      this.replies.clear();
    };
    writer.on("error", broken);
    writer.on("exit", (code) => broken(new Error(`event-id index writer exited (${code})`)));
    this.writer = writer;
    // The thread loads lmdb and opens the file now, not in the middle of the first writes.
    try {
      await this.request({ op: "ready" });
    } catch (err) {
      await this.release().catch(() => undefined);
      throw new Error(
        `cannot start the event-id index writer for ${this.path}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }

  private request(req: Request): Promise<void> {
    const writer = this.writer;
    if (writer === null) return Promise.reject(new Error("event-id index is closed"));
    if (this.writerBroken !== null) return Promise.reject(this.writerBroken);
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      if (this.replies.size === 0) writer.ref();
      this.replies.set(seq, { resolve, reject });
      writer.postMessage({ ...req, seq }, req.op === "write" ? [req.buf] : []);
    });
  }

  get(idKey: string): EventIdHit | undefined {
    const recent = this.pending.get(idKey);
    if (recent !== undefined) return recent;
    if (this.ids === null) return undefined;
    this.key.write(idKey, 0, 16, "latin1");
    const v = this.ids.get(this.key, this.readOptions);
    if (v === undefined || v.length < 16) return undefined;
    return { position: v.readDoubleLE(0), revision: v.readDoubleLE(8) };
  }

  add(idKey: string, position: number, revision: number): void {
    if (position < this.persisted) return;
    this.pending.add(idKey, position, revision);
  }

  durable(position: number): void {
    if (position > this.durableEnd) this.durableEnd = position;
    if (this.writer === null || this.flushing !== null) return;
    if (this.pending.countBelow(this.durableEnd) >= this.flushEntries) {
      this.flush();
    } else if (this.timer === null && this.durableEnd > this.persisted) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.flushing === null) this.flush();
      }, this.flushEveryMs);
      this.timer.unref();
    }
  }

  /** Hands the entries below the durable end, and that end, to the writer. */
  private flush(): void {
    if (this.writer === null) return;
    const upTo = this.durableEnd;
    const n = this.pending.countBelow(upTo);
    if (n === 0 && upTo <= this.persisted) return;
    const batch = this.pending.front(n);
    const ab = new ArrayBuffer(n * ENTRY_BYTES); // transferred to the writer, not copied
    const buf = Buffer.from(ab);
    for (let i = 0; i < n; i++) {
      const o = i * ENTRY_BYTES;
      buf.write(batch.ids[i] as string, o, 16, "latin1");
      buf.writeDoubleLE(batch.positions[i] as number, o + 16);
      buf.writeDoubleLE(batch.revisions[i] as number, o + 24);
    }
    this.flushing = this.request({ op: "write", buf: ab, n, upTo })
      .then(
        () => {
          // The writer committed: make this thread's reads see it, then forget the entries.
          this.renewReadTxn();
          this.pending.drop(n);
          this.persisted = upTo;
          this.failedFlushes = 0;
        },
        (err: unknown) => {
          // Derived data: the entries stay in memory and the next flush tries again.
          if (this.failedFlushes++ === 0)
            this.logger?.warn({ err, path: this.path }, "writing the event-id index failed");
        },
      )
      .finally(() => {
        this.flushing = null;
        this.durable(this.durableEnd);
      });
  }

  private renewReadTxn(): void {
    this.readTxn?.done();
    this.readTxn = null;
    this.readOptions = undefined;
    if (this.env === null) return;
    this.env.resetReadTxn();
    this.readTxn = this.env.useReadTransaction();
    this.readOptions = { transaction: this.readTxn };
  }

  private async settle(): Promise<void> {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing !== null) await this.flushing;
  }

  async truncate(position: number): Promise<void> {
    await this.settle();
    this.pending.truncate(position);
    this.durableEnd = Math.min(this.durableEnd, position);
    if (this.writer === null || this.persisted <= position) return;
    await this.request({ op: "truncate", position });
    this.renewReadTxn();
    this.persisted = position;
  }

  async close(): Promise<void> {
    if (this.writer === null) return;
    await this.settle();
    this.flush();
    await this.settle();
    await this.release();
  }

  async abort(): Promise<void> {
    if (this.writer === null) return;
    await this.settle();
    await this.release();
  }

  private async release(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const writer = this.writer;
    const env = this.env;
    try {
      if (this.writerBroken === null) await this.request({ op: "close" });
    } finally {
      this.writer = null;
      this.env = null;
      this.ids = null;
      this.pending.clear();
      this.replies.clear();
      this.readTxn?.done();
      this.readTxn = null;
      this.readOptions = undefined;
      writer?.removeAllListeners();
      await writer?.terminate();
      await env?.close();
    }
  }
}
