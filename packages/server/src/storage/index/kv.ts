/**
 * The key-value engine under the log's index: a few named tables of binary keys and values,
 * read synchronously, written in atomic batches. Two engines: `LmdbKv` (`lmdb-kv.ts`, on
 * disk, memory-mapped B+trees) and `MemoryKv` (`--mem-db` and unit tests). What the keys and
 * values mean is `log-index.ts`'s business; an engine only stores bytes.
 */

import { murmurFinish, murmurMix } from "../id-table.js";

/** The tables. `meta` holds a few named values (how far the index reaches, totals). */
export const KV_TABLES = ["meta", "streams", "sparse", "ids", "epochs"] as const;
export type KvTable = (typeof KV_TABLES)[number];

/** One write: a put, or a delete when `value` is null. */
export interface KvOp {
  readonly table: KvTable;
  readonly key: Buffer;
  readonly value: Buffer | null;
}

/**
 * Many puts of fixed-size keys and values into one table, written by `fill` straight into the
 * packed batch (no object per entry: the event ids of a write are tens of thousands).
 */
export interface KvBlock {
  readonly table: KvTable;
  readonly count: number;
  readonly keyBytes: number;
  readonly valueBytes: number;
  /** Writes entry `i`'s key at `keyAt` and its value at `valueAt` of `buf`. */
  fill(i: number, buf: Buffer, keyAt: number, valueAt: number): void;
}

export interface Kv {
  /** Opens (creating when missing). */
  open(): Promise<void>;
  /** The value under `key`, or undefined; sees every batch whose `write` has resolved. */
  get(table: KvTable, key: Buffer): Buffer | undefined;
  /** Every entry of `table` in key order (small tables only: epochs). */
  entries(table: KvTable): Array<[Buffer, Buffer]>;
  /** Applies `ops` and `blocks` atomically (all or none, also across a crash). One at a time. */
  write(ops: readonly KvOp[], blocks?: readonly KvBlock[]): Promise<void>;
  /** Removes everything, durably. */
  clear(): Promise<void>;
  /** Waits for writes in flight, then releases the engine. */
  close(): Promise<void>;
}

/**
 * Packs ops and blocks for a writer thread: per put [u8 table][u16 key length][key][u32 value
 * length, or 0xffffffff for a delete][value]; one buffer, transferred, not copied. Pauses
 * (yields) after every `slice` block entries, so a caller on the event loop can pack tens of
 * thousands of entries a slice per turn and not hold up the requests behind it; returns the
 * buffer when done.
 */
export function* packOps(
  ops: readonly KvOp[],
  blocks: readonly KvBlock[],
  slice: number,
): Generator<void, ArrayBuffer, void> {
  let bytes = 0;
  for (const op of ops) bytes += 7 + op.key.length + (op.value?.length ?? 0);
  for (const b of blocks) bytes += b.count * (7 + b.keyBytes + b.valueBytes);
  const ab = new ArrayBuffer(bytes);
  const buf = Buffer.from(ab);
  let o = 0;
  for (const op of ops) {
    buf.writeUInt8(KV_TABLES.indexOf(op.table), o);
    buf.writeUInt16LE(op.key.length, o + 1);
    op.key.copy(buf, o + 3);
    o += 3 + op.key.length;
    if (op.value === null) {
      buf.writeUInt32LE(0xffffffff, o);
      o += 4;
    } else {
      buf.writeUInt32LE(op.value.length, o);
      op.value.copy(buf, o + 4);
      o += 4 + op.value.length;
    }
  }
  let packed = 0;
  for (const b of blocks) {
    const table = KV_TABLES.indexOf(b.table);
    for (let i = 0; i < b.count; i++) {
      if (++packed > slice) {
        yield;
        packed = 1;
      }
      buf.writeUInt8(table, o);
      buf.writeUInt16LE(b.keyBytes, o + 1);
      const valueAt = o + 3 + b.keyBytes + 4;
      buf.writeUInt32LE(b.valueBytes, valueAt - 4);
      b.fill(i, buf, o + 3, valueAt);
      o = valueAt + b.valueBytes;
    }
  }
  return ab;
}

/**
 * In memory: the `--mem-db` node's index and the unit tests'. It outlives `close()` (like the
 * memory log under it), so a store reopened on the same objects finds what was written.
 *
 * What ops put is kept in a `Map` per table, each value its own Buffer. What blocks put (the
 * event ids: one per event, millions of them) goes to a `PackedTable` per table: keys and
 * values end to end in one buffer, found by their bytes' hash. A `Map` keyed by strings cost
 * each lookup a string made from the key (about 0.3 µs) and a probe of a table of millions of
 * entries (0.6–0.9 µs, measured), and each entry written an object and a Buffer for the
 * collector to trace. An op on a key shadows what a block put there until a block puts it
 * again.
 */
