/**
 * The bounded window of recent event ids: a cache in memory in front of the event-id index
 * (`index/`), which finds every id ever written. It answers the retry of a recent append
 * without a lookup on disk.
 */
import { IdTable } from "./id-table.js";

export interface WindowEntry {
  /** The stream's name. */
  stream: string;
  revision: number;
  position: number;
}

/**
 * The bounded map of recent event ids (16-byte latin1 keys) to where they were written. A ring
 * of keys gives the eviction order (a Map used as a FIFO degrades: V8 leaves deleted slots at
 * its front that every `keys().next()` has to skip). Each slot's stream, revision and position
 * are kept in columns, the table holding only slot numbers: no object per id written (fewer
 * allocations per append, and far fewer long-lived objects for the garbage collector to mark).
 */
export class IdempotencyWindow {
  /** Key -> its slot (an IdTable: one insert and one delete per id written, see there). */
  private readonly slots: IdTable;
  private ring: Array<string | undefined> = [];
  private streams: string[] = [];
  private revisions: number[] = [];
  private positions: number[] = [];
  private next = 0;

  constructor(readonly capacity: number) {
    // Sized up front for the default window; a larger one grows as it fills.
    this.slots = new IdTable(Math.min(Math.max(0, capacity), 1 << 17));
  }

  get size(): number {
    return this.slots.size;
  }

  get(key: string): WindowEntry | undefined {
    const slot = this.slots.get(key);
    if (slot < 0) return undefined;
    return {
      stream: this.streams[slot] as string,
      revision: this.revisions[slot] as number,
      position: this.positions[slot] as number,
    };
  }

  /** Whether `key` is here (get without building the entry). */
  has(key: string): boolean {
    return this.slots.has(key);
  }

  add(key: string, entry: WindowEntry): void {
    this.put(key, entry.stream, entry.revision, entry.position);
  }

  /** `add`, the entry given as its fields. */
  put(key: string, stream: string, revision: number, position: number): void {
    if (this.capacity <= 0) return;
    const slot = this.next;
    const evicted = this.ring[slot];
    if (evicted !== undefined) this.slots.deleteIf(evicted, slot);
    const previous = this.slots.set(key, slot);
    if (previous >= 0) this.ring[previous] = undefined;
    // Slots fill in order, so these arrays grow by appending (packed, numbers unboxed).
    this.ring[slot] = key;
    this.streams[slot] = stream;
    this.revisions[slot] = revision;
    this.positions[slot] = position;
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
  }

  /** Forgets `key` (an append that was never written). */
  delete(key: string): void {
    const slot = this.slots.get(key);
    if (slot < 0) return;
    this.slots.delete(key);
    this.ring[slot] = undefined;
  }

  clear(): void {
    this.slots.clear();
    this.ring = [];
    this.streams = [];
    this.revisions = [];
    this.positions = [];
    this.next = 0;
  }

  /** Oldest first. */
  *list(): IterableIterator<[string, WindowEntry]> {
    for (let i = 0; i < this.ring.length; i++) {
      const key = this.ring[(this.next + i) % this.ring.length];
      if (key === undefined) continue;
      const e = this.get(key);
      if (e !== undefined) yield [key, e];
    }
  }
}
