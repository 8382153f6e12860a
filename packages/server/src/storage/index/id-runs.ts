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
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { crc32c } from "@node-rs/crc32";
import { IdFilter } from "./id-filter.js";

const ID_BYTES = 16;
/** [16-byte id][f64 position][f64 revision] */
export const ENTRY_BYTES = 32;
const BLOCK_ENTRIES = 128;
const BLOCK_BYTES = BLOCK_ENTRIES * ENTRY_BYTES;
const HEADER_BYTES = 64;
const MAGIC = "CHIDRUN1";
const VERSION = 1;
/** A size class merges once it has this many runs. */
export const MERGE_WIDTH = 4;
/** Runs of up to this many ids are of the smallest size class; each next one is MERGE_WIDTH × larger. */
const CLASS_BASE = 4096;
/**
 * How long a write or a merge may hold the event loop in one turn: the requests behind it wait
 * that long. The clock is read every CHECK_EVERY entries.
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

  /** `due`, reading the clock now (for steps of many entries). */
  dueNow(): boolean {
    this.calls = 0;
    return performance.now() >= this.turnEnd;
  }

  next(): void {
    this.turnEnd = performance.now() + TURN_MS;
  }
}
/**
 * Bytes per read or write of a run file (a whole number of blocks). The buffers are kept and
 * reused: buffers of this size allocated per write or merge and freed again fragment the
 * allocator's heap, which then holds tens of megabytes it does not give back.
 */
const IO_BYTES = 64 * BLOCK_BYTES;

/** A run as the owner lists it. */
export interface RunInfo {
  readonly id: number;
  readonly count: number;
}