export class MemoryKv implements Kv {
  /** Op entries per table; null: deleted (shadowing a block's entry). */
  private readonly tables = new Map<KvTable, Map<string, Buffer | null>>(
    KV_TABLES.map((t) => [t, new Map<string, Buffer | null>()]),
  );
  /** Block entries per table, of the key and value sizes of its first block. */
  private readonly packed = new Map<KvTable, PackedTable>();

  async open(): Promise<void> {}

  get(table: KvTable, key: Buffer): Buffer | undefined {
    const ops = this.table(table);
    if (ops.size > 0) {
      const v = ops.get(key.toString("latin1"));
      if (v !== undefined) return v ?? undefined;
    }
    return this.packed.get(table)?.get(key);
  }

  entries(table: KvTable): Array<[Buffer, Buffer]> {
    const ops = this.table(table);
    const out: Array<[Buffer, Buffer]> = [];
    this.packed.get(table)?.forEach((key, value) => {
      if (!ops.has(key.toString("latin1"))) out.push([key, value]);
    });
    for (const [k, v] of ops) if (v !== null) out.push([Buffer.from(k, "latin1"), v]);
    return out.sort((a, b) => Buffer.compare(a[0], b[0]));
  }

  async write(ops: readonly KvOp[], blocks: readonly KvBlock[] = []): Promise<void> {
    // Copies: the caller may reuse its buffers. Applied after a turn, like a writer thread.
    const copies = ops.map((op) => ({
      table: op.table,
      key: op.key.toString("latin1"),
      value: op.value === null ? null : Buffer.from(op.value),
    }));
    const filled = blocks.map((b) => {
      const width = b.keyBytes + b.valueBytes;
      const bytes = Buffer.allocUnsafe(b.count * width);
      for (let i = 0; i < b.count; i++) b.fill(i, bytes, i * width, i * width + b.keyBytes);
      return { block: b, bytes };
    });
    await Promise.resolve();
    for (const op of copies) {
      const ops = this.table(op.table);
      if (op.value !== null) ops.set(op.key, op.value);
      // A deletion is kept only where it hides a block's entry.
      else if (this.packed.get(op.table)?.has(Buffer.from(op.key, "latin1"))) ops.set(op.key, null);
      else ops.delete(op.key);
    }
    for (const { block, bytes } of filled) {
      const { keyBytes, valueBytes } = block;
      const ops = this.table(block.table);
      let packed = this.packed.get(block.table);
      if (packed === undefined) {
        packed = new PackedTable(keyBytes, valueBytes);
        this.packed.set(block.table, packed);
      }
      const sameSizes = packed.keyBytes === keyBytes && packed.valueBytes === valueBytes;
      for (let at = 0; at < bytes.length; at += keyBytes + valueBytes) {
        const valueAt = at + keyBytes;
        if (sameSizes) {
          packed.put(bytes, at, valueAt);
          if (ops.size > 0) ops.delete(bytes.toString("latin1", at, valueAt));
        } else {
          // Not of the sizes of the table's first block (never in the index): an op entry.
          const value = Buffer.from(bytes.subarray(valueAt, valueAt + valueBytes));
          ops.set(bytes.toString("latin1", at, valueAt), value);
        }
      }
    }
  }

  async clear(): Promise<void> {
    for (const t of this.tables.values()) t.clear();
    this.packed.clear();
  }

  async close(): Promise<void> {}

  private table(table: KvTable): Map<string, Buffer | null> {
    return this.tables.get(table) as Map<string, Buffer | null>;
  }
}

/** Buckets per entry at most (load factor 1/2). */
const PACKED_MAX_LOAD = 0.5;

/**
 * Entries of fixed-size keys and values, end to end in one buffer that doubles when full,
 * found by open addressing (linear probing) over the hash of the key's bytes: no object, no
 * string and no Buffer per entry, and a lookup reads the key where it lies. Entries are
 * never removed (an index only ever adds ids; `MemoryKv` shadows deletions).
 */
class PackedTable {
  /** Entry i's key at i * width, its value after it. */
  #entries: Buffer;
  #count = 0;
  /**
   * Bucket b: cells[2b] = its entry's index + 1 (0: empty), cells[2b + 1] = that key's hash,
   * side by side so that a probe reads one cache line.
   */
  #cells: Int32Array;
  #mask: number;
  readonly #width: number;

