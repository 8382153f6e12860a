/**
 * Reading a group's source (one stream, or $all without the system streams): the read cursor,
 * what was read last (for checkpoints), and whether the read has caught up with the commits.
 */
import type { StoredEvent, StreamStore } from "../streams/types.js";
import { StoreError } from "../streams/types.js";
import { eventFilter } from "../streams/filters.js";
import type { InitialCursor, ReadPoint } from "./common.js";

export const ALL = "$all";
/** How many $all records one read may scan past the filter. */
const MAX_SCAN = 16_384;

export class Source {
  readonly isAll: boolean;
  readonly #streamId: string;
  readonly #filter: ((e: StoredEvent) => boolean) | undefined;

  /** Read position: the next revision, or the $all position to read from. */
  #from = 0;
  /** $all: events at or before this position were read already (the checkpoint's event). */
  #skipThrough = -1;
  #lastRead: ReadPoint = { point: -1, position: -1 };
  /** Counts commits seen, so a read that raced a commit does not mark the source caught up. */
  #commits = 0;
  caughtUp = false;

  constructor(streamId: string) {
    this.#streamId = streamId;
    this.isAll = streamId === ALL;
    this.#filter = this.isAll ? eventFilter({ includeSystem: false }) : undefined;
  }

  /** What was read last (the checkpoint's point and position before anything is read). */
  get lastRead(): ReadPoint {
    return this.#lastRead;
  }

  /** The next revision, or the $all position to read from. */
  get from(): number {
    return this.#from;
  }

  get commits(): number {
    return this.#commits;
  }

  /** Positions the cursor at the checkpoint, or at the group's initial cursor without one. */
  start(checkpoint: ReadPoint | undefined, initial: InitialCursor): void {
    if (checkpoint) {
      const { point, position } = checkpoint;
      this.#lastRead = { point, position };
      if (this.isAll) {
        this.#from = position;
        this.#skipThrough = position;
      } else {
        this.#from = point + 1;
      }
    } else {
      this.#from = initial.from;
      this.#lastRead = this.isAll
        ? { point: -1, position: -1 }
        : { point: initial.from - 1, position: -1 };
    }
  }

  /** A commit happened: there may be more to read. */
  committed(): void {
    this.#commits++;
    this.caughtUp = false;
  }

  /** Reads up to `maxCount` events from the cursor (nothing from a missing or deleted stream). */
  async read(
    store: StreamStore,
    maxCount: number,
  ): Promise<{ events: StoredEvent[]; next: number; end: boolean }> {
    if (this.isAll) {
      const r = await store.readAll({
        direction: "forwards",
        fromPosition: this.#from,
        maxCount,
        ...(this.#filter && { filter: this.#filter, maxScan: MAX_SCAN }),
      });
      return { events: r.events, next: r.nextPosition, end: r.endOfStream };
    }
    try {
      const r = await store.readStream(this.#streamId, {
        direction: "forwards",
        fromRevision: this.#from,
        maxCount,
      });
      return { events: r.events, next: r.nextRevision, end: r.endOfStream };
    } catch (err) {
      // A source that does not exist (yet) or was deleted has nothing to deliver.
      if (
        err instanceof StoreError &&
        (err.code === "STREAM_NOT_FOUND" || err.code === "STREAM_DELETED")
      )
        return { events: [], next: this.#from, end: true };
      throw err;
    }
  }

  /** Moves the cursor after a read. */
  advance(next: number): void {
    this.#from = next;
  }

  /**
   * Takes a read event: its point and the one read before it, or undefined when it was read
   * already (behind the cursor).
   */
  accept(e: StoredEvent): { point: number; prev: ReadPoint } | undefined {
    const point = this.isAll ? e.position : e.revision;
    if (this.isAll && e.position <= this.#skipThrough) return undefined;
    if (point <= this.#lastRead.point && this.#lastRead.position >= 0) return undefined;
    const prev = this.#lastRead;
    this.#lastRead = { point, position: e.position };
    return { point, prev };
  }

  /** Whether the read has passed `position` (events read leave memory only once done). */
  passed(position: number): boolean {
    return position <= this.#lastRead.position;
  }

  /**
   * Whether `position` may be an event of the source not read yet: beyond what was read (and,
   * for $all, not before the cursor).
   */
  ahead(position: number): boolean {
    return position > this.#lastRead.position && (!this.isAll || position >= this.#from);
  }
}
