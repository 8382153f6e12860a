/**
 * The event-id table of the on-disk index, as sorted runs (a log-structured table): each
 * index write adds one file of its ids, sorted; runs of about the same size are merged into
 * one in the background (size-tiered: at most MERGE_WIDTH - 1 runs per size class).
 *
 * Why not a B+tree: event ids are random keys. In LMDB every id written landed on a leaf of
 * its own, so each index write rewrote (copy on write) about one 4 KiB page per id, and the
 * pages freed that way kept the file (and the memory map's resident pages) at several times
 * its data. A run writes 32 bytes per id, in order; merges rewrite it a few times in its life.
 *
 * A run file, `ids-<n>.run`, little-endian numbers:
 * - header (64 bytes): "CHIDRUN1", u32 version, f64 count, u32 filter bytes, u32 blocks,
 *   u32 CRC-32C of the header's first 28 bytes followed by the tail;
 * - entries: `count` × [16-byte id][f64 position][f64 revision], ascending by id, each id once
 *   (its latest occurrence: the highest position); in blocks of BLOCK_ENTRIES (4 KiB);
 * - tail: the run's id filter (`id-filter.ts`), the first id of every block, and the CRC-32C of
 *   every block.
 *
 * The tails are read at open and kept in memory (about 1.5 bytes per id for the filters, 20
 * per block of 128 ids). A lookup reads one block, with `pread`, of each run whose filter says
 * "maybe"; an id found in several runs answers with its highest position. Nothing is mapped:
 * the files' pages are the kernel's cache, not the process's memory.
 *
 * Which runs are live, the owner records (`lmdb-kv.ts`, in the index write's transaction): a
 * run is written and synced before a list names it, and its file is removed only once a list
 * without it is durable; a file that no list names at open is a leftover, and is removed.
 *
 * Writing and merging runs happens on a worker thread of lower priority (`id-runs-worker.ts`;
 * the file code is in `id-run-format.ts`); lookups, and the list of live runs, stay here.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { crc32c } from "@node-rs/crc32";
import { mkdirDurable } from "../fsync-dir.js";
import { IdFilter } from "./id-filter.js";
import {
  BLOCK_BYTES,
  BLOCK_ENTRIES,
  compareIds,
  ENTRY_BYTES,
  HEADER_BYTES,
  ID_BYTES,
  IdRunsCorruptError,
  MAGIC,
  MERGE_WIDTH,
  RUN_FILE,
  runFile,
  VERSION,
  type RunFile,
} from "./id-run-format.js";
import type { RunsJob, RunsReply, RunsRequest } from "./id-runs-worker.js";

export { IdRunsCorruptError, MERGE_WIDTH } from "./id-run-format.js";

/** Runs of up to this many ids are of the smallest size class; each next one is MERGE_WIDTH × larger. */
const CLASS_BASE = 4096;

/**
 * How long filling a write's entries may hold the event loop in one turn: the requests behind
 * it wait that long. The clock is read every CHECK_EVERY entries.
 */
const TURN_MS = 0.5;
const CHECK_EVERY = 128;

/** Tells, every CHECK_EVERY calls, whether this turn of the event loop has run its time. */
class Turns {
  private calls = 0;
  private turnEnd = performance.now() + TURN_MS;

  /** Call once per entry; when true, yield (`await nextTurn()`), then call `next`. */
  due(): boolean {
    if (++this.calls < CHECK_EVERY) return false;
    this.calls = 0;
    return performance.now() >= this.turnEnd;
  }

  next(): void {
    this.turnEnd = performance.now() + TURN_MS;
  }
}

/** A run as the owner lists it. */
export interface RunInfo {
  readonly id: number;
  readonly count: number;
}

/** The live runs' list as stored: [u32 n] then n × [u32 id][f64 count]. */
export function encodeRunList(runs: readonly RunInfo[]): Buffer {
  const b = Buffer.allocUnsafe(4 + runs.length * 12);
  b.writeUInt32LE(runs.length, 0);
  runs.forEach((r, i) => {
    b.writeUInt32LE(r.id, 4 + i * 12);
    b.writeDoubleLE(r.count, 8 + i * 12);
  });
  return b;
}

