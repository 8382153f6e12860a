/**
 * The index of the log, as persisted: for every stream its committed state, a position every
 * SPARSE_EVERY revisions, every event id, every epoch, and the totals, all as of one commit
 * position (`upTo`). Derived data: the log is the truth. Only committed records are ever
 * persisted (they are never cut off again), so a truncation of the log never touches it; at
 * open the store re-indexes the log from `upTo`.
 *
 * Tables (`kv.ts`), little-endian numbers:
 * - `streams`: utf8 name → [f64 last revision][f64 position of the last event][f64 position of
 *   revision 0][u8 flags: 1 tombstoned, 2 has metadata][utf8 JSON metadata];
 * - `sparse`: [utf8 name][0x00][u32 BE k] → f64 position of revision k * SPARSE_EVERY (k ≥ 1;
 *   stream names hold no control characters, so the key is unambiguous);
 * - `ids`: 16-byte event id → [f64 position][f64 revision] of its latest occurrence;
 * - `epochs`: [u32 BE high][u32 BE low] position of the EPOCH record → [f64 number][utf8 id];
 * - `meta`: `state` → [u32 format][f64 upTo][f64 events][f64 streams].
 */
import type { StreamMetadata } from "../../streams/types.js";
import type { EpochEntry } from "../replicated-log.js";
import type { Kv, KvOp } from "./kv.js";

/** Bump when the layout changes: an index of another format is rebuilt from the log. */
const FORMAT = 1;
const STATE_KEY = Buffer.from("state", "utf8");
const STREAM_FIXED_BYTES = 25;

/** A stream's committed state as the index holds it. */
export interface IndexedStream {
  readonly last: number;
  readonly lastPos: number;
  /** Position of revision 0 (-1 when the stream has no event). */
  readonly firstPos: number;
  readonly tombstoned: boolean;
  readonly meta: StreamMetadata | null;
}

/** Where an event id was written (its latest occurrence). */
export interface EventIdHit {
  readonly position: number;
  readonly revision: number;
}

/** What one write adds: everything committed below `upTo` that the index does not hold yet. */
export interface IndexDelta {
  readonly upTo: number;
  readonly events: number;
  readonly streamCount: number;
  readonly streams: ReadonlyArray<readonly [name: string, state: IndexedStream]>;
  readonly sparse: ReadonlyArray<readonly [name: string, k: number, position: number]>;
  /** Event ids with where they were written (columns: one entry per index). */
  readonly ids: {
    readonly ids: readonly string[];
    readonly positions: readonly number[];
    readonly revisions: readonly number[];
  };
  readonly epochs: readonly EpochEntry[];
}

/**
 * Writes a 16-byte id key (latin1) at `at`: a loop of 16 stores, cheaper than Buffer#write's
 * call into the runtime (one per append looked up, one per id persisted).
 */
function writeIdKey(buf: Buffer, at: number, idKey: string): void {
  for (let i = 0; i < 16; i++) buf[at + i] = idKey.charCodeAt(i);
}

function positionKey(p: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(p / 4294967296), 0);
  b.writeUInt32BE(p % 4294967296, 4);
  return b;
}

function sparseKey(name: string, k: number): Buffer {
  const n = Buffer.byteLength(name, "utf8");
  const b = Buffer.allocUnsafe(n + 5);
  b.write(name, 0, "utf8");
  b.writeUInt8(0, n);
  b.writeUInt32BE(k, n + 1);
  return b;
}

export function encodeIndexedStream(s: IndexedStream): Buffer {
  const meta = s.meta === null ? null : Buffer.from(JSON.stringify(s.meta), "utf8");
  const b = Buffer.allocUnsafe(STREAM_FIXED_BYTES + (meta?.length ?? 0));
  b.writeDoubleLE(s.last, 0);
  b.writeDoubleLE(s.lastPos, 8);
  b.writeDoubleLE(s.firstPos, 16);
  b.writeUInt8((s.tombstoned ? 1 : 0) | (meta !== null ? 2 : 0), 24);
  meta?.copy(b, STREAM_FIXED_BYTES);
  return b;
}

export function decodeIndexedStream(b: Buffer): IndexedStream | undefined {
  if (b.length < STREAM_FIXED_BYTES) return undefined;
  const flags = b.readUInt8(24);
  let meta: StreamMetadata | null = null;
  if ((flags & 2) !== 0) {
    try {
      meta = JSON.parse(b.toString("utf8", STREAM_FIXED_BYTES)) as StreamMetadata;
    } catch {
      return undefined;
    }
  }
  return {
    last: b.readDoubleLE(0),
    lastPos: b.readDoubleLE(8),
    firstPos: b.readDoubleLE(16),
    tombstoned: (flags & 1) !== 0,
    meta,
  };
}

