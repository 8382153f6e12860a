/**
 * The stream index: small per-stream state plus a sparse array of positions, and the bounded
 * window of recent event ids (a cache in front of the event-id index, `index/`). Events themselves stay in the log; a read follows the back-links that
 * every EVENT record carries (position of the previous event of its stream).
 *
 * Every stream has two views: the write view (w*: includes appends still queued for the
 * disk, used for expected-version checks) and the committed view (what readers see).
 */
import { crc32c } from "@node-rs/crc32";
import type { StreamMetadata } from "../streams/types.js";
import { ABSENT_STREAM, type StreamView } from "../streams/view.js";

// The metadata rules live in streams/ (shared by every backend); re-exported for old importers.
export { SOFT_DELETED_KEY, parseMetadata } from "../streams/metadata.js";
export { firstReadable, isSoftDeleted, maxAgeCutoffMs } from "../streams/visibility.js";

/** One sparse entry every this many revisions. */
export const SPARSE_EVERY = 32;

/** A stream's state; as a `StreamView`, its committed view (what readers see). */
export class StreamState implements StreamView {
  // write view
  wLast = -1;
  wLastPos = -1;
  wTombstoned = false;
  wMeta: StreamMetadata | null = null;
  // committed view
  last = -1;
  lastPos = -1;
  tombstoned = false;
  meta: StreamMetadata | null = null;
  /** sparse[k] = position of revision k * SPARSE_EVERY (may run ahead of the committed view). */
  readonly sparse: number[] = [];

  constructor(readonly name: string) {}
}

/**
 * A snapshot of a stream's write view, for the write rules (expected version, idempotency);
 * `ABSENT_STREAM` for a stream the index does not know.
 */
export function writeView(
  s: Pick<StreamState, "wLast" | "wTombstoned" | "wMeta"> | undefined,
): StreamView {
  return s === undefined
    ? ABSENT_STREAM
    : { last: s.wLast, tombstoned: s.wTombstoned, meta: s.wMeta };
}

export interface WindowEntry {
  stream: StreamState;
  revision: number;
  position: number;
}

/**
 * The bounded map of recent event ids (16-byte latin1 keys) to where they were written. A ring
 * of keys gives the eviction order (a Map used as a FIFO degrades: V8 leaves deleted slots at
 * its front that every `keys().next()` has to skip).
 */
export class IdempotencyWindow {
  private readonly entries = new Map<string, WindowEntry & { slot: number }>();
  private ring: Array<string | undefined> = [];
  private next = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): WindowEntry | undefined {
    return this.entries.get(key);
  }

  add(key: string, entry: WindowEntry): void {
    if (this.capacity <= 0) return;
    const slot = this.next;
    const evicted = this.ring[slot];
    if (evicted !== undefined && this.entries.get(evicted)?.slot === slot)
      this.entries.delete(evicted);
    const previous = this.entries.get(key);
    if (previous !== undefined) this.ring[previous.slot] = undefined;
    this.entries.set(key, {
      stream: entry.stream,
      revision: entry.revision,
      position: entry.position,
      slot,
    });
    this.ring[slot] = key;
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
  }

  /** Forgets `key` (an append that was never written). */
  delete(key: string): void {
    const e = this.entries.get(key);
    if (e === undefined) return;
    this.entries.delete(key);
    this.ring[e.slot] = undefined;
  }

  clear(): void {
    this.entries.clear();
    this.ring = [];
    this.next = 0;
  }

  /** Oldest first. */
  *list(): IterableIterator<[string, WindowEntry]> {
    for (let i = 0; i < this.ring.length; i++) {
      const key = this.ring[(this.next + i) % this.ring.length];
      if (key === undefined) continue;
      const e = this.entries.get(key);
      if (e !== undefined) yield [key, e];
    }
  }
}

// ---- snapshot codec: [u32 crc32c][utf8 JSON] ----

type SnapshotStream = [
  name: string,
  last: number,
  lastPos: number,
  tombstoned: 0 | 1,
  sparse: number[],
  meta: StreamMetadata | null,
];
type SnapshotWindowEntry = [idHex: string, stream: number, revision: number, position: number];

interface SnapshotJson {
  v: 1;
  position: number;
  events: number;
  streams: SnapshotStream[];
  window: SnapshotWindowEntry[];
  /** Cluster epochs below `position` (absent in older snapshots). */
  epochs?: EpochEntry[];
}

/** An EPOCH record of the log: the epoch's number and id, and where its record starts. */
export interface EpochEntry {
  readonly epochNumber: number;
  readonly epochId: string;
  readonly position: number;
}

export interface IndexSnapshot {
  position: number;
  events: number;
  streams: Map<string, StreamState>;
  window: Array<[string, WindowEntry]>;
  epochs: EpochEntry[];
}

/** Serialises the committed view as of `position` (the commit position). */
export function encodeSnapshot(
  position: number,
  events: number,
  streams: Iterable<StreamState>,
  window: IdempotencyWindow,
  epochs: readonly EpochEntry[] = [],
): Buffer {
  const indexOf = new Map<StreamState, number>();
  const list: SnapshotStream[] = [];
  for (const s of streams) {
    if (s.last < 0 && s.meta === null && !s.tombstoned) continue;
    indexOf.set(s, list.length);
    const sparse = s.sparse.slice(0, s.last < 0 ? 0 : Math.floor(s.last / SPARSE_EVERY) + 1);
    list.push([s.name, s.last, s.lastPos, s.tombstoned ? 1 : 0, sparse, s.meta]);
  }
  const win: SnapshotWindowEntry[] = [];
  for (const [key, e] of window.list()) {
    const i = indexOf.get(e.stream);
    if (i === undefined || e.position >= position) continue;
    win.push([Buffer.from(key, "latin1").toString("hex"), i, e.revision, e.position]);
  }
  const json: SnapshotJson = { v: 1, position, events, streams: list, window: win };
  const eps = epochs.filter((e) => e.position < position);
  if (eps.length > 0) json.epochs = eps;
  const body = Buffer.from(JSON.stringify(json), "utf8");
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(crc32c(body), 0);
  body.copy(out, 4);
  return out;
}

/** Returns null when the bytes are not a valid snapshot. */
export function decodeSnapshot(buf: Buffer): IndexSnapshot | null {
  if (buf.length < 4) return null;
  const body = buf.subarray(4);
  if (crc32c(body) !== buf.readUInt32LE(0)) return null;
  let json: SnapshotJson;
  try {
    json = JSON.parse(body.toString("utf8")) as SnapshotJson;
  } catch {
    return null;
  }
  if (json.v !== 1) return null;
  const streams = new Map<string, StreamState>();
  const byIndex: StreamState[] = [];
  for (const [name, last, lastPos, tombstoned, sparse, meta] of json.streams) {
    const s = new StreamState(name);
    s.last = s.wLast = last;
    s.lastPos = s.wLastPos = lastPos;
    s.tombstoned = s.wTombstoned = tombstoned === 1;
    s.meta = s.wMeta = meta;
    for (const p of sparse) s.sparse.push(p);
    streams.set(name, s);
    byIndex.push(s);
  }
  const window: Array<[string, WindowEntry]> = [];
  for (const [idHex, i, revision, position] of json.window) {
    const stream = byIndex[i];
    if (stream === undefined) return null;
    window.push([Buffer.from(idHex, "hex").toString("latin1"), { stream, revision, position }]);
  }
  return {
    position: json.position,
    events: json.events,
    streams,
    window,
    epochs: (json.epochs ?? []).map((e) => ({
      epochNumber: e.epochNumber,
      epochId: e.epochId,
      position: e.position,
    })),
  };
}
