/**
 * A Bloom filter of the event ids of one run of the on-disk id table (`id-runs.ts`): "surely
 * not there" for most ids that are not, so the append of a new event (the common case) skips
 * the run's block read. It never says "not there" for an id that is: every id it was told of
 * answers "maybe". A run's ids are known when it is written, so the filter is sized once and
 * never grows; its bits are stored in the run's file.
 */
import { fmix32 } from "../../streams/hash.js";

/**
 * Bits per id the filter is sized for (rounded up to a power of two). With 4 probes: at most
 * about 1 false "maybe" in 150 new ids.
 */
const BITS_PER_ID = 12;
const PROBES = 4;
/** The smallest filter (bits). */
const MIN_BITS = 1 << 10;

function word(key: string, at: number): number {
  return (
    (key.charCodeAt(at) |
      (key.charCodeAt(at + 1) << 8) |
      (key.charCodeAt(at + 2) << 16) |
      (key.charCodeAt(at + 3) << 24)) >>>
    0
  );
}

/**
 * The id's words mixed into 32 bits: every word counts (ids that differ in one word only, such
 * as ids made from a counter, must spread as well as random ones).
 */
function hash(w0: number, w1: number, w2: number, w3: number): number {
  return fmix32(
    w0 ^ Math.imul(w1, 0x9e3779b1) ^ Math.imul(w2, 0x85ebca77) ^ Math.imul(w3, 0xc2b2ae3d),
  );
}

export class IdFilter {
  /** Number of bits, a power of two. */
  private readonly size: number;

  /** Sized for `ids` ids; or over `bits` as `bits` returned them. */
  constructor(
    ids: number,
    readonly bits: Int32Array = IdFilter.sized(ids),
  ) {
    this.size = bits.length * 32;
    if (this.size < MIN_BITS || (this.size & (this.size - 1)) !== 0)
      throw new RangeError(`an id filter has a power of two bits, at least ${MIN_BITS}`);
  }

  private static sized(ids: number): Int32Array {
    let size = MIN_BITS;
    while (size < ids * BITS_PER_ID) size *= 2;
    return new Int32Array(size / 32);
  }

  /** Adds a 16-byte id key (latin1 string). */
  add(key: string): void {
    this.set(word(key, 0), word(key, 4), word(key, 8), word(key, 12));
  }

  /** Adds the id key held in the 16 bytes of `buf` at `at` (the words `add` reads). */
  addBytes(buf: Buffer, at: number): void {
    this.set(
      buf.readUInt32LE(at),
      buf.readUInt32LE(at + 4),
      buf.readUInt32LE(at + 8),
      buf.readUInt32LE(at + 12),
    );
  }

  /** False when the id was surely never added. */
  mayHave(key: string): boolean {
    return this.mayHaveHashed(hash(word(key, 0), word(key, 4), word(key, 8), word(key, 12)));
  }

  /** `mayHave` of the id key held in the 16 bytes of `buf` at `at`. */
  mayHaveBytes(buf: Buffer, at: number): boolean {
    return this.mayHaveHashed(IdFilter.hashBytes(buf, at));
  }

  /** The hash `mayHaveHashed` takes, of the id key in the 16 bytes of `buf` at `at`. */
  static hashBytes(buf: Buffer, at: number): number {
    return hash(
      buf.readUInt32LE(at),
      buf.readUInt32LE(at + 4),
      buf.readUInt32LE(at + 8),
      buf.readUInt32LE(at + 12),
    );
  }

  /** `mayHave` of an id by its `hashBytes`: one hash for the filters of many runs. */
  mayHaveHashed(h: number): boolean {
    const h2 = fmix32(h ^ 0x9e3779b9) | 1;
    const mask = this.size - 1;
    const bits = this.bits;
    for (let i = 0; i < PROBES; i++) {
      const bit = h & mask;
      if (((bits[bit >>> 5] as number) & (1 << (bit & 31))) === 0) return false;
      h = (h + h2) >>> 0;
    }
    return true;
  }

  private set(w0: number, w1: number, w2: number, w3: number): void {
    let h = hash(w0, w1, w2, w3);
    const h2 = fmix32(h ^ 0x9e3779b9) | 1;
    const mask = this.size - 1;
    const bits = this.bits;
    for (let i = 0; i < PROBES; i++) {
      const bit = h & mask;
      bits[bit >>> 5] = (bits[bit >>> 5] as number) | (1 << (bit & 31));
      h = (h + h2) >>> 0;
    }
  }
}
