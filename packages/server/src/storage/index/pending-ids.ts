/**
 * Event ids added to the index and not persisted yet, in position order, with a map from id to
 * the latest of them: what the index's lookups see before the persisted part.
 */
import { IdTable } from "../id-table.js";
import type { EventIdHit } from "./log-index.js";

/** Slots are renumbered from 0 before they outgrow an IdTable value (2^31 - 1). */
const REBASE_AT = 2 ** 30;

/**
 * Events added and not yet persisted, in position order, with a map from id to the latest of
 * them. Slots are absolute (not reused until every entry is gone or they are renumbered), so
 * the map stays valid when the front is dropped.
 */
export class PendingIds {
  private ids: string[] = [];
  private positions: number[] = [];
  private revisions: number[] = [];
  /** Absolute slot of ids[0]. */
  private base = 0;
  /** Entries before this index are dropped (persisted). */
  private head = 0;
  /**
   * Id -> slot of its latest entry, built at the first lookup and kept from then on. A
   * follower never looks ids up (only a leader checks retries): it pays for no map at all.
   * An IdTable (an insert per id added, a delete per id persisted: see there).
   */
  private latest: IdTable | null = null;
  /** Some id was added twice (its older entry is shadowed in `latest`). */
  private shadowed = false;

  /** `rebaseAt`: slot numbers are renumbered from 0 beyond it (a parameter for tests). */
  constructor(private readonly rebaseAt = REBASE_AT) {}

  get length(): number {
    return this.ids.length - this.head;
  }

  get(idKey: string): EventIdHit | undefined {
    const slot = (this.latest ?? this.buildLatest()).get(idKey);
    if (slot < 0) return undefined;
    const i = slot - this.base;
    return { position: this.positions[i] as number, revision: this.revisions[i] as number };
  }

  /**
   * False when the id is already here at that position (a rescan). A position at or below the
   * last one added means the log was cut back there: the entries from it on go first.
   */
  add(idKey: string, position: number, revision: number): boolean {
    const n = this.ids.length;
    if (n > this.head && position <= (this.positions[n - 1] as number)) {
      const i = this.head + this.countBelow(position);
      if (this.positions[i] === position && this.ids[i] === idKey && this.revisions[i] === revision)
        return false;
      this.truncate(position);
    }
    if (this.latest !== null && this.latest.set(idKey, this.base + this.ids.length) >= 0)
      this.shadowed = true;
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
    const latest = this.latest;
    if (latest !== null) {
      for (let i = this.head; i < end; i++) latest.deleteIf(this.ids[i] as string, this.base + i);
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
      if (this.base > this.rebaseAt) {
        this.base = 0;
        this.latest = null; // rebuilt with the new numbers at the next lookup
      }
    }
  }

  /** Removes every entry at or above `position`. */
  truncate(position: number): void {
    const keep = this.head + this.countBelow(position);
    if (keep === this.ids.length) return;
    const latest = this.latest;
    if (latest !== null) {
      for (let i = keep; i < this.ids.length; i++)
        latest.deleteIf(this.ids[i] as string, this.base + i);
    }
    this.ids.length = keep;
    this.positions.length = keep;
    this.revisions.length = keep;
    if (latest !== null && this.shadowed) {
      // A removed entry may have shadowed an older one of the same id: map them again.
      for (let i = this.head; i < keep; i++) latest.set(this.ids[i] as string, this.base + i);
    }
  }

  clear(): void {
    this.ids = [];
    this.positions = [];
    this.revisions = [];
    this.base = 0; // nothing holds a slot any more
    this.head = 0;
    this.latest?.clear();
    this.shadowed = false;
  }

  private buildLatest(): IdTable {
    const latest = new IdTable(this.ids.length - this.head);
    for (let i = this.head; i < this.ids.length; i++)
      latest.set(this.ids[i] as string, this.base + i);
    this.shadowed = latest.size < this.ids.length - this.head;
    this.latest = latest;
    return latest;
  }
}
