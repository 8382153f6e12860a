/**
 * The index's engine on disk: LMDB (`lmdb` on npm: memory-mapped B+trees, crash-safe
 * commits), one environment file (`<path>`, plus `<path>-lock`) with a named database per
 * table; and, for the `ids` table, sorted run files (`id-runs.ts`) in a directory beside it,
 * which the `ids` database lists.
 *
 * Reads are synchronous B+tree lookups in the memory map on the event loop's thread, through
 * one read transaction renewed after each write. Writes run in a worker thread of their own:
 * the event loop packs a batch into one buffer and hands it over (transferred, not copied);
 * the worker applies it in one write transaction, its puts sorted by key so neighbouring
 * inserts touch the same pages. LMDB syncs in the background (`overlappingSync`): a crash
 * loses at most the last batches, never leaves half of one. A write's event ids go to a new
 * run file, written and synced first; the transaction lists it with the rest of the batch.
 */
import { open as openFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { setImmediate as setImmediatePromise } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import { open, type Database, type RootDatabase, type Transaction } from "lmdb";
import { decodeRunList, encodeRunList, IdRuns, IdRunsCorruptError } from "./id-runs.js";
import { KV_TABLES, packOps, type Kv, type KvBlock, type KvOp, type KvTable } from "./kv.js";

/** The writer thread (CommonJS, evaluated: it must run from the sources under test as well). */
const WRITER_SOURCE = `
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const { open } = require(workerData.lmdb);
const TABLES = ${JSON.stringify(KV_TABLES)};
const env = open({ path: workerData.path, keyEncoding: "binary", encoding: "binary", maxDbs: 8, ...workerData.map });
const dbs = TABLES.map((name) => env.openDB({ name, keyEncoding: "binary", encoding: "binary" }));
// The ops as packed by packOps() in kv.ts (blocks are packed as plain puts), applied in key
// order (neighbouring inserts touch the same B+tree pages): sorted by table and the key's first
// 4 bytes as numbers (cheap), then (in a large batch) by the whole key; stable, so of two ops
// on one key the later stays last.
function write(buf) {
  let n = 0;
  for (let o = 0; o < buf.length; n++) {
    const kl = buf.readUInt16LE(o + 1);
    const vl = buf.readUInt32LE(o + 3 + kl);
    o += 7 + kl + (vl === 0xffffffff ? 0 : vl);
  }
  const at = new Uint32Array(n);
  const rank = new Float64Array(n);
  for (let i = 0, o = 0; i < n; i++) {
    at[i] = o;
    const kl = buf.readUInt16LE(o + 1);
    let prefix = 0;
    for (let j = 0; j < 4; j++) prefix = prefix * 256 + (j < kl ? buf[o + 3 + j] : 0);
    rank[i] = buf[o] * 4294967296 + prefix;
    const vl = buf.readUInt32LE(o + 3 + kl);
    o += 7 + kl + (vl === 0xffffffff ? 0 : vl);
  }
  const key = (i) => buf.subarray(at[i] + 3, at[i] + 3 + buf.readUInt16LE(at[i] + 1));
  let order;
  if (n <= PACKED_SORT_MAX) {
    // Rank and index packed in one float (rank < 2^35, index < 2^17: exact below 2^53), sorted
    // natively without a comparator call per pair; ties of rank go by index (the later op on
    // a key stays last; keys sharing their first 4 bytes are rare, their order only locality).
    const packed = new Float64Array(n);
    for (let i = 0; i < n; i++) packed[i] = rank[i] * PACKED_SORT_MAX + i;
    packed.sort();
    order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = packed[i] % PACKED_SORT_MAX;
  } else {
    order = Array.from({ length: n }, (_, i) => i);
    order.sort((x, y) => rank[x] - rank[y] || Buffer.compare(key(x), key(y)) || x - y);
  }
  env.transactionSync(() => {
    for (const i of order) {
      const o = at[i];
      const kl = buf.readUInt16LE(o + 1);
      const vl = buf.readUInt32LE(o + 3 + kl);
      const db = dbs[buf[o]];
      const k = copyInto(keys, buf, o + 3, kl);
      if (vl === 0xffffffff) db.removeSync(k);
      else db.putSync(k, copyInto(values, buf, o + 7 + kl, vl));
    }
  });
}
const PACKED_SORT_MAX = 131072;
// Reused buffers, one per length (LMDB copies keys and values): no garbage per put.
const keys = new Map();
const values = new Map();
function copyInto(scratch, buf, from, length) {
  let b = scratch.get(length);
  if (b === undefined) {
    if (scratch.size > 64) scratch.clear();
    b = Buffer.allocUnsafe(length);
    scratch.set(length, b);
  }
  buf.copy(b, 0, from, from + length);
  return b;
}
async function handle(m) {
  if (m.op === "write") {
    write(Buffer.from(m.buf));
    if (m.durable) await env.flushed;
  } else if (m.op === "clear") {
    env.transactionSync(() => { for (const db of dbs) db.clearSync(); });
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

/**
 * The address space the index's memory map reserves at open: virtual only (the map is
 * read-only and the file grows as pages are written). Without it lmdb starts with a small map
 * and doubles it as the file grows, and each map it outgrows stays mapped (readers may still
 * point into it), so the file's pages were resident in several maps at once: about twice the
 * file in the process's resident memory. An index past this size still grows it by doubling.
 * Where the address space is limited (ulimit -v), the index opens without it.
 */
const MAP_BYTES = 64 * 1024 ** 3;
/** LMDB's magic number, at byte 24 of the first meta page (page 0) as lmdb 3 writes it. */
const LMDB_MAGIC = 0xbeefc0de;
const LMDB_MAGIC_AT = 24;

/**
 * Why the file at `path` cannot be an LMDB environment, or null when it may be one (or is
 * missing or empty: LMDB creates it). lmdb crashes the process (SIGSEGV) on a file whose
 * first meta page is damaged, rather than reporting it: garbage, or the zeros a power loss
 * leaves when it cut the file's creation short. So that page is looked at first.
 */
async function headerDamage(path: string): Promise<string | null> {
  let file;
  try {
    file = await openFile(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  try {
    if ((await file.stat()).size === 0) return null;
    const head = Buffer.alloc(LMDB_MAGIC_AT + 4);
    const { bytesRead } = await file.read(head, 0, head.length, 0);
    if (bytesRead === head.length && head.readUInt32LE(LMDB_MAGIC_AT) === LMDB_MAGIC) return null;
    return `${path} has no LMDB header (its first page is damaged)`;
  } finally {
    await file.close();
  }
}

/** Entries packed per turn of the event loop (about 0.2 ms of work). */
const PACK_SLICE = 2048;

type Request =
  | { op: "ready" }
  | { op: "write"; buf: ArrayBuffer; durable?: boolean }
  | { op: "clear" }
  | { op: "close" };

/**
 * `packOps` a slice per turn of the event loop: a write carries thousands of stream changes at
 * times.
 */
async function packed(ops: readonly KvOp[], blocks: readonly KvBlock[] = []): Promise<ArrayBuffer> {
  const packing = packOps(ops, blocks, PACK_SLICE);
  let step = packing.next();
  while (step.done !== true) {
    await setImmediatePromise();
    step = packing.next();
  }
  return step.value;
}

/** The key of the live id runs' list in the `ids` database (its only key). */
const RUNS_KEY = Buffer.from("runs", "latin1");

export interface LmdbKvOptions {
  /** Files of older index formats, removed at open. */
  obsolete?: readonly string[];
  /** The directory of the id runs (default: `<path>` without `.mdb`, then `-ids`). */
  runsDir?: string;
  /** Told of a background merge of id runs that failed (its runs stay; retried later). */
  onMergeError?: (err: Error) => void;
  /** Told why an index found at open is emptied (the store then rebuilds it from the log). */
  onDiscard?: (reason: string) => void;
}

export class LmdbKv implements Kv {
  private env: RootDatabase<Buffer, Buffer> | null = null;
  private dbs: Array<Database<Buffer, Buffer>> = [];
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
  private readonly runs: IdRuns;
  /** Commits (writes, and merges' list changes) one at a time, in order. */
  private commits: Promise<void> = Promise.resolve();
  private merging: Promise<void> | null = null;
  /** The write in flight (one at a time), settled. */
  private writing: Promise<void> = Promise.resolve();
  private mergeStop = new AbortController();

  /** `path`: the LMDB file. */
  constructor(
    private readonly path: string,
    private readonly options: LmdbKvOptions = {},
  ) {
    this.runs = new IdRuns(options.runsDir ?? `${path.replace(/\.mdb$/, "")}-ids`);
  }

  async open(): Promise<void> {
    if (this.env !== null) return;
    for (const f of this.options.obsolete ?? []) await rm(f, { force: true });
    const damage = await headerDamage(this.path);
    if (damage !== null) {
      // Derived data: emptied, the store rebuilds it from the log.
      this.options.onDiscard?.(damage);
      await rm(this.path, { force: true });
      await rm(`${this.path}-lock`, { force: true });
    }
    let env: RootDatabase<Buffer, Buffer>;
    let map: { mapSize?: number } = { mapSize: MAP_BYTES };
    const openEnv = () =>
      open<Buffer, Buffer>({
        path: this.path,
        keyEncoding: "binary",
        encoding: "binary",
        maxDbs: 8,
        ...map,
      });
    try {
      try {
        env = openEnv();
      } catch {
        map = {};
        env = openEnv();
      }
    } catch (err) {
      throw new Error(
        `cannot open the index ${this.path}: ${err instanceof Error ? err.message : String(err)} ` +
          `(it is derived from the log: delete it and ${this.path}-lock to rebuild it at the next start)`,
        { cause: err },
      );
    }
    this.env = env;
    this.dbs = KV_TABLES.map((name) =>
      env.openDB<Buffer, Buffer>({ name, keyEncoding: "binary", encoding: "binary" }),
    );
    this.renewReadTxn();
    this.writerBroken = null;
    const writer = new Worker(WRITER_SOURCE, {
      eval: true,
      workerData: { lmdb: createRequire(import.meta.url).resolve("lmdb"), path: this.path, map },
    });
    writer.unref(); // ref'd only while a request is outstanding
    writer.on("message", (m: { seq: number; error?: string }) => {
      const r = this.replies.get(m.seq);
      if (r === undefined) return;
      this.replies.delete(m.seq);
      if (this.replies.size === 0) writer.unref();
      if (m.error === undefined) r.resolve();
      else r.reject(new Error(`index writer: ${m.error}`));
    });
    const broken = (err: Error): void => {
      this.writerBroken = err;
      for (const r of this.replies.values()) r.reject(err);
      this.replies.clear();
    };
    writer.on("error", broken);
    writer.on("exit", (code) => broken(new Error(`index writer exited (${code})`)));
    this.writer = writer;
    // The thread loads lmdb and opens the file now, not in the middle of the first writes.
    try {
      await this.request({ op: "ready" });
    } catch (err) {
      await this.release().catch(() => undefined);
      throw new Error(
        `cannot start the index writer for ${this.path}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    this.mergeStop = new AbortController();
    await this.openRuns();
  }

  /**
   * Opens the runs the `ids` database lists. An index whose `ids` database holds anything else
   * (ids themselves: the layout before runs) or whose runs are damaged is emptied: it is
   * derived data, rebuilt from the log.
   */
  private async openRuns(): Promise<void> {
    const ids = this.db("ids");
    let reason = "its event ids are of the layout before id runs";
    try {
      const keys = [...ids.getKeys({ limit: 2, ...this.readOptions })];
      if (keys.every((key) => key.equals(RUNS_KEY))) {
        const list = ids.get(RUNS_KEY, this.readOptions);
        return await this.runs.open(list === undefined ? [] : decodeRunList(list));
      }
    } catch (err) {
      if (!(err instanceof IdRunsCorruptError)) throw err;
      reason = err.message;
    }
    this.options.onDiscard?.(reason);
    await this.request({ op: "clear" });
    this.renewReadTxn();
    await this.runs.open([]);
  }

  private db(table: KvTable): Database<Buffer, Buffer> {
    const db = this.dbs[KV_TABLES.indexOf(table)];
    if (db === undefined) throw new Error(`the index ${this.path} is closed`);
    return db;
  }

  get(table: KvTable, key: Buffer): Buffer | undefined {
    if (table === "ids") return this.runs.get(key);
    const db = this.dbs[KV_TABLES.indexOf(table)];
    return db?.get(key, this.readOptions);
  }

  entries(table: KvTable): Array<[Buffer, Buffer]> {
    if (table === "ids") throw new RangeError("the ids table is read by key only");
    const db = this.dbs[KV_TABLES.indexOf(table)];
    if (db === undefined) return [];
    const out: Array<[Buffer, Buffer]> = [];
    for (const { key, value } of db.getRange({ transaction: this.readTxn ?? undefined }))
      out.push([Buffer.from(key), Buffer.from(value)]);
    return out;
  }

  write(ops: readonly KvOp[], blocks: readonly KvBlock[] = []): Promise<void> {
    const done = this.writeNow(ops, blocks);
    this.writing = done.catch(() => undefined);
    return done;
  }

  private async writeNow(ops: readonly KvOp[], blocks: readonly KvBlock[]): Promise<void> {
    if (ops.some((op) => op.table === "ids"))
      throw new RangeError("event ids are written as a block, not as single ops");
    const idBlocks = blocks.filter((b) => b.table === "ids" && b.count > 0);
    if (idBlocks.length > 1) throw new RangeError("a write carries its event ids in one block");
    const ids = idBlocks[0];
    if (ids !== undefined && (ids.keyBytes !== 16 || ids.valueBytes !== 16))
      throw new RangeError("an event id block has 16-byte keys and 16-byte values");
    const rest = blocks.filter((b) => b.table !== "ids");
    if (ops.length === 0 && ids === undefined && rest.every((b) => b.count === 0)) return;
    const run =
      ids === undefined ? undefined : await this.runs.write(ids.count, ids.fill.bind(ids));
    try {
      await this.commit(async () => {
        const list: KvOp[] =
          run === undefined
            ? []
            : [{ table: "ids", key: RUNS_KEY, value: encodeRunList(this.runs.listWith(run)) }];
        await this.request({ op: "write", buf: await packed([...ops, ...list], rest) });
        this.runs.install(run);
        this.renewReadTxn();
      });
    } catch (err) {
      if (run !== undefined) await this.runs.discard(run);
      throw err;
    }
    this.mergeRuns();
  }

  /** Runs `body` after every commit before it. */
  private commit(body: () => Promise<void>): Promise<void> {
    const done = this.commits.then(body);
    this.commits = done.catch(() => undefined);
    return done;
  }

  /** Starts merging id runs in the background when some are due (one merge at a time). */
  private mergeRuns(): void {
    if (this.merging !== null || this.mergeStop.signal.aborted || this.runs.plan() === undefined)
      return;
    this.merging = (async () => {
      for (let inputs = this.runs.plan(); inputs !== undefined; inputs = this.runs.plan()) {
        const out = await this.runs.merge(inputs, this.mergeStop.signal);
        if (out === undefined) return;
        try {
          await this.commit(async () => {
            if (this.mergeStop.signal.aborted) throw new Error("stopped");
            const value = encodeRunList(this.runs.listWith(out, inputs));
            const buf = await packed([{ table: "ids", key: RUNS_KEY, value }]);
            // Durable before the inputs' files go: a list naming them may not come back.
            await this.request({ op: "write", buf, durable: true });
            this.runs.install(out, inputs);
            this.renewReadTxn();
          });
        } catch (err) {
          await this.runs.discard(out);
          if (this.mergeStop.signal.aborted) return;
          throw err;
        }
      }
    })()
      .catch((err: unknown) => {
        if (!this.mergeStop.signal.aborted)
          this.options.onMergeError?.(err instanceof Error ? err : new Error(String(err)));
      })
      .finally(() => {
        this.merging = null;
      });
  }

  /** Stops a merge in flight (its output is dropped; its inputs stay live). */
  private async haltMerges(): Promise<void> {
    this.mergeStop.abort();
    await this.merging;
  }

  async clear(): Promise<void> {
    await this.haltMerges();
    try {
      await this.commit(async () => {
        await this.request({ op: "clear" });
        this.renewReadTxn();
        await this.runs.clear();
      });
    } finally {
      this.mergeStop = new AbortController();
    }
  }

  async close(): Promise<void> {
    if (this.writer === null) return;
    await this.writing;
    await this.haltMerges();
    await this.commits;
    this.runs.close();
    await this.release();
  }

  private request(req: Request): Promise<void> {
    const writer = this.writer;
    if (writer === null) return Promise.reject(new Error(`the index ${this.path} is closed`));
    if (this.writerBroken !== null) return Promise.reject(this.writerBroken);
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      if (this.replies.size === 0) writer.ref();
      this.replies.set(seq, { resolve, reject });
      writer.postMessage({ ...req, seq }, req.op === "write" ? [req.buf] : []);
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

  private async release(): Promise<void> {
    const writer = this.writer;
    const env = this.env;
    try {
      if (this.writerBroken === null) await this.request({ op: "close" });
    } finally {
      this.writer = null;
      this.env = null;
      this.dbs = [];
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