export function decodeRunList(b: Buffer): RunInfo[] {
  const n = b.length >= 4 ? b.readUInt32LE(0) : -1;
  if (n < 0 || b.length !== 4 + n * 12)
    throw new IdRunsCorruptError("the id runs' list is malformed");
  return Array.from({ length: n }, (_, i) => ({
    id: b.readUInt32LE(4 + i * 12),
    count: b.readDoubleLE(8 + i * 12),
  }));
}

function sizeClass(count: number): number {
  let c = 0;
  for (let cap = CLASS_BASE; count > cap; cap *= MERGE_WIDTH) c++;
  return c;
}

/** The runs to merge next: MERGE_WIDTH runs of the smallest size class that has as many. */
export function planMerge<R extends RunInfo>(runs: readonly R[]): R[] | undefined {
  const byClass = new Map<number, R[]>();
  for (const r of runs) {
    const c = sizeClass(r.count);
    const list = byClass.get(c) ?? [];
    list.push(r);
    byClass.set(c, list);
  }
  const full = [...byClass].filter(([, list]) => list.length >= MERGE_WIDTH);
  if (full.length === 0) return undefined;
  full.sort((a, b) => a[0] - b[0]);
  return full[0]![1].slice(0, MERGE_WIDTH);
}

function readFully(fd: number, buf: Buffer, length: number, position: number, path: string): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new IdRunsCorruptError(`${path} is shorter than its header says`);
    done += n;
  }
}

/** A run open for lookups. */
class Run implements RunInfo, RunFile {
  constructor(
    readonly id: number,
    readonly count: number,
    readonly path: string,
    readonly fd: number,
    readonly filter: IdFilter,
    /** The first id of every block. */
    readonly fences: Buffer,
    readonly blockCrcs: Uint32Array,
  ) {}

  get blocks(): number {
    return this.blockCrcs.length;
  }

