/**
 * Id run files (the format is described in `id-runs.ts`): sorting a write's entries, writing
 * a run, reading one in order and merging runs. What `id-runs-worker.ts` does off the event
 * loop; no state of the index lives here.
 */
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";
import { fsyncDir } from "../fsync-dir.js";
import { IdFilter } from "./id-filter.js";

export const ID_BYTES = 16;
/** [16-byte id][f64 position][f64 revision] */
export const ENTRY_BYTES = 32;
export const BLOCK_ENTRIES = 128;
export const BLOCK_BYTES = BLOCK_ENTRIES * ENTRY_BYTES;
export const HEADER_BYTES = 64;
export const MAGIC = "CHIDRUN1";
export const VERSION = 1;
/** A merge takes at most this many runs. */
export const MERGE_WIDTH = 4;
/**
 * Bytes per read or write of a run file (a whole number of blocks). The buffers are kept and
 * reused: buffers of this size allocated per write or merge and freed again fragment the
 * allocator's heap, which then holds tens of megabytes it does not give back.
 */
export const IO_BYTES = 64 * BLOCK_BYTES;

/** A run file that is missing, short or fails its CRC: the index must be rebuilt. */
export class IdRunsCorruptError extends Error {
  override readonly name = "IdRunsCorruptError";
}

/** A run just written: what a lookup keeps of its tail. */
export interface WrittenRun {
  count: number;
  /** The id filter's bits (`IdFilter.bits`). */
  filterBits: Int32Array;
  /** The first id of every block. */
  fences: ArrayBuffer;
  blockCrcs: Uint32Array;
}

/** A run file to read: where it is, its entries and the CRC-32C of each of its blocks. */
export interface RunFile {
  readonly path: string;
  readonly count: number;
  readonly blockCrcs: Uint32Array;
}

export function runFile(id: number): string {
  return `ids-${String(id).padStart(10, "0")}.run`;
}

/** A run file's name, or a leftover's (`.tmp`: a write or merge cut off). */
export const RUN_FILE = /^ids-(\d{10})\.run(\.tmp)?$/;

/** Orders the 16-byte ids at `a[ai]` and `b[bi]` as bytes. */
export function compareIds(a: Buffer, ai: number, b: Buffer, bi: number): number {
  for (let i = 0; i < ID_BYTES; i += 4) {
    const d = a.readUInt32BE(ai + i) - b.readUInt32BE(bi + i);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The order of the `count` entries of `buf` ascending by id; equal ids keep their order. A
 * counting sort by the first byte, then each bucket by its next 4 bytes (a native sort of
 * numbers, no comparator call per pair), then ties of those 5 bytes by the whole id, written
 * to `into` (at least `count` long; returned, cut to `count`).
 */
export function sortEntries(
  buf: Buffer,
  count: number,
  into: Uint32Array = new Uint32Array(count),
): Uint32Array {
  const starts = new Uint32Array(257);
  for (let i = 0; i < count; i++) starts[buf[i * ENTRY_BYTES]! + 1]!++;
  for (let b = 0; b < 256; b++) starts[b + 1]! += starts[b]!;
  const next = starts.slice(0, 256);
  const order = into.subarray(0, count);
  for (let i = 0; i < count; i++) order[next[buf[i * ENTRY_BYTES]!]!++] = i;
  const PLACE = 2 ** 20; // a bucket's places fit below it (packed with 32 bits: exact in a double)
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
  }
  return order;
}

/** Writes a run file from entries handed over in id order. */
class RunWriter {
  private used = 0;
  count = 0;
  private fileAt = HEADER_BYTES;
  private readonly filter: IdFilter;
  private fences: Buffer;
  private readonly crcs: number[] = [];

  /** `out`: an IO_BYTES buffer the writer may use until it is done. */
  constructor(
    private readonly file: FileHandle,
    maxCount: number,
    private readonly out: Buffer,
  ) {
    this.filter = new IdFilter(maxCount);
    // Over an ArrayBuffer of its own: handed to the owner's thread (moved, not copied).
    this.fences = Buffer.from(
      new ArrayBuffer(Math.max(1, Math.ceil(maxCount / BLOCK_ENTRIES)) * ID_BYTES),
    );
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

  /** The run's tail as kept for lookups (after `finish`): its own buffers, transferable. */
  written(): WrittenRun {
    return {
      count: this.count,
      filterBits: this.filter.bits,
      fences: this.fences.buffer.slice(0, this.fences.length) as ArrayBuffer,
      blockCrcs: Uint32Array.from(this.crcs),
    };
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
    private readonly run: RunFile,
    private readonly file: FileHandle,
    /** An IO_BYTES buffer the cursor may use until it is closed. */
    readonly buf: Buffer,
  ) {}

  static async open(run: RunFile, buf: Buffer): Promise<RunCursor> {
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

/** The buffers one writer of runs reuses from one run to the next. */
export class RunBuffers {
  readonly out = Buffer.allocUnsafe(IO_BYTES);
  readonly mergeIn = Array.from({ length: MERGE_WIDTH }, () => Buffer.allocUnsafe(IO_BYTES));
  order = new Uint32Array(0);
}

/**
 * Writes run `id` in `dir` from the `count` entries of `entries` (in any order; of an id's
 * occurrences the highest position is kept), synced, under its final name.
 */
export async function writeRun(
  dir: string,
  id: number,
  entries: Buffer,
  count: number,
  bufs: RunBuffers,
): Promise<WrittenRun> {
  if (bufs.order.length < count) bufs.order = new Uint32Array(count);
  const order = sortEntries(entries, count, bufs.order);
  const written = await produce(dir, id, count, bufs.out, async (writer) => {
    for (let j = 0; j < count;) {
      let best = order[j]! * ENTRY_BYTES;
      for (j++; j < count; j++) {
        const at = order[j]! * ENTRY_BYTES;
        if (compareIds(entries, at, entries, best) !== 0) break;
        if (entries.readDoubleLE(at + ID_BYTES) >= entries.readDoubleLE(best + ID_BYTES)) best = at;
      }
      writer.add(entries, best);
      if (writer.full) await writer.flush();
    }
    return true;
  });
  if (written === undefined) throw new Error("an id run's write cannot stop");
  return written;
}

/**
 * Merges the runs `inputs` into run `id` in `dir` (each id once, its highest position);
 * undefined, and nothing left behind, when `stopped()` says so first.
 */
export async function mergeRuns(
  dir: string,
  id: number,
  inputs: readonly RunFile[],
  bufs: RunBuffers,
  stopped: () => boolean,
): Promise<WrittenRun | undefined> {
  if (inputs.length > MERGE_WIDTH) throw new Error(`a merge takes up to ${MERGE_WIDTH} runs`);
  const cursors: RunCursor[] = [];
  try {
    for (const [k, r] of inputs.entries()) cursors.push(await RunCursor.open(r, bufs.mergeIn[k]!));
    const total = inputs.reduce((n, r) => n + r.count, 0);
    return await produce(dir, id, total, bufs.out, async (writer) => {
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
        if (writer.full) {
          await writer.flush();
          if (stopped()) return false;
        }
      }
    });
  } finally {
    for (const c of cursors) await c.close();
  }
}

/** Writes run file `id` with `body` (false: stopped, nothing kept); what lookups keep of it. */
async function produce(
  dir: string,
  id: number,
  maxCount: number,
  out: Buffer,
  body: (writer: RunWriter) => Promise<boolean>,
): Promise<WrittenRun | undefined> {
  const path = join(dir, runFile(id));
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
      await fsyncDir(dir);
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
  return writer?.written();
}
