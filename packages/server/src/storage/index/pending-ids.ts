/**
 * Event ids added to the index and not persisted yet, in position order, with a map from id to
 * the latest of them: what the index's lookups see before the persisted part.
 */
import type { EventIdHit } from "./log-index.js";

/**
 * Events added and not yet persisted, in position order, with a map from id to the latest of
 * them. Slots are absolute (never reused), so the map stays valid when the front is dropped.
 */
export class PendingIds {
  private ids: string[] = [];
  private positions: number[] = [];
  private revisions: number[] = [];
  /** Absolute slot of ids[0]. */
  private base = 0;
  /** Entries before this index are dropped (persisted). */
  private head = 0;
  private readonly latest = new Map<string, number>();
  /** Some id was added twice (its older entry is shadowed in `latest`). */
  private shadowed = false;

  get length(): number {
    return this.ids.length - this.head;
  }

  get(idKey: string): EventIdHit | undefined {
    const slot = this.latest.get(idKey);
    if (slot === undefined) return undefined;
    const i = slot - this.base;
    return { position: this.positions[i] as number, revision: this.revisions[i] as number };
  }

  /**
   * False when the id is already here at that position (a rescan). A position at or below the
   * last one added means the log was cut back there: the entries from it on go first.
   */
  add(idKey: string, position: number, revision: number): boolean {
    let slot = this.latest.get(idKey);
    if (
      slot !== undefined &&
      this.positions[slot - this.base] === position &&
      this.revisions[slot - this.base] === revision
    )
      return false;
    const n = this.ids.length;
    if (n > this.head && position <= (this.positions[n - 1] as number)) {
      this.truncate(position);
      slot = this.latest.get(idKey);
    }
    if (slot !== undefined) this.shadowed = true;
    this.latest.set(idKey, this.base + this.ids.length);
    this.ids.push(idKey);
    this.positions.push(position);
    this.revisions.push(revision);
    return true;
  }

  /** How many entries, from the front, lie below `position`. */
  countBelow(position: number): number {
    let lo = this.head;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.positions[mid] as number) < position) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.head;
  }

  /** The first `n` entries. */
  front(n: number): { ids: string[]; positions: number[]; revisions: number[] } {
    const end = this.head + n;
    return {
      ids: this.ids.slice(this.head, end),
      positions: this.positions.slice(this.head, end),
      revisions: this.revisions.slice(this.head, end),
    };
  }

  /** Forgets the first `n` entries (persisted now). */
  drop(n: number): void {
    const end = this.head + n;
    for (let i = this.head; i < end; i++) {
      const id = this.ids[i] as string;
      if (this.latest.get(id) === this.base + i) this.latest.delete(id);
    }
    this.head = end;
    if (this.head === this.ids.length) {
      this.clear();
    } else if (this.head > 4096 && this.head * 2 > this.ids.length) {
      this.ids = this.ids.slice(this.head);
      this.positions = this.positions.slice(this.head);
      this.revisions = this.revisions.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }

  /** Removes every entry at or above `position`. */
  truncate(position: number): void {
    const keep = this.head + this.countBelow(position);
    if (keep === this.ids.length) return;
    for (let i = keep; i < this.ids.length; i++) {
      const id = this.ids[i] as string;
      if (this.latest.get(id) === this.base + i) this.latest.delete(id);
    }
    this.ids.length = keep;
    this.positions.length = keep;
    this.revisions.length = keep;
    if (this.shadowed) {
      // A removed entry may have shadowed an older one of the same id: map them again.
      for (let i = this.head; i < keep; i++) this.latest.set(this.ids[i] as string, this.base + i);
    }
  }

  clear(): void {
    this.ids = [];
    this.positions = [];
    this.revisions = [];
    this.base += this.head;
    this.head = 0;
    this.latest.clear();
    this.shadowed = false;
  }
}
