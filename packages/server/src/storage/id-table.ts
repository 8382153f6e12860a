/**
 * A hash table from event-id keys (16-character latin1 strings, though any string works) to
 * non-negative integers: the slots of the idempotency window and of the index's pending ids.
 *
 * A `Map` costs those two about a microsecond per append on a busy node: each id written is
 * one insert and, later, one delete, and a `Map` with that traffic keeps rebuilding its tables
 * (deleted entries stay until the next rebuild) and touches several cache lines per operation.
 * Here one operation is one probe sequence over a typed array (linear probing; the hash and
 * the value of a bucket side by side, so a probe reads one cache line); the key itself is
 * compared only when its hash matches. A delete shifts the following entries back (no
 * tombstones), so the table never degrades and never reallocates unless it grows.
 */

/** Buckets per entry at most (load factor 1/2): probe sequences stay short. */
const MAX_LOAD = 0.5;
const MIN_BUCKETS = 16;

/** 32-bit hash of a string's char codes, four at a time (MurmurHash3's mixing). */
export function idHash(key: string): number {
  let h = key.length;
  let i = 0;
  for (; i + 4 <= key.length; i += 4)
    h = murmurMix(
      h,
      key.charCodeAt(i) |
        (key.charCodeAt(i + 1) << 8) |
        (key.charCodeAt(i + 2) << 16) |
        (key.charCodeAt(i + 3) << 24),
    );
  for (; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return murmurFinish(h);
}

/** MurmurHash3's step: the state `h` after taking in the 32-bit word `k`. */
export function murmurMix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finish: every bit of the state spread over the hash. */
export function murmurFinish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

export class IdTable {
  /** Bucket b: cells[2b] = the key's hash, cells[2b + 1] = its value, or -1 when empty. */
  private cells: Int32Array;
  private keys: Array<string | undefined>;
  private mask: number;
  private count = 0;

  /** `expected`: entries the table should hold without growing. */
  constructor(expected = 0) {
    const buckets = bucketsFor(expected);
    this.cells = emptyCells(buckets);
    this.keys = new Array<string | undefined>(buckets).fill(undefined);
    this.mask = buckets - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The value of `key`, or -1. */
  get(key: string): number {
    const b = this.find(key, idHash(key));
    return b < 0 ? -1 : (this.cells[2 * b + 1] as number);
  }

  has(key: string): boolean {
    return this.find(key, idHash(key)) >= 0;
  }

  /** Sets `key` to `value` (≥ 0); returns the value it replaced, or -1. */
  set(key: string, value: number): number {
    if (!(value >= 0 && value <= 0x7fffffff && Number.isInteger(value)))
      throw new RangeError(`IdTable values are integers in 0..2^31-1, got ${value}`);
    const hash = idHash(key);
    const b = this.find(key, hash);
    if (b >= 0) {
      const previous = this.cells[2 * b + 1] as number;
      this.cells[2 * b + 1] = value;
      return previous;
    }
    if ((this.count + 1) / (this.mask + 1) > MAX_LOAD) {
      this.grow();
      return this.set(key, value);
    }
    const empty = -1 - b;
    this.cells[2 * empty] = hash;
    this.cells[2 * empty + 1] = value;
    this.keys[empty] = key;
    this.count++;
    return -1;
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    const b = this.find(key, idHash(key));
    if (b < 0) return false;
    this.removeAt(b);
    return true;
  }

  /** Removes `key` only if it maps to `value` (an entry a later one has not replaced). */
  deleteIf(key: string, value: number): boolean {
    const b = this.find(key, idHash(key));
    if (b < 0 || this.cells[2 * b + 1] !== value) return false;
    this.removeAt(b);
    return true;
  }

  clear(): void {
    if (this.count === 0) return;
    this.cells.fill(-1);
    this.keys.fill(undefined);
    this.count = 0;
  }

  /** The bucket holding `key`, or -1 - the empty bucket where it would go. */
  private find(key: string, hash: number): number {
    const cells = this.cells;
    const mask = this.mask;
    for (let b = hash & mask; ; b = (b + 1) & mask) {
      const value = cells[2 * b + 1] as number;
      if (value < 0) return -1 - b;
      if (cells[2 * b] === hash && this.keys[b] === key) return b;
    }
  }

  /** Empties bucket `b`, moving back each later entry of the run that may not skip the gap. */
  private removeAt(b: number): void {
    const cells = this.cells;
    const keys = this.keys;
    const mask = this.mask;
    let gap = b;
    for (let next = (gap + 1) & mask; cells[2 * next + 1]! >= 0; next = (next + 1) & mask) {
      const home = (cells[2 * next] as number) & mask;
      // The entry at `next` may move to `gap` unless its home lies cyclically in (gap, next].
      const stays = gap <= next ? gap < home && home <= next : gap < home || home <= next;
      if (stays) continue;
      cells[2 * gap] = cells[2 * next] as number;
      cells[2 * gap + 1] = cells[2 * next + 1] as number;
      keys[gap] = keys[next];
      gap = next;
    }
    cells[2 * gap + 1] = -1;
    keys[gap] = undefined;
    this.count--;
  }

  private grow(): void {
    const oldCells = this.cells;
    const oldKeys = this.keys;
    const buckets = (this.mask + 1) * 2;
    this.cells = emptyCells(buckets);
    this.keys = new Array<string | undefined>(buckets).fill(undefined);
    this.mask = buckets - 1;
    for (let b = 0; b < oldKeys.length; b++) {
      const value = oldCells[2 * b + 1] as number;
      if (value < 0) continue;
      const hash = oldCells[2 * b] as number;
      let to = hash & this.mask;
      while ((this.cells[2 * to + 1] as number) >= 0) to = (to + 1) & this.mask;
      this.cells[2 * to] = hash;
      this.cells[2 * to + 1] = value;
      this.keys[to] = oldKeys[b];
    }
  }
}

function bucketsFor(entries: number): number {
  let buckets = MIN_BUCKETS;
  while (entries / buckets > MAX_LOAD) buckets *= 2;
  return buckets;
}

function emptyCells(buckets: number): Int32Array {
  return new Int32Array(2 * buckets).fill(-1);
}