  constructor(
    readonly keyBytes: number,
    readonly valueBytes: number,
  ) {
    this.#width = keyBytes + valueBytes;
    this.#entries = Buffer.alloc(Math.max(1, this.#width) * 1024);
    this.#cells = new Int32Array(2 * 2048);
    this.#mask = 2047;
  }

  /** A copy of the value under `key`, or undefined. */
  get(key: Buffer): Buffer | undefined {
    if (key.length !== this.keyBytes) return undefined;
    const b = this.#find(key, 0, hashBytes(key, 0, this.keyBytes));
    if (b < 0) return undefined;
    const at = ((this.#cells[2 * b] as number) - 1) * this.#width + this.keyBytes;
    return Buffer.from(this.#entries.subarray(at, at + this.valueBytes));
  }

  has(key: Buffer): boolean {
    return key.length === this.keyBytes && this.#find(key, 0, hashBytes(key, 0, key.length)) >= 0;
  }

  /** Puts the key at `keyAt` of `src` with the value at `valueAt` (a new entry or in place). */
  put(src: Buffer, keyAt: number, valueAt: number): void {
    const hash = hashBytes(src, keyAt, this.keyBytes);
    let b = this.#find(src, keyAt, hash);
    let entry: number;
    if (b >= 0) {
      entry = (this.#cells[2 * b] as number) - 1;
    } else {
      if ((this.#count + 1) / (this.#mask + 1) > PACKED_MAX_LOAD) {
        this.#grow();
        b = this.#find(src, keyAt, hash);
      }
      entry = this.#count++;
      if ((entry + 1) * this.#width > this.#entries.length) {
        const grown = Buffer.alloc(this.#entries.length * 2);
        this.#entries.copy(grown);
        this.#entries = grown;
      }
      copyBytes(src, keyAt, this.#entries, entry * this.#width, this.keyBytes);
      this.#cells[2 * (-1 - b)] = entry + 1;
      this.#cells[2 * (-1 - b) + 1] = hash;
    }
    copyBytes(src, valueAt, this.#entries, entry * this.#width + this.keyBytes, this.valueBytes);
  }

  /** Every entry (copies), in the order first put. */
  forEach(visit: (key: Buffer, value: Buffer) => void): void {
    for (let i = 0; i < this.#count; i++) {
      const at = i * this.#width;
      visit(
        Buffer.from(this.#entries.subarray(at, at + this.keyBytes)),
        Buffer.from(this.#entries.subarray(at + this.keyBytes, at + this.#width)),
      );
    }
  }

  /** The bucket holding the key at `keyAt` of `key`, or -1 - the empty bucket for it. */
  #find(key: Buffer, keyAt: number, hash: number): number {
    const cells = this.#cells;
    const entries = this.#entries;
    const mask = this.#mask;
    for (let b = hash & mask; ; b = (b + 1) & mask) {
      const slot = cells[2 * b] as number;
      if (slot === 0) return -1 - b;
      if (cells[2 * b + 1] !== hash) continue;
      const at = (slot - 1) * this.#width;
      if (sameBytes(entries, at, key, keyAt, this.keyBytes)) return b;
    }
  }

  #grow(): void {
    const size = (this.#mask + 1) * 2;
    const cells = new Int32Array(2 * size);
    const mask = size - 1;
    for (let b = 0; b <= this.#mask; b++) {
      const slot = this.#cells[2 * b] as number;
      if (slot === 0) continue;
      const hash = this.#cells[2 * b + 1] as number;
      let n = hash & mask;
      while (cells[2 * n] !== 0) n = (n + 1) & mask;
      cells[2 * n] = slot;
      cells[2 * n + 1] = hash;
    }
    this.#cells = cells;
    this.#mask = mask;
  }
}

// Keys and values are a few bytes each: a loop is cheaper than a call into Buffer#copy or
// Buffer#compare.

function sameBytes(a: Buffer, aAt: number, b: Buffer, bAt: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[aAt + i] !== b[bAt + i]) return false;
  return true;
}

function copyBytes(src: Buffer, srcAt: number, dst: Buffer, dstAt: number, length: number): void {
  for (let i = 0; i < length; i++) dst[dstAt + i] = src[srcAt + i] as number;
}

/** 32-bit hash of `length` bytes of `buf` from `at` (`idHash`'s, over bytes). */
function hashBytes(buf: Buffer, at: number, length: number): number {
  let h = length;
  let i = 0;
  for (; i + 4 <= length; i += 4) h = murmurMix(h, buf.readInt32LE(at + i));
  for (; i < length; i++) h = Math.imul(h ^ (buf[at + i] as number), 0x01000193);
  return murmurFinish(h);
}
