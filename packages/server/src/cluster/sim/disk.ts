/**
 * A simulated disk: appends and truncations change the page cache (the volatile log) and
 * become durable only at `sync()`; `powerLoss()` throws away whatever was not synced.
 * The hard state (epoch, vote) is written with its own fsync before the core relies on it.
 */
import type { HardState, LogRecord } from "../core/types.js";
import { MemLog } from "./mem-log.js";

export class SimDisk<P> {
  log = new MemLog<P>();
  private synced: LogRecord<P>[] = [];
  /** Leading records that are identical in the volatile and the synced image. */
  private common = 0;
  hardState: HardState = { epoch: 0, votedFor: undefined };
  /** No hard state was ever persisted: a new data directory, or a wiped in-memory node. */
  fresh = true;
  /** The store's commit checkpoint: never above the durable end. */
  commitCheckpoint = 0;
  /** Set true to model a driver that forgets to fsync the hard state (a bug). */
  loseHardState = false;
  private unsyncedHardState: HardState | undefined;
  dirty = false;

  append(records: readonly LogRecord<P>[]): void {
    this.log.append(records);
    this.dirty = true;
  }

  truncate(position: number): void {
    this.log.truncate(position);
    this.common = Math.min(this.common, this.log.size);
    this.dirty = true;
  }

  persist(state: HardState): void {
    if (this.loseHardState) {
      this.unsyncedHardState = state;
    } else {
      this.hardState = state;
      this.fresh = false;
    }
  }

  /** fsync: the volatile image becomes the durable one. Returns the durable end. */
  sync(): number {
    const all = this.log.all();
    this.synced.length = this.common;
    for (let i = this.common; i < all.length; i++) {
      const r = all[i];
      if (r !== undefined) this.synced.push(r);
    }
    this.common = all.length;
    this.log.durable = this.log.end();
    if (this.unsyncedHardState) {
      this.hardState = this.unsyncedHardState;
      this.fresh = false;
    }
    this.unsyncedHardState = undefined;
    this.dirty = false;
    return this.log.durable;
  }

  /** Records appended since the last sync that a power loss could partly keep. */
  unsyncedAppends(): number {
    return this.common === this.synced.length ? this.log.size - this.common : 0;
  }

  /**
   * Power loss: what was synced survives, plus (as on a real disk, where some dirty pages
   * may have been written back) the first `keepUnsynced` records appended since.
   */
  powerLoss(keepUnsynced = 0): void {
    const kept = this.log.all().slice(this.common, this.common + this.unsyncedAppends());
    this.synced.push(...kept.slice(0, keepUnsynced));
    this.log = new MemLog(this.synced);
    this.log.durable = this.log.end();
    this.common = this.synced.length;
    this.unsyncedHardState = undefined;
    this.dirty = false;
  }
}
