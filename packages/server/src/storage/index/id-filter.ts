/**
 * A Bloom filter of the event ids in the persisted index: "surely not there" for most ids that
 * are not, so the append of a new event (the common case) skips the index lookup on disk. It
 * never says "not there" for an id that is: every id it was told of answers "maybe".
 */
import { fmix32 } from "../../streams/hash.js";

/**
 * Bits per id aimed for (rounded up to a power of two). With 4 probes: about 1 false "maybe"
 * in 150 new ids at 12 bits per id, 1 in 18 at 6, when a larger filter is built (`crowded`).
 */
const BITS_PER_ID = 12;
const PROBES = 4;
/** The filter's largest size: beyond it more new ids get a "maybe" (and a lookup). */
export const MAX_FILTER_BYTES = 64 * 1024 * 1024;
const MIN_FILTER_BITS = 1 << 16;

function word(key: string, at: number): number {
  return (
    (key.charCodeAt(at) |
      (key.charCodeAt(at + 1) << 8) |
      (key.charCodeAt(at + 2) << 16) |
      (key.charCodeAt(at + 3) << 24)) >>>
    0
  );
}

export class IdFilter {
  private readonly bits: Int32Array;
  /** Number of bits, a power of two. */
  private readonly size: number;
  private added = 0;

  /** Sized for `expectedIds` ids (within MAX_FILTER_BYTES). */
  constructor(expectedIds: number) {
    let size = MIN_FILTER_BITS;
    const want = Math.min(expectedIds * BITS_PER_ID, MAX_FILTER_BYTES * 8);
    while (size < want) size *= 2;
    this.size = size;
    this.bits = new Int32Array(size / 32);
  }

  /** Ids the filter holds more of than it was sized for: time for a larger one. */
  get crowded(): boolean {
    return this.added * BITS_PER_ID > this.size * 2 && this.size < MAX_FILTER_BYTES * 8;
  }

  /** Ids added (counting repeats). */
  get count(): number {
    return this.added;
  }

  /** Adds a 16-byte id key (latin1 string). */
  add(key: string): void {
    this.set(word(key, 0), word(key, 4), word(key, 8), word(key, 12));
  }

  /** False when the id was surely never added. */
  mayHave(key: string): boolean {
    let h1 = fmix32(word(key, 0) ^ Math.imul(word(key, 4), 0x9e3779b1));
    const h2 = fmix32(word(key, 8) ^ Math.imul(word(key, 12), 0x85ebca77)) | 1;
    const mask = this.size - 1;
    for (let i = 0; i < PROBES; i++) {
      const bit = h1 & mask;
      if (((this.bits[bit >>> 5] as number) & (1 << (bit & 31))) === 0) return false;
      h1 = (h1 + h2) >>> 0;
    }
    return true;
  }

  /**
   * Adds a key given as the 16 bytes of `buf` at `at`: the same words as `add` reads from the
   * latin1 string of those bytes, without making the string (a rebuild adds every id).
   */
  addBytes(buf: Buffer, at: number): void {
    this.set(
      buf.readUInt32LE(at),
      buf.readUInt32LE(at + 4),
      buf.readUInt32LE(at + 8),
      buf.readUInt32LE(at + 12),
    );
  }

  private set(w0: number, w1: number, w2: number, w3: number): void {
    let h1 = fmix32(w0 ^ Math.imul(w1, 0x9e3779b1));
    const h2 = fmix32(w2 ^ Math.imul(w3, 0x85ebca77)) | 1;
    const mask = this.size - 1;
    for (let i = 0; i < PROBES; i++) {
      const bit = h1 & mask;
      this.bits[bit >>> 5] = (this.bits[bit >>> 5] as number) | (1 << (bit & 31));
      h1 = (h1 + h2) >>> 0;
    }
    this.added++;
  }
}
