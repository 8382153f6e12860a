/**
 * The bounded window of recent event ids: a cache in memory in front of the event-id index
 * (`index/`), which finds every id ever written. It answers the retry of a recent append
 * without a lookup on disk.
 */

export interface WindowEntry {
  /** The stream's name. */
  stream: string;
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