  /** Opens and checks the run file at `path` (its header and tail; blocks as they are read). */
  static open(id: number, path: string): Run {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (err) {
      throw new IdRunsCorruptError(`cannot open ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      readFully(fd, header, HEADER_BYTES, 0, path);
      const count = header.readDoubleLE(12);
      const filterBytes = header.readUInt32LE(20);
      const blocks = header.readUInt32LE(24);
      const tailAt = HEADER_BYTES + count * ENTRY_BYTES;
      const tailBytes = filterBytes + blocks * (ID_BYTES + 4);
      if (
        header.toString("latin1", 0, 8) !== MAGIC ||
        header.readUInt32LE(8) !== VERSION ||
        !Number.isInteger(count) ||
        blocks !== Math.ceil(count / BLOCK_ENTRIES) ||
        fstatSync(fd).size !== tailAt + tailBytes
      )
        throw new IdRunsCorruptError(`${path} is not a whole id run`);
      const tail = Buffer.alloc(tailBytes);
      readFully(fd, tail, tailBytes, tailAt, path);
      if (crc32c(tail, crc32c(header.subarray(0, 28))) !== header.readUInt32LE(28))
        throw new IdRunsCorruptError(`${path} fails its CRC`);
      const bits = new Int32Array(filterBytes / 4);
      Buffer.from(bits.buffer).set(tail.subarray(0, filterBytes));
      const blockCrcs = new Uint32Array(blocks);
      const crcAt = filterBytes + blocks * ID_BYTES;
      for (let b = 0; b < blocks; b++) blockCrcs[b] = tail.readUInt32LE(crcAt + b * 4);
      const fences = Buffer.from(tail.subarray(filterBytes, crcAt));
      return new Run(id, count, path, fd, new IdFilter(0, bits), fences, blockCrcs);
    } catch (err) {
      closeSync(fd);
      throw err instanceof IdRunsCorruptError
        ? err
        : new IdRunsCorruptError(`${path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * The worker's script. Built, it sits beside this module; run from the sources (the tests), it
 * is the built one, which `npm test` builds first.
 */
function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  const path = here.endsWith(".ts")
    ? fileURLToPath(new URL("../../../dist/storage/index/id-runs-worker.js", import.meta.url))
    : fileURLToPath(new URL("./id-runs-worker.js", import.meta.url));
  if (!existsSync(path))
    throw new Error(
      `the id runs' worker script ${path} is missing: build the server (npm run build)`,
    );
  return path;
}

/** Requests to the worker thread, and their replies. */
class RunsThread {
  private worker: Worker | null = null;
  private seq = 0;
  private readonly replies = new Map<
    number,
    { resolve: (r: RunsReply) => void; reject: (err: Error) => void }
  >();

  /** Sends `job` under a new seq (`transfer` moved, not copied); its reply resolves `reply`. */
  ask(job: RunsJob, transfer: ArrayBuffer[] = []): { seq: number; reply: Promise<RunsReply> } {
    const worker = this.worker ?? this.start();
    const seq = ++this.seq;
    const reply = new Promise<RunsReply>((resolve, reject) => {
      if (this.replies.size === 0) worker.ref();
      this.replies.set(seq, { resolve, reject });
    });
    const req: RunsRequest = { ...job, seq };
    worker.postMessage(req, transfer);
    return { seq, reply };
  }

  /** Asks the merge of request `seq` to stop (it answers without a run). */
  stop(seq: number): void {
    const req: RunsRequest = { op: "stop", seq };
    if (this.replies.has(seq)) this.worker?.postMessage(req);
  }

  /** Ends the thread; what it was doing is cut off (leftover files go at the next open). */
  close(): void {
    const worker = this.worker;
    this.worker = null;
    if (worker !== null) void worker.terminate();
    this.failAll(new Error("the id runs are closed"));
  }

  private start(): Worker {
    const worker = new Worker(workerScript());
    worker.unref(); // ref'd only while a request is outstanding
    worker.on("message", (m: RunsReply) => {
      const r = this.replies.get(m.seq);
      if (r === undefined) return;
      this.replies.delete(m.seq);
      if (this.replies.size === 0) worker.unref();
      if (m.error === undefined) r.resolve(m);
      else
        r.reject(
          m.error.corrupt ? new IdRunsCorruptError(m.error.message) : new Error(m.error.message),
        );
    });
    const broken = (err: Error): void => {
      if (this.worker === worker) this.worker = null; // the next request starts another
      this.failAll(err);
    };
    worker.on("error", broken);
    worker.on("exit", (code) => broken(new Error(`the id runs' worker exited (${code})`)));
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    const replies = [...this.replies.values()];
    this.replies.clear();
    for (const r of replies) r.reject(err);
  }
}

export class IdRuns {
  private live: Run[] = [];
  private nextId = 1;
  /** One block, for lookups. */
  private readonly scratch = Buffer.allocUnsafe(BLOCK_BYTES);
  /**
   * A write's entries (grown to the largest write): lent to the worker during a write, handed
   * back with its reply. Over an ArrayBuffer of its own, so it can be moved, not copied.
   */
  private entries: Buffer = Buffer.from(new ArrayBuffer(0));
  private readonly thread = new RunsThread();

  constructor(readonly dir: string) {}

  /**
   * Opens the runs `listed` (the owner's durable list), and removes every other run file of
   * the directory (leftovers of writes and merges cut off by a crash).
   */
  async open(listed: readonly RunInfo[]): Promise<void> {
    this.close();
    await mkdirDurable(this.dir);
    const wanted = new Set(listed.map((r) => runFile(r.id)));
    let maxId = 0;
    for (const name of await readdir(this.dir)) {
      const m = RUN_FILE.exec(name);
      if (m === null) continue;
      maxId = Math.max(maxId, Number(m[1]));
      if (!wanted.has(name)) await rm(join(this.dir, name), { force: true });
    }
    try {
      for (const r of listed) {
        const run = Run.open(r.id, join(this.dir, runFile(r.id)));
        this.live.push(run);
        if (run.count !== r.count)
          throw new IdRunsCorruptError(`${run.path} holds ${run.count} ids, not ${r.count}`);
        maxId = Math.max(maxId, r.id);
      }
    } catch (err) {
      this.close();
      throw err;
    }
    this.nextId = maxId + 1;
  }

  /** The live runs, newest first. */
  get list(): RunInfo[] {
    return this.live.map((r) => ({ id: r.id, count: r.count }));
  }

  /** The live list once `add` is in and `remove` out: what the owner records. */
  listWith(add: RunInfo | undefined, remove: readonly RunInfo[] = []): RunInfo[] {
    const out = this.list.filter((r) => !remove.some((x) => x.id === r.id));
    return add === undefined ? out : [{ id: add.id, count: add.count }, ...out];
  }

  /** The value of the 16-byte id at `key[0]`: of its occurrence with the highest position. */
  get(key: Buffer): Buffer | undefined {
    let best: Buffer | undefined;
    const h = IdFilter.hashBytes(key, 0);
    for (const run of this.live) {
      if (!run.filter.mayHaveHashed(h)) continue;
      const at = this.find(run, key);
      if (at < 0) continue;
      if (best === undefined || this.scratch.readDoubleLE(at + ID_BYTES) > best.readDoubleLE(0))
        best = Buffer.from(this.scratch.subarray(at + ID_BYTES, at + ENTRY_BYTES));
    }
    return best;
  }

  /** Reads the block of `run` that may hold `key` into `scratch`; the entry's offset, or -1. */
  private find(run: Run, key: Buffer): number {
    if (run.count === 0 || compareIds(run.fences, 0, key, 0) > 0) return -1;
    let lo = 0;
    let hi = run.blocks - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (compareIds(run.fences, mid * ID_BYTES, key, 0) <= 0) lo = mid;
      else hi = mid - 1;
    }
    const n = Math.min(BLOCK_ENTRIES, run.count - lo * BLOCK_ENTRIES);
    readFully(run.fd, this.scratch, n * ENTRY_BYTES, HEADER_BYTES + lo * BLOCK_BYTES, run.path);
    if (crc32c(this.scratch.subarray(0, n * ENTRY_BYTES)) !== run.blockCrcs[lo])
      throw new IdRunsCorruptError(`${run.path}: block ${lo} fails its CRC`);
    let a = 0;
    let b = n - 1;
    while (a <= b) {
      const mid = (a + b) >>> 1;
      const d = compareIds(this.scratch, mid * ENTRY_BYTES, key, 0);
      if (d === 0) return mid * ENTRY_BYTES;
      if (d < 0) a = mid + 1;
      else b = mid - 1;
    }
    return -1;
  }

  /**
   * Writes a run of `count` entries that `fill` writes (entry i: its id at `keyAt`, position
   * and revision at `valueAt` of `buf`), sorted, each id once, synced. Not live until
   * `install`ed. Filling is done here, in turns of the event loop; the rest on the worker.
   */
  async write(
    count: number,
    fill: (i: number, buf: Buffer, keyAt: number, valueAt: number) => void,
  ): Promise<RunInfo> {
    if (this.entries.length < count * ENTRY_BYTES)
      this.entries = Buffer.from(new ArrayBuffer(count * ENTRY_BYTES));
    const entries = this.entries;
    const turns = new Turns();
    for (let i = 0; i < count; i++) {
      fill(i, entries, i * ENTRY_BYTES, i * ENTRY_BYTES + ID_BYTES);
      if (turns.due()) {
        await nextTurn();
        turns.next();
      }
    }
    const id = this.nextId++;
    const buffer = entries.buffer as ArrayBuffer;
    const { reply } = this.thread.ask({ op: "write", dir: this.dir, id, count, entries: buffer }, [
      buffer,
    ]);
    const r = await reply;
    if (r.entries !== undefined) this.entries = Buffer.from(r.entries);
    const run = this.opened(id, r);
    if (run === undefined) throw new Error("the id runs' worker wrote no run");
    return run;
  }

  /** The live runs to merge next, or none. */
  plan(): RunInfo[] | undefined {
    return planMerge(this.live);
  }

  /**
   * Merges `inputs` (live runs) into one run, not live until `install`ed (with `inputs` to
   * remove). Undefined when `signal` aborts first.
   */
  async merge(inputs: readonly RunInfo[], signal?: AbortSignal): Promise<RunInfo | undefined> {
    const runs = inputs.map((r) => this.live.find((x) => x.id === r.id));
    if (runs.some((r) => r === undefined) || runs.length > MERGE_WIDTH)
      throw new Error(`a merge takes up to ${MERGE_WIDTH} live runs`);
    if (signal?.aborted === true) return undefined;
    const id = this.nextId++;
    const files = (runs as Run[]).map((r) => ({
      path: r.path,
      count: r.count,
      blockCrcs: r.blockCrcs,
    }));
    const { seq, reply } = this.thread.ask({
      op: "merge",
      dir: this.dir,
      id,
      inputs: files,
    });
    const stop = (): void => this.thread.stop(seq);
    signal?.addEventListener("abort", stop, { once: true });
    try {
      return this.opened(id, await reply);
    } finally {
      signal?.removeEventListener("abort", stop);
    }
  }

  /** Run `id` as the worker wrote it (`reply`), open for lookups, pending. */
  private opened(id: number, reply: RunsReply): Run | undefined {
    const w = reply.run;
    if (w === undefined) return undefined;
    const path = join(this.dir, runFile(id));
    // From what the writer kept (filter, fences, block CRCs: moved here), not read back.
    const run = new Run(
      id,
      w.count,
      path,
      openSync(path, "r"),
      new IdFilter(0, w.filterBits),
      Buffer.from(w.fences),
      w.blockCrcs,
    );
    this.pending.set(id, run);
    return run;
  }

  /** Runs written, not yet installed or discarded. */
  private readonly pending = new Map<number, Run>();

  /** Makes `add` live and retires `remove` (their files removed: the owner's list is durable). */
  install(add: RunInfo | undefined, remove: readonly RunInfo[] = []): void {
    const run = add === undefined ? undefined : this.pending.get(add.id);
    if (add !== undefined && run === undefined) throw new Error(`run ${add.id} is not pending`);
    if (run !== undefined) this.pending.delete(run.id);
    const retired = this.live.filter((r) => remove.some((x) => x.id === r.id));
    this.live = [
      ...(run === undefined ? [] : [run]),
      ...this.live.filter((r) => !retired.includes(r)),
    ];
    for (const r of retired) {
      closeSync(r.fd);
      // No longer listed: a file this fails to remove is removed at the next open.
      void rm(r.path, { force: true }).catch(() => undefined);
    }
  }

  /** Drops a written run that will not be listed. */
  async discard(run: RunInfo): Promise<void> {
    const r = this.pending.get(run.id);
    if (r === undefined) return;
    this.pending.delete(run.id);
    closeSync(r.fd);
    await rm(r.path, { force: true });
  }

  /** Removes every run (the owner lists none any more). */
  async clear(): Promise<void> {
    this.close();
    for (const name of await readdir(this.dir).catch(() => [] as string[]))
      if (RUN_FILE.test(name)) await rm(join(this.dir, name), { force: true });
  }

  /** Closes the files (they stay on disk) and ends the worker (a write or merge in flight fails). */
  close(): void {
    this.thread.close();
    for (const r of [...this.live, ...this.pending.values()]) closeSync(r.fd);
    this.live = [];
    this.pending.clear();
  }
}