export class LogIndex {
  private upTo = 0;
  private eventTotal = 0;
  private streamTotal = 0;
  private epochList: EpochEntry[] = [];
  /** Lookups reuse one key buffer (the engine copies it). */
  private readonly idKey = Buffer.alloc(16);
  constructor(private readonly kv: Kv) {}

  /** Every committed record below this log position is in the index. */
  get persistedUpTo(): number {
    return this.upTo;
  }

  /** Events and streams with events, as of `persistedUpTo`. */
  get totals(): { events: number; streams: number } {
    return { events: this.eventTotal, streams: this.streamTotal };
  }

  /**
   * Opens the engine and reads where the index reaches. An index of another format is emptied
   * (the store rebuilds it from the log); returns false then.
   */
  async open(): Promise<boolean> {
    await this.kv.open();
    const state = this.kv.get("meta", STATE_KEY);
    if (state === undefined || state.length !== 28 || state.readUInt32LE(0) !== FORMAT) {
      const hadOne = state !== undefined;
      if (hadOne) await this.kv.clear();
      this.reset();
      return !hadOne;
    }
    this.upTo = state.readDoubleLE(4);
    this.eventTotal = state.readDoubleLE(12);
    this.streamTotal = state.readDoubleLE(20);
    this.epochList = this.kv.entries("epochs").map(([k, v]) => ({
      position: k.readUInt32BE(0) * 4294967296 + k.readUInt32BE(4),
      epochNumber: v.readDoubleLE(0),
      epochId: v.toString("utf8", 8),
    }));
    return true;
  }

  /** The persisted epochs (below `persistedUpTo`), ascending. */
  epochs(): EpochEntry[] {
    return [...this.epochList];
  }

  stream(name: string): IndexedStream | undefined {
    const v = this.kv.get("streams", Buffer.from(name, "utf8"));
    return v === undefined ? undefined : decodeIndexedStream(v);
  }

  /** Position of revision k * SPARSE_EVERY of `name` (k ≥ 1), when persisted. */
  sparse(name: string, k: number): number | undefined {
    const v = this.kv.get("sparse", sparseKey(name, k));
    return v === undefined || v.length < 8 ? undefined : v.readDoubleLE(0);
  }

  id(idKey: string): EventIdHit | undefined {
    writeIdKey(this.idKey, 0, idKey);
    const v = this.kv.get("ids", this.idKey);
    if (v === undefined || v.length < 16) return undefined;
    return { position: v.readDoubleLE(0), revision: v.readDoubleLE(8) };
  }

  /** Persists `delta` atomically; `upTo` must not go back. */
  async write(delta: IndexDelta): Promise<void> {
    if (delta.upTo < this.upTo)
      throw new RangeError(`index upTo ${delta.upTo} is below ${this.upTo}`);
    const ops: KvOp[] = [];
    for (const [name, s] of delta.streams)
      ops.push({ table: "streams", key: Buffer.from(name, "utf8"), value: encodeIndexedStream(s) });
    for (const [name, k, position] of delta.sparse) {
      const v = Buffer.allocUnsafe(8);
      v.writeDoubleLE(position, 0);
      ops.push({ table: "sparse", key: sparseKey(name, k), value: v });
    }
    for (const e of delta.epochs) {
      const id = Buffer.from(e.epochId, "utf8");
      const v = Buffer.allocUnsafe(8 + id.length);
      v.writeDoubleLE(e.epochNumber, 0);
      id.copy(v, 8);
      ops.push({ table: "epochs", key: positionKey(e.position), value: v });
    }
    const state = Buffer.allocUnsafe(28);
    state.writeUInt32LE(FORMAT, 0);
    state.writeDoubleLE(delta.upTo, 4);
    state.writeDoubleLE(delta.events, 12);
    state.writeDoubleLE(delta.streamCount, 20);
    ops.push({ table: "meta", key: STATE_KEY, value: state });
    const { ids, positions, revisions } = delta.ids;
    await this.kv.write(ops, [
      {
        table: "ids",
        count: ids.length,
        keyBytes: 16,
        valueBytes: 16,
        fill: (i, buf, keyAt, valueAt) => {
          writeIdKey(buf, keyAt, ids[i] as string);
          buf.writeDoubleLE(positions[i] as number, valueAt);
          buf.writeDoubleLE(revisions[i] as number, valueAt + 8);
        },
      },
    ]);
    this.upTo = delta.upTo;
    this.eventTotal = delta.events;
    this.streamTotal = delta.streamCount;
    for (const e of delta.epochs) this.epochList.push(e);
  }

  /** Forgets everything (the store re-indexes the whole log). */
  async clear(): Promise<void> {
    await this.kv.clear();
    this.reset();
  }

  async close(): Promise<void> {
    await this.kv.close();
  }

  private reset(): void {
    this.upTo = 0;
    this.eventTotal = 0;
    this.streamTotal = 0;
    this.epochList = [];
  }
}
