import { crc32c } from "@node-rs/crc32";
import {
  open,
  readFile,
  readdir,
  rename,
  statfs,
  unlink,
  writeFile,
  type FileHandle,
} from "node:fs/promises";
import { constants, fdatasyncSync, readSync, writeSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { StoreError } from "../streams/types.js";
import { fsyncDir, mkdirDurable } from "./fsync-dir.js";
import { SYNC_STALL_ENABLED, injectSyncStall } from "./sync-stall.js";
import { TailCache } from "./tail-cache.js";
import { RECOVERY_ADVICE, silentLogger, type Checkpoint, type Log, type Logger } from "./log.js";

export const DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;

/**
 * Zeros kept written and synced ahead of the log's end in its last segment (see
 * `preallocate`): an append then overwrites bytes the file already has, and its fdatasync
 * writes the data alone, not the file's new size as well (on this machine's ext4, a lone
 * 188-byte write and fdatasync took 0.14 ms into zeros against 0.21 ms at the file's end).
 */
export const DEFAULT_PREALLOCATE_BYTES = 4 * 1024 * 1024;

/**
 * The log's last bytes kept in memory as written (`TailCache`): reads of the tail (live
 * subscriptions, persistent groups, a follower's catch-up) need no file read.
 */
export const DEFAULT_TAIL_CACHE_BYTES = 4 * 1024 * 1024;

/** Preallocation waits while free space is below this many times one step of it. */
const PREALLOCATE_FREE_FACTOR = 16;
/** statfs `type` of file systems in memory, where preallocating only takes memory. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
/** The zeros that preallocation writes, a block at a time. */
const ZEROS = Buffer.alloc(1024 * 1024);

/** fdatasync runs inline while its recent average stays below this (see DiskLog.sync). */
export const INLINE_SYNC_BELOW_MS = 1;

const SEGMENT_RE = /^chunk-(\d{6})\.log$/;
const LAYOUT_FILE = "log.json";
const CHECKPOINT_FILE = "checkpoint";
const HARD_STATE_FILE = "hardstate";

function segmentName(index: number): string {
  return `chunk-${String(index).padStart(6, "0")}.log`;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

/**
 * The log on disk: segment files `chunk-NNNNNN.log` of `segmentBytes` each forming one byte
 * space (a record may span two segments), plus `log.json` (layout), `checkpoint` and
 * `hardstate`. The last segment may hold zeros past the end of the log (`preallocate`).
 */
export class DiskLog implements Log {
  private segmentBytes: number;
  private segments: FileHandle[] = [];
  private length = 0;
  private readonly dirty = new Set<number>();
  private dirNeedsSync = false;
  private checkpointFile: Promise<FileHandle> | null = null;
  private syncAverageMs = 0;
  /** Asynchronous reads not finished: their completions wait for the event loop. */
  private readsInFlight = 0;
  private readonly preallocateBytes: number;
  /**
   * Where the last segment's file ends, as a log position: the bytes from `length` to here
   * are zeros (preallocated, or left by a crash), never records.
   */
  private allocated = 0;
  /** The preallocation in flight: it writes zeros from `allocated` on. */
  private filling: Promise<void> | null = null;
  /**
   * No preallocation before the log reaches this position: after a failure or with free space
   * short, one step further on; on a file system in memory, never.
   */
  private preallocateFrom = 0;
  private readonly tail: TailCache;

  constructor(
    private readonly options: {
      dir: string;
      segmentBytes: number;
      logger?: Logger;
      /** Called with the path of every file or directory `syncFrom` fsyncs (tests observe them). */
      onRecoverySync?: (path: string) => void;
      /** Zeros written ahead of the end (`preallocate`); default 0, none. */
      preallocateBytes?: number;
      /** The log's last bytes kept in memory for reads (`TailCache`); default 0, none. */
      tailCacheBytes?: number;
    },
  ) {
    if (!Number.isSafeInteger(options.segmentBytes) || options.segmentBytes < 4096) {
      throw new RangeError("segmentBytes must be an integer >= 4096");
    }
    this.segmentBytes = options.segmentBytes;
    const preallocate = options.preallocateBytes ?? 0;
    if (!Number.isSafeInteger(preallocate) || preallocate < 0) {
      throw new RangeError("preallocateBytes must be an integer >= 0");
    }
    this.preallocateBytes = preallocate;
    this.tail = new TailCache(options.tailCacheBytes ?? 0);
  }

  get end(): number {
    return this.length;
  }

  get sizeOnDisk(): number {
    return this.length;
  }

  private get dir(): string {
    return this.options.dir;
  }

  async open(): Promise<void> {
    await mkdirDurable(this.dir);
    this.segments = [];
    this.dirty.clear();
    this.segmentBytes = await this.readLayout();
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    for (let i = 0; i < names.length; i++) {
      if (names[i] !== segmentName(i)) {
        await this.close();
        throw new StoreError("CORRUPTED", `segment ${segmentName(i)} is missing in ${this.dir}`);
      }
      this.segments.push(await open(join(this.dir, segmentName(i)), "r+"));
    }
    const sizes: number[] = [];
    for (const fh of this.segments) sizes.push((await fh.stat()).size);
    try {
      await this.dropTornSegments(sizes);
    } catch (err) {
      await this.close();
      throw err;
    }
    this.length = 0;
    for (const size of sizes) this.length += size;
    // The end includes a preallocated tail, if any: the store's recovery finds the last
    // record, sees only zeros after it and truncates them away.
    this.allocated = this.length;
    this.preallocateFrom = 0;
    this.tail.reset(this.length);
  }

  /**
   * Every segment but the last is full: `write` fills a segment to `segmentBytes` before it
   * creates the next (records span files) and `truncate` removes whole segments from the end
   * before it shortens one, so no segment legitimately ends early. A short segment followed
   * only by empty ones is the trace of a power loss while the log moved to a new segment,
   * before its fsync: those empty segments are dropped and the short one is the last (its
   * torn tail is then cut by recovery as usual). A short segment followed by one holding
   * bytes means bytes in the middle of the log are missing: refused, when they lie before
   * the checkpoint (durable data is missing, or nothing says it is not); after it they are
   * what a power loss leaves of a write that crossed into the next segment, and the segment
   * is filled up with zeros for the store's recovery to judge (store.ts, `tornWriteFrom`).
   */
  private async dropTornSegments(sizes: number[]): Promise<void> {
    for (let i = 0; i < sizes.length; i++) {
      const size = sizes[i] as number;
      if (size > this.segmentBytes) {
        throw new StoreError(
          "CORRUPTED",
          `segment ${segmentName(i)} in ${this.dir} has ${size} bytes, more than the segment ` +
            `size ${this.segmentBytes} recorded in log.json. ` +
            RECOVERY_ADVICE,
        );
      }
    }
    let short = sizes.findIndex((size, i) => i < sizes.length - 1 && size < this.segmentBytes);
    if (short < 0) return;
    let holding = sizes.findIndex((size, i) => i > short && size > 0);
    const saved = holding >= 0 ? await this.readCheckpoint() : undefined;
    const known = Math.max(saved?.durable ?? Number.POSITIVE_INFINITY, saved?.commit ?? 0);
    while (holding >= 0 && short * this.segmentBytes + (sizes[short] as number) >= known) {
      // Past the last position known durable: a power loss may have cut short the part of
      // the last write in this segment (its new size never reached the disk) and kept the
      // part in the next. The missing bytes were never written: read as zeros, they are
      // what the store's recovery looks at (a torn write, cut; anything else, refused).
      (this.options.logger ?? silentLogger).warn(
        {
          dir: this.dir,
          segment: segmentName(short),
          bytes: sizes[short],
          holding: segmentName(holding),
          knownDurable: known,
        },
        "a segment ends early, after the last position known durable, and a later one holds " +
          "data: the missing bytes are taken as never written (zeros)",
      );
      await (this.segments[short] as FileHandle).truncate(this.segmentBytes);
      sizes[short] = this.segmentBytes;
      short = sizes.findIndex((size, i) => i < sizes.length - 1 && size < this.segmentBytes);
      if (short < 0) return;
      holding = sizes.findIndex((size, i) => i > short && size > 0);
    }
    if (holding >= 0) {
      throw new StoreError(
        "CORRUPTED",
        `segment ${segmentName(short)} in ${this.dir} has ${sizes[short]} bytes of ` +
          `${this.segmentBytes}, but ${segmentName(holding)} after it holds data: ` +
          `${this.segmentBytes - (sizes[short] as number)} bytes in the middle of the log ` +
          `(from log position ${short * this.segmentBytes + (sizes[short] as number)}) are missing. ` +
          RECOVERY_ADVICE,
      );
    }
    const dropped: string[] = [];
    while (this.segments.length > short + 1) {
      const index = this.segments.length - 1;
      await (this.segments.pop() as FileHandle).close();
      sizes.pop();
      await unlink(join(this.dir, segmentName(index)));
      dropped.push(segmentName(index));
    }
    await fsyncDir(this.dir);
    (this.options.logger ?? silentLogger).warn(
      { dir: this.dir, dropped, lastSegment: segmentName(short), bytes: sizes[short] },
      "dropping empty segments after a short one (a crash while the log moved to a new segment)",
    );
  }

  fileOffset(position: number): number {
    return position - Math.floor(position / this.segmentBytes) * this.segmentBytes;
  }

  describePosition(position: number): string {
    const index = Math.floor(position / this.segmentBytes);
    return `${segmentName(index)} at offset ${position - index * this.segmentBytes} in ${this.dir}`;
  }

  async availableBytes(): Promise<number> {
    const s = await statfs(this.dir);
    return s.bavail * s.bsize;
  }

  async syncFrom(position: number): Promise<void> {
    for (
      let i = Math.max(0, Math.floor(position / this.segmentBytes));
      i < this.segments.length;
      i++
    ) {
      const segmentEnd = Math.min((i + 1) * this.segmentBytes, this.length);
      if (segmentEnd <= position) continue; // nothing past `position` in it
      await (this.segments[i] as FileHandle).datasync();
      this.options.onRecoverySync?.(join(this.dir, segmentName(i)));
    }
    await fsyncDir(this.dir);
    this.options.onRecoverySync?.(this.dir);
  }

  /** The segment size is fixed when the log is created; later opens use the recorded one. */
  private async readLayout(): Promise<number> {
    const path = join(this.dir, LAYOUT_FILE);
    try {
      const layout = JSON.parse(await readFile(path, "utf8")) as { segmentBytes?: unknown };
      if (
        typeof layout.segmentBytes === "number" &&
        Number.isSafeInteger(layout.segmentBytes) &&
        layout.segmentBytes > 0
      ) {
        return layout.segmentBytes;
      }
      throw new StoreError("CORRUPTED", `${path} has no valid segmentBytes`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    await this.replaceFile(
      LAYOUT_FILE,
      JSON.stringify({ segmentBytes: this.options.segmentBytes }) + "\n",
    );
    return this.options.segmentBytes;
  }

  async read(position: number, length: number): Promise<Buffer> {
    const end = Math.min(this.length, position + length);
    if (position < 0 || end <= position) return Buffer.alloc(0);
    const cached = this.tail.read(position, end - position);
    if (cached !== undefined) return cached;
    const out = Buffer.allocUnsafe(end - position);
    let done = 0;
    this.readsInFlight++;
    try {
      while (done < out.length) {
        const at = this.segmentAt(position + done);
        if (at === undefined) break;
        const n = Math.min(at.room, out.length - done);
        const { bytesRead } = await at.fh.read(out, done, n, at.offset);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } finally {
      this.readsInFlight--;
    }
    return done === out.length ? out : out.subarray(0, done);
  }

  readHeld(position: number, length: number): Buffer | undefined {
    const end = Math.min(this.length, position + length);
    if (position < 0 || end <= position) return Buffer.alloc(0);
    return this.tail.read(position, end - position);
  }

  readSync(position: number, length: number): Buffer {
    const end = Math.min(this.length, position + length);
    if (position < 0 || end <= position) return Buffer.alloc(0);
    const cached = this.tail.read(position, end - position);
    if (cached !== undefined) return cached;
    const out = Buffer.allocUnsafe(end - position);
    let done = 0;
    while (done < out.length) {
      const at = this.segmentAt(position + done);
      if (at === undefined) break;
      const n = Math.min(at.room, out.length - done);
      const bytesRead = readSync(at.fh.fd, out, done, n, at.offset);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === out.length ? out : out.subarray(0, done);
  }

  /** The open segment holding log position `p`, the offset in it and the bytes after. */
  private segmentAt(p: number): { fh: FileHandle; offset: number; room: number } | undefined {
    const index = Math.floor(p / this.segmentBytes);
    const fh = this.segments[index];
    if (fh === undefined) return undefined;
    const offset = p - index * this.segmentBytes;
    return { fh, offset, room: this.segmentBytes - offset };
  }

  async write(position: number, data: Buffer): Promise<void> {
    if (position !== this.length)
      throw new Error(`write at ${position} but the log ends at ${this.length}`);
    let done = 0;
    while (done < data.length) {
      // Zeros being written from `allocated` on would land over these bytes: wait for them.
      if (this.filling !== null && this.length + data.length - done > this.allocated) {
        await this.filling;
        continue;
      }
      const p = this.length;
      const index = Math.floor(p / this.segmentBytes);
      let fh = this.segments[index];
      if (fh === undefined) {
        fh = await open(join(this.dir, segmentName(index)), "w+");
        this.segments[index] = fh;
        this.dirNeedsSync = true;
      }
      const offset = p - index * this.segmentBytes;
      const n = Math.min(this.segmentBytes - offset, data.length - done);
      // A write to the page cache takes microseconds; doing it synchronously saves a
      // thread-pool round trip on every group commit (the fdatasync stays asynchronous).
      const bytesWritten = writeSync(fh.fd, data, done, n, offset);
      this.tail.written(p, data, done, bytesWritten);
      this.dirty.add(index);
      done += bytesWritten;
      this.length += bytesWritten;
      if (this.length > this.allocated) this.allocated = this.length;
    }
    this.preallocate();
  }

  /**
   * Keeps zeros ahead of the end of the last segment, written and fdatasync'd on the thread
   * pool: once fewer than half of `preallocateBytes` are left, the next `preallocateBytes`
   * (up to the segment's end). Appends into them change data only, so their fdatasync has
   * no file size to write. What this asks of recovery: zeros after the last record are the
   * end of the log, not damage (store.ts, `recover`). Skipped on a file system in memory
   * and while free space is short; a failure (a full disk) leaves the rest of the segment
   * to grow as it is written.
   */
  private preallocate(): void {
    if (this.preallocateBytes === 0 || this.filling !== null) return;
    if (this.length < this.preallocateFrom) return;
    if (this.allocated - this.length >= this.preallocateBytes / 2) return;
    const index = Math.floor(this.length / this.segmentBytes);
    const fh = this.segments[index];
    if (fh === undefined) return;
    const from = this.allocated;
    const to = Math.min((index + 1) * this.segmentBytes, from + this.preallocateBytes);
    if (to <= from) return;
    this.filling = this.fill(fh, index * this.segmentBytes, from, to).finally(() => {
      this.filling = null;
    });
  }

  private async fill(fh: FileHandle, base: number, from: number, to: number): Promise<void> {
    try {
      const fs = await statfs(this.dir);
      if (fs.type === TMPFS_MAGIC || fs.type === RAMFS_MAGIC) {
        this.preallocateFrom = Number.POSITIVE_INFINITY;
        return;
      }
      if (fs.bavail * fs.bsize < PREALLOCATE_FREE_FACTOR * (to - from)) {
        this.preallocateFrom = this.length + this.preallocateBytes;
        return;
      }
      for (let at = from; at < to;) {
        const { bytesWritten } = await fh.write(
          ZEROS,
          0,
          Math.min(ZEROS.length, to - at),
          at - base,
        );
        at += bytesWritten;
      }
      await fh.datasync();
      this.allocated = Math.max(this.allocated, to);
    } catch (err) {
      // Zeros written past `allocated` are harmless: recovery reads them as the end.
      this.preallocateFrom = this.length + this.preallocateBytes;
      (this.options.logger ?? silentLogger).warn(
        { err, dir: this.dir },
        "could not preallocate the log's next bytes; the segment grows as it is written",
      );
    }
  }

  /** Waits for the preallocation in flight (it never rejects). */
  private async settleFill(): Promise<void> {
    while (this.filling !== null) await this.filling;
  }

  /**
   * Makes everything written so far durable. A lone write's fdatasync runs on the event
   * loop's thread while it is fast (an exponentially weighted average below
   * INLINE_SYNC_BELOW_MS) and no read of the log is in flight: a thread-pool round trip costs
   * about as much as the fdatasync itself on a fast disk, and sequential appends wait for
   * both. A `background` sync (more work is queued), a sync on a slow disk and a sync while
   * reads are in flight (their completions would wait behind it: a persistent group writing
   * acks while it reads ahead, a subscription catching up) go to the thread pool, so the
   * event loop keeps serving, and a stalled disk does not stall heartbeats and reads.
   */
  async sync(background = false): Promise<void> {
    const indexes = [...this.dirty];
    this.dirty.clear();
    const start = performance.now();
    const inline =
      !background && this.syncAverageMs < INLINE_SYNC_BELOW_MS && this.readsInFlight === 0;
    if (SYNC_STALL_ENABLED) await injectSyncStall(this.dir, inline);
    if (inline) {
      for (const i of indexes) fdatasyncSync((this.segments[i] as FileHandle).fd);
    } else {
      await Promise.all(indexes.map((i) => (this.segments[i] as FileHandle).datasync()));
    }
    // Background syncs would count thread-pool round trips as disk time.
    if (!background) {
      this.syncAverageMs = 0.8 * this.syncAverageMs + 0.2 * (performance.now() - start);
    }
    if (this.dirNeedsSync) {
      this.dirNeedsSync = false;
      await fsyncDir(this.dir);
    }
  }

  async truncate(position: number): Promise<void> {
    if (position < 0 || position > this.length)
      throw new RangeError(`cannot truncate to ${position}`);
    this.tail.truncate(position);
    await this.settleFill();
    const keep = Math.max(1, Math.ceil(position / this.segmentBytes));
    while (this.segments.length > keep) {
      const index = this.segments.length - 1;
      await (this.segments.pop() as FileHandle).close();
      this.dirty.delete(index);
      await unlink(join(this.dir, segmentName(index)));
    }
    const last = this.segments[keep - 1];
    if (last !== undefined) {
      await last.truncate(position - (keep - 1) * this.segmentBytes);
      await last.datasync();
    }
    this.length = this.allocated = position;
    await fsyncDir(this.dir);
  }

  async close(): Promise<void> {
    await this.settleFill();
    const handles = [...this.segments];
    this.segments = [];
    const checkpointFile = this.checkpointFile;
    this.checkpointFile = null;
    if (checkpointFile !== null) {
      const fh = await checkpointFile.catch(() => null);
      if (fh !== null) handles.push(fh);
    }
    await Promise.all(handles.map((h) => h.close()));
  }

  /**
   * `checkpoint` is two 12-byte slots, each `[f64][u32 crc32c]`: the durable position, then
   * the commit position (absent in logs written before it existed). A damaged slot reads as null.
   */
  async readCheckpoint(): Promise<Checkpoint> {
    let buf: Buffer;
    try {
      buf = await readFile(join(this.dir, CHECKPOINT_FILE));
    } catch (err) {
      if (isNotFound(err)) return { durable: null, commit: null };
      throw err;
    }
    const slot = (at: number): number | null =>
      buf.length >= at + 12 && crc32c(buf.subarray(at, at + 8)) === buf.readUInt32LE(at + 8)
        ? buf.readDoubleLE(at)
        : null;
    return { durable: slot(0), commit: slot(12) };
  }

  async writeCheckpoint(
    checkpoint: { durable: number; commit: number },
    sync: boolean,
  ): Promise<void> {
    const buf = Buffer.alloc(24);
    buf.writeDoubleLE(checkpoint.durable, 0);
    buf.writeUInt32LE(crc32c(buf.subarray(0, 8)), 8);
    buf.writeDoubleLE(checkpoint.commit, 12);
    buf.writeUInt32LE(crc32c(buf.subarray(12, 20)), 20);
    if (this.checkpointFile === null) {
      // Shared by concurrent first writes; forgotten when it fails, so a later write retries.
      const opening = open(join(this.dir, CHECKPOINT_FILE), constants.O_RDWR | constants.O_CREAT);
      this.checkpointFile = opening;
      opening.catch(() => {
        if (this.checkpointFile === opening) this.checkpointFile = null;
      });
    }
    const fh = await this.checkpointFile;
    // 24 bytes into the page cache: synchronous, so the hot path wakes no thread-pool work.
    writeSync(fh.fd, buf, 0, buf.length, 0);
    if (sync) await fh.datasync();
  }

  readHardState(): Promise<Buffer | null> {
    return this.readFileIfAny(HARD_STATE_FILE);
  }

  writeHardState(data: Buffer): Promise<void> {
    return this.replaceFile(HARD_STATE_FILE, data);
  }

  private async readFileIfAny(name: string): Promise<Buffer | null> {
    try {
      return await readFile(join(this.dir, name));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Replaces a file atomically and durably: tmp file with fsync, rename, directory fsync. */
  private async replaceFile(name: string, data: Buffer | string): Promise<void> {
    const path = join(this.dir, name);
    const tmp = `${path}.tmp`;
    try {
      await writeFile(tmp, data, { flush: true });
    } catch (err) {
      // A full disk: give back what the partial file took.
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await rename(tmp, path);
    await fsyncDir(this.dir);
  }
}
