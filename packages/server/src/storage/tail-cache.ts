/**
 * The last bytes written to a log, kept in a ring in memory. Who reads a disk log reads its
 * tail: a live subscription reads each commit right after it, a persistent group reads just
 * behind its writers, a leader reads what a follower lacks. Served from here, such a read
 * costs one copy instead of a read on the thread pool (a hand-off to another thread and back,
 * and a system call). The ring holds what was written, in order; a truncation drops what it
 * cuts. Reads of older bytes, or straddling the ring's start, go to the file as before.
 */
export class TailCache {
  readonly #capacity: number;
  #ring: Buffer | undefined;
  /** Log positions `from` up to `end` are in the ring (at position modulo capacity). */
  #from = 0;
  #end = 0;

  /** `capacity` 0: nothing is kept (every read misses). */
  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 0)
      throw new RangeError("the tail cache's capacity must be an integer >= 0");
    this.#capacity = capacity;
  }

  /** Nothing cached; the next write is expected at `end` (an opened log's end). */
  reset(end: number): void {
    this.#from = this.#end = end;
  }

  /** `length` bytes of `data` from `offset` were written at log position `position`. */
  written(position: number, data: Uint8Array, offset: number, length: number): void {
    if (this.#capacity === 0 || length <= 0) return;
    // Not where the ring ends (never with one writer appending in order): start over there.
    if (position !== this.#end) this.reset(position);
    const ring = (this.#ring ??= Buffer.allocUnsafeSlow(this.#capacity));
    // Only the last `capacity` bytes of a larger write can stay.
    const skip = Math.max(0, length - this.#capacity);
    let at = position + skip;
    let from = offset + skip;
    const stop = offset + length;
    while (from < stop) {
      const slot = at % this.#capacity;
      const n = Math.min(this.#capacity - slot, stop - from);
      ring.set(data.subarray(from, from + n), slot);
      at += n;
      from += n;
    }
    this.#end = position + length;
    this.#from = Math.max(this.#from, this.#end - this.#capacity);
  }

  /** The log was cut at `position`: what lay beyond it is gone. */
  truncate(position: number): void {
    if (position >= this.#end) return;
    this.#end = position;
    this.#from = Math.min(this.#from, position);
  }

  /** A copy of `length` bytes at `position` when the ring holds all of them; else undefined. */
  read(position: number, length: number): Buffer | undefined {
    const ring = this.#ring;
    if (ring === undefined || position < this.#from || position + length > this.#end)
      return undefined;
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const slot = (position + done) % this.#capacity;
      const n = Math.min(this.#capacity - slot, length - done);
      ring.copy(out, done, slot, slot + n);
      done += n;
    }
    return out;
  }
}
