/**
 * The key-value engine under the log's index: a few named tables of binary keys and values,
 * read synchronously, written in atomic batches. Two engines: `LmdbKv` (`lmdb-kv.ts`, on
 * disk, memory-mapped B+trees) and `MemoryKv` (`--mem-db` and unit tests). What the keys and
 * values mean is `log-index.ts`'s business; an engine only stores bytes.
 */

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
 */
export class MemoryKv implements Kv {
  private readonly tables = new Map<KvTable, Map<string, Buffer>>(
    KV_TABLES.map((t) => [t, new Map<string, Buffer>()]),
  );

  async open(): Promise<void> {}

  get(table: KvTable, key: Buffer): Buffer | undefined {
    return this.table(table).get(key.toString("latin1"));
  }

  entries(table: KvTable): Array<[Buffer, Buffer]> {
    return [...this.table(table).entries()]
      .map(([k, v]): [Buffer, Buffer] => [Buffer.from(k, "latin1"), v])
      .sort((a, b) => Buffer.compare(a[0], b[0]));
  }

  async write(ops: readonly KvOp[], blocks: readonly KvBlock[] = []): Promise<void> {
    // Copies: the caller may reuse its buffers. Applied after a turn, like a writer thread.
    const copies = ops.map((op) => ({
      table: op.table,
      key: op.key.toString("latin1"),
      value: op.value === null ? null : Buffer.from(op.value),
    }));
    for (const b of blocks) {
      const entry = Buffer.alloc(b.keyBytes + b.valueBytes);
      for (let i = 0; i < b.count; i++) {
        b.fill(i, entry, 0, b.keyBytes);
        copies.push({
          table: b.table,
          key: entry.toString("latin1", 0, b.keyBytes),
          value: Buffer.from(entry.subarray(b.keyBytes)),
        });
      }
    }
    await Promise.resolve();
    for (const op of copies) {
      if (op.value === null) this.table(op.table).delete(op.key);
      else this.table(op.table).set(op.key, op.value);
    }
  }

  async clear(): Promise<void> {
    for (const t of this.tables.values()) t.clear();
  }

  async close(): Promise<void> {}

  private table(table: KvTable): Map<string, Buffer> {
    return this.tables.get(table) as Map<string, Buffer>;
  }
}
