/**
 * A Bloom filter of the event ids in the persisted index: "surely not there" for most ids that
 * are not, so the append of a new event (the common case) skips the index lookup on disk. It
 * never says "not there" for an id that is: every id it was told of answers "maybe".
 *
 * It grows in layers (a scalable Bloom filter): once the newest layer holds the ids it was
 * sized for, ids go to a new layer twice its size, and a lookup asks every layer. A filter of
 * one size would have to be rebuilt larger by reading every id back from the index, again at
 * every doubling: that scan cost more CPU per appended event than the rest of the index's
 * upkeep. Only the first layer, at open, is built by a scan.
 */
import { fmix32 } from "../../streams/hash.js";

/**
 * Bits per id a layer is sized for (rounded up to a power of two). With 4 probes: about 1 false
 * "maybe" in 150 new ids per full layer; the layers' rates add up (most layers are full, and
 * each doubles the last, so a few percent at most for the whole filter).
 */
const BITS_PER_ID = 12;
const PROBES = 4;
/** The filter's largest size: beyond it the newest layer fills up and more new ids get a "maybe". */
export const MAX_FILTER_BYTES = 64 * 1024 * 1024;
/** The first layer's smallest size. */
const MIN_LAYER_BITS = 1 << 16;

function word(key: string, at: number): number {
  return (
    (key.charCodeAt(at) |
      (key.charCodeAt(at + 1) << 8) |
      (key.charCodeAt(at + 2) << 16) |
      (key.charCodeAt(at + 3) << 24)) >>>
    0
  );
}

interface Layer {
  readonly bits: Int32Array;
  /** Number of bits, a power of two. */
  readonly size: number;
  added: number;
}

function layer(size: number): Layer {
  return { bits: new Int32Array(size / 32), size, added: 0 };
}

export class IdFilter {
  private readonly layers: Layer[];
  private last: Layer;
  private bytes: number;

  /** Sized for `expectedIds` ids (within MAX_FILTER_BYTES) before it grows a layer. */
  constructor(expectedIds: number) {
    let size = MIN_LAYER_BITS;
    const want = Math.min(expectedIds * BITS_PER_ID, MAX_FILTER_BYTES * 8);
    while (size < want) size *= 2;
    this.last = layer(size);
    this.layers = [this.last];
    this.bytes = size / 8;
  }

  /** Layers so far. */
  get layerCount(): number {
    return this.layers.length;
  }

  /** Adds a 16-byte id key (latin1 string). */
  add(key: string): void {
    this.set(word(key, 0), word(key, 4), word(key, 8), word(key, 12));
  }

  /** False when the id was surely never added. */
  mayHave(key: string): boolean {
    const h1 = fmix32(word(key, 0) ^ Math.imul(word(key, 4), 0x9e3779b1));
    const h2 = fmix32(word(key, 8) ^ Math.imul(word(key, 12), 0x85ebca77)) | 1;
    for (let l = this.layers.length - 1; l >= 0; l--) {
      const { bits, size } = this.layers[l] as Layer;
      const mask = size - 1;
      let h = h1;
      let all = true;
      for (let i = 0; i < PROBES; i++) {
        const bit = h & mask;
        if (((bits[bit >>> 5] as number) & (1 << (bit & 31))) === 0) {
          all = false;
          break;
        }
        h = (h + h2) >>> 0;
      }
      if (all) return true;
    }
    return false;
  }

  /**
   * Adds a key given as the 16 bytes of `buf` at `at`: the same words as `add` reads from the
   * latin1 string of those bytes, without making the string (a build adds every id).
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
    let target = this.last;
    if (
      target.added * BITS_PER_ID >= target.size &&
      this.bytes + target.size / 4 <= MAX_FILTER_BYTES
    ) {
      target = layer(target.size * 2);
      this.layers.push(target);
      this.last = target;
      this.bytes += target.size / 8;
    }
    let h1 = fmix32(w0 ^ Math.imul(w1, 0x9e3779b1));
    const h2 = fmix32(w2 ^ Math.imul(w3, 0x85ebca77)) | 1;
    const mask = target.size - 1;
    const bits = target.bits;
    for (let i = 0; i < PROBES; i++) {
      const bit = h1 & mask;
      bits[bit >>> 5] = (bits[bit >>> 5] as number) | (1 << (bit & 31));
      h1 = (h1 + h2) >>> 0;
    }
    target.added++;
  }
}