/** A run file that is missing, short or fails its CRC: the index must be rebuilt. */
export class IdRunsCorruptError extends Error {
  override readonly name = "IdRunsCorruptError";
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

/** Orders the 16-byte ids at `a[ai]` and `b[bi]` as bytes. */
export function compareIds(a: Buffer, ai: number, b: Buffer, bi: number): number {
  for (let i = 0; i < ID_BYTES; i += 4) {
    const d = a.readUInt32BE(ai + i) - b.readUInt32BE(bi + i);
    if (d !== 0) return d;
  }
  return 0;
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

/**
 * The order of the `count` entries of `buf` ascending by id; equal ids keep their order. A
 * counting sort by the first byte, then each bucket by its next 4 bytes (a native sort of
 * numbers, no comparator call per pair), then ties of those 5 bytes by the whole id, written
 * to `into` (at least `count` long; returned, cut to `count`). Yields
 * between slices of work, so a caller on the event loop can spread it over turns.
 */
export function* sortEntries(
  buf: Buffer,
  count: number,
  into: Uint32Array = new Uint32Array(count),
): Generator<void, Uint32Array, void> {
  const starts = new Uint32Array(257);
  for (let i = 0; i < count; i++) starts[buf[i * ENTRY_BYTES]! + 1]!++;
  for (let b = 0; b < 256; b++) starts[b + 1]! += starts[b]!;
  yield;
  const next = starts.slice(0, 256);
  const order = into.subarray(0, count);
  for (let i = 0; i < count; i++) order[next[buf[i * ENTRY_BYTES]!]!++] = i;
  yield;
  const PLACE = 2 ** 20; // a bucket's places fit below it (packed with 32 bits: exact in a double)
  const turns = new Turns();
  for (let b = 0; b < 256; b++) {
    const from = starts[b]!;
    const to = starts[b + 1]!;
    const n = to - from;
    if (n < 2) continue;
    const bucket = order.slice(from, to);
    if (n < PLACE) {
      const packed = new Float64Array(n);
      for (let j = 0; j < n; j++)
        packed[j] = buf.readUInt32BE(bucket[j]! * ENTRY_BYTES + 1) * PLACE + j;
      packed.sort();
      for (let j = 0; j < n; j++) order[from + j] = bucket[packed[j]! % PLACE]!;
    } else {
      const sorted = Array.from(bucket).sort(
        (x, y) => compareIds(buf, x * ENTRY_BYTES, buf, y * ENTRY_BYTES) || x - y,
      );
      order.set(sorted, from);
    }
    // Sorted by 5 bytes; an insertion pass puts ids sharing them in order (stable).
    for (let j = from + 1; j < to; j++) {
      const x = order[j]!;
      let k = j - 1;
      while (k >= from && compareIds(buf, order[k]! * ENTRY_BYTES, buf, x * ENTRY_BYTES) > 0) {
        order[k + 1] = order[k]!;
        k--;
      }
      order[k + 1] = x;
    }
    if (turns.dueNow()) {
      yield;
      turns.next();
    }
  }
  return order;
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
class Run implements RunInfo {
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

/** Writes a run file from entries handed over in id order. */
class RunWriter {
  private used = 0;
  count = 0;
  private fileAt = HEADER_BYTES;
  readonly filter: IdFilter;
  fences: Buffer;
  private readonly crcs: number[] = [];

  /** `out`: an IO_BYTES buffer the writer may use until it is done. */
  constructor(
    private readonly file: FileHandle,
    maxCount: number,
    private readonly out: Buffer,
  ) {
    this.filter = new IdFilter(maxCount);
    this.fences = Buffer.allocUnsafe(Math.max(1, Math.ceil(maxCount / BLOCK_ENTRIES)) * ID_BYTES);
  }

  /** Takes the entry at `at` of `src` (ids ascending, each once); then `flush` if `full`. */
  add(src: Buffer, at: number): void {
    if (this.count % BLOCK_ENTRIES === 0)
      src.copy(this.fences, (this.count / BLOCK_ENTRIES) * ID_BYTES, at, at + ID_BYTES);
    // A loop, not Buffer#copy: that makes a view per call, and this runs once per id merged.
    const out = this.out;
    for (let i = 0, o = this.used; i < ENTRY_BYTES; i++) out[o + i] = src[at + i]!;
    this.filter.addBytes(src, at);
    this.used += ENTRY_BYTES;
    this.count++;
  }

  get full(): boolean {
    return this.used === this.out.length;
  }

  async flush(): Promise<void> {
    for (let b = 0; b < this.used; b += BLOCK_BYTES)
      this.crcs.push(crc32c(this.out.subarray(b, Math.min(b + BLOCK_BYTES, this.used))));
    await writeAll(this.file, this.out.subarray(0, this.used), this.fileAt);
    this.fileAt += this.used;
    this.used = 0;
  }

  /** Writes the tail and the header and syncs the file. */
  async finish(): Promise<void> {
    await this.flush();
    const blocks = this.crcs.length;
    const filter = Buffer.from(this.filter.bits.buffer, 0, this.filter.bits.byteLength);
    const crcs = Buffer.allocUnsafe(blocks * 4);
    this.crcs.forEach((c, b) => crcs.writeUInt32LE(c, b * 4));
    this.fences = this.fences.subarray(0, blocks * ID_BYTES);
    const tail = Buffer.concat([filter, this.fences, crcs]);
    const header = Buffer.alloc(HEADER_BYTES);
    header.write(MAGIC, 0, "latin1");
    header.writeUInt32LE(VERSION, 8);
    header.writeDoubleLE(this.count, 12);
    header.writeUInt32LE(filter.length, 20);
    header.writeUInt32LE(blocks, 24);
    header.writeUInt32LE(crc32c(tail, crc32c(header.subarray(0, 28))), 28);
    await writeAll(this.file, tail, this.fileAt);
    await writeAll(this.file, header, 0);
    await this.file.datasync();
  }

  get blockCrcs(): Uint32Array {
    return Uint32Array.from(this.crcs);
  }
}

async function writeAll(file: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length;) {
    const { bytesWritten } = await file.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads a run's entries in order, a chunk of blocks at a time, checking each block's CRC. */
class RunCursor {
  at = 0;
  private end = 0;
  private read = 0;
  done = false;

  private constructor(
    private readonly run: Run,
    private readonly file: FileHandle,
    /** An IO_BYTES buffer the cursor may use until it is closed. */
    readonly buf: Buffer,
  ) {}

  static async open(run: Run, buf: Buffer): Promise<RunCursor> {
    const c = new RunCursor(run, await open(run.path, "r"), buf);
    try {
      await c.fill();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  get position(): number {
    return this.buf.readDoubleLE(this.at + ID_BYTES);
  }

  /** Moves to the next entry; true when the chunk is used up (then `fill`). */
  advance(): boolean {
    this.at += ENTRY_BYTES;
    return this.at === this.end;
  }

  async fill(): Promise<void> {
    const n = Math.min(this.run.count - this.read, IO_BYTES / ENTRY_BYTES);
    if (n === 0) {
      this.done = true;
      return;
    }
    const bytes = n * ENTRY_BYTES;
    const from = HEADER_BYTES + this.read * ENTRY_BYTES;
    for (let done = 0; done < bytes;) {
      const { bytesRead } = await this.file.read(this.buf, done, bytes - done, from + done);
      if (bytesRead === 0) throw new IdRunsCorruptError(`${this.run.path} is short`);
      done += bytesRead;
    }
    const firstBlock = this.read / BLOCK_ENTRIES;
    for (let b = 0; b * BLOCK_BYTES < bytes; b++) {
      const block = this.buf.subarray(b * BLOCK_BYTES, Math.min((b + 1) * BLOCK_BYTES, bytes));
      if (crc32c(block) !== this.run.blockCrcs[firstBlock + b])
        throw new IdRunsCorruptError(`${this.run.path}: block ${firstBlock + b} fails its CRC`);
    }
    this.read += n;
    this.at = 0;
    this.end = bytes;
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

function runFile(id: number): string {
  return `ids-${String(id).padStart(10, "0")}.run`;
}

const RUN_FILE = /^ids-(\d{10})\.run(\.tmp)?$/;

export class IdRuns {
  private live: Run[] = [];
  private nextId = 1;
  /** One block, for lookups. */
  private readonly scratch = Buffer.allocUnsafe(BLOCK_BYTES);
  /** A write's entries (grown to the largest write), and its output buffer. */
  private entries = Buffer.alloc(0);
  private order = new Uint32Array(0);
  private readonly writeOut = Buffer.allocUnsafe(IO_BYTES);
  /** A merge's input buffers (one per input) and output buffer: one merge at a time. */
  private readonly mergeIn = Array.from({ length: MERGE_WIDTH }, () =>
    Buffer.allocUnsafe(IO_BYTES),
  );
  private readonly mergeOut = Buffer.allocUnsafe(IO_BYTES);

  constructor(readonly dir: string) {}

  /**
   * Opens the runs `listed` (the owner's durable list), and removes every other run file of
   * the directory (leftovers of writes and merges cut off by a crash).
   */
  async open(listed: readonly RunInfo[]): Promise<void> {
    this.close();
    await mkdir(this.dir, { recursive: true });
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
   * `install`ed.
   */
  async write(
    count: number,
    fill: (i: number, buf: Buffer, keyAt: number, valueAt: number) => void,
  ): Promise<RunInfo> {
    if (this.entries.length < count * ENTRY_BYTES)
      this.entries = Buffer.allocUnsafe(count * ENTRY_BYTES);
    const entries = this.entries;
    if (this.order.length < count) this.order = new Uint32Array(count);
    const turns = new Turns();
    for (let i = 0; i < count; i++) {
      fill(i, entries, i * ENTRY_BYTES, i * ENTRY_BYTES + ID_BYTES);
      if (turns.due()) {
        await nextTurn();
        turns.next();
      }
    }
    const sorting = sortEntries(entries, count, this.order);
    let step = sorting.next();
    while (step.done !== true) {
      await nextTurn();
      step = sorting.next();
    }
    const order = step.value;
    const run = await this.produce(count, this.writeOut, async (writer) => {
      for (let j = 0; j < count;) {
        let best = order[j]! * ENTRY_BYTES;
        for (j++; j < count; j++) {
          const at = order[j]! * ENTRY_BYTES;
          if (compareIds(entries, at, entries, best) !== 0) break;
          if (entries.readDoubleLE(at + ID_BYTES) >= entries.readDoubleLE(best + ID_BYTES))
            best = at;
        }
        writer.add(entries, best);
        if (writer.full) await writer.flush();
        if (turns.due()) {
          await nextTurn();
          turns.next();
        }
      }
      return true;
    });
    if (run === undefined) throw new Error("an id run's write cannot stop");
    return run;
  }

  /** The live runs to merge next, or none. */
  plan(): RunInfo[] | undefined {
    return planMerge(this.live);
  }

  /**
   * Merges `inputs` (live runs) into one run, not live until `install`ed (with `inputs` to
   * remove). Undefined when `stopped()` said so first.
   */
  async merge(inputs: readonly RunInfo[], stopped: () => boolean): Promise<RunInfo | undefined> {
    const runs = inputs.map((r) => this.live.find((x) => x.id === r.id));
    if (runs.some((r) => r === undefined) || runs.length > MERGE_WIDTH)
      throw new Error(`a merge takes up to ${MERGE_WIDTH} live runs`);
    const cursors: RunCursor[] = [];
    try {
      for (const [k, r] of (runs as Run[]).entries())
        cursors.push(await RunCursor.open(r, this.mergeIn[k]!));
      const total = inputs.reduce((n, r) => n + r.count, 0);
      const turns = new Turns();
      return await this.produce(total, this.mergeOut, async (writer) => {
        for (;;) {
          // The smallest id (of its occurrences, the highest position), and every cursor on it.
          let min: RunCursor | undefined;
          let onMin = 0;
          for (let k = 0; k < cursors.length; k++) {
            const c = cursors[k]!;
            if (c.done) continue;
            const d = min === undefined ? -1 : compareIds(c.buf, c.at, min.buf, min.at);
            if (d < 0) {
              min = c;
              onMin = 1 << k;
            } else if (d === 0) {
              onMin |= 1 << k;
              if (c.position > min!.position) min = c;
            }
          }
          if (min === undefined) return true;
          writer.add(min.buf, min.at);
          for (let k = 0; k < cursors.length; k++)
            if ((onMin & (1 << k)) !== 0 && cursors[k]!.advance()) await cursors[k]!.fill();
          if (writer.full) await writer.flush();
          if (turns.due()) {
            await nextTurn();
            turns.next();
            if (stopped()) return false;
          }
        }
      });
    } finally {
      for (const c of cursors) await c.close();
    }
  }

  /** Writes a run file with `body` (false: stopped, nothing kept); opens it. */
  private async produce(
    maxCount: number,
    out: Buffer,
    body: (writer: RunWriter) => Promise<boolean>,
  ): Promise<RunInfo | undefined> {
    const id = this.nextId++;
    const path = join(this.dir, runFile(id));
    const tmp = `${path}.tmp`;
    const file = await open(tmp, "w");
    let writer: RunWriter | undefined;
    try {
      writer = new RunWriter(file, maxCount, out);
      if (!(await body(writer))) writer = undefined;
      else {
        await writer.finish();
        await file.close();
        await rename(tmp, path);
        await this.syncDir();
      }
    } catch (err) {
      writer = undefined;
      throw err;
    } finally {
      if (writer === undefined) {
        await file.close().catch(() => undefined);
        await rm(tmp, { force: true });
      }
    }
    if (writer === undefined) return undefined;
    // Live from what the writer kept (its filter, fences and block CRCs), not read back.
    const run = new Run(
      id,
      writer.count,
      path,
      openSync(path, "r"),
      writer.filter,
      writer.fences,
      writer.blockCrcs,
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

  /** Closes the files (they stay on disk). */
  close(): void {
    for (const r of [...this.live, ...this.pending.values()]) closeSync(r.fd);
    this.live = [];
    this.pending.clear();
  }

  private async syncDir(): Promise<void> {
    const d = await open(this.dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
