/**
 * Reading a group's source (one stream, or $all through the group's filter, without the
 * system streams unless it asks for them): the read cursor, what was read last (for
 * checkpoints), and whether the read has caught up with the commits.
 *
 * A $all read scans past events the filter leaves out. What it scanned counts as read: after
 * a read, the last read point is the scan's end (`next`, the start of the next record, with
 * point and position `next - 1`), so the checkpoint moves over long runs of events the group
 * does not take and a restart does not scan them again.
 */
import type { StoredEvent, StreamStore } from "../streams/types.js";
import { StoreError } from "../streams/types.js";
import { eventFilter, isSystemStream } from "../streams/filters.js";
import type { InitialCursor, ReadPoint } from "./common.js";
import { toEventFilter, type GroupFilter } from "./settings.js";

export const ALL = "$all";
/** How many $all records one read may scan past the filter. */
export const MAX_SCAN = 16_384;

/**
 * The streams of persistent subscription groups themselves (config, checkpoints, acks,
 * parked copies) and their metadata streams: never delivered by a group, even with
 * `includeSystem` (a group taking its own acks records would feed itself for ever).
 */
export function isGroupStateStream(streamId: string): boolean {
  return streamId.startsWith("$persistent-") || streamId.startsWith("$$$persistent-");
}

/**
 * The predicate a $all group reads with: the filter compiled as for $all reads
 * (streams/filters.ts), without the groups' own streams. `skipped` is called for each event
 * of a non-system stream it leaves out (those count towards the group's next checkpoint).
 */
export function groupFilter(
  filter: GroupFilter | undefined,
  skipped: () => void,
): (e: StoredEvent) => boolean {
  const matches = eventFilter(toEventFilter(filter), true);
  return (e) => {
    if (matches(e) && !isGroupStateStream(e.streamId)) return true;
    if (!isSystemStream(e.streamId)) skipped();
    return false;
  };
}

export class Source {
  readonly isAll: boolean;
  readonly #streamId: string;
  readonly #filter: ((e: StoredEvent) => boolean) | undefined;
  /** Events of non-system streams the filter left out during the current read. */
  #skipped = 0;

  /** Read position: the next revision, or the $all position to read from. */
  #from = 0;
  /** $all: events at or before this position were read already (the checkpoint's event). */
  #skipThrough = -1;
  #lastRead: ReadPoint = { point: -1, position: -1 };
  /** Counts commits seen, so a read that raced a commit does not mark the source caught up. */
  #commits = 0;
  caughtUp = false;

  /** `filter`: $all only (settings.ts refuses it on a stream group). */
  constructor(streamId: string, filter?: GroupFilter) {
    this.#streamId = streamId;
    this.isAll = streamId === ALL;
    this.#filter = this.isAll ? groupFilter(filter, () => this.#skipped++) : undefined;
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
      const { point, position, next } = checkpoint;
      this.#lastRead = { point, position, ...(next !== undefined && { next }) };
      if (this.isAll && next !== undefined) {
        // The checkpoint is a scan's end: every record before `next` was read.
        this.#from = next;
        this.#skipThrough = next - 1;
      } else if (this.isAll) {
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

  /**
   * Reads up to `maxCount` events from the cursor (nothing from a missing or deleted stream).
   * `skipped`: events of non-system streams a $all read scanned past (0 for a stream).
   */
  async read(
    store: StreamStore,
    maxCount: number,
  ): Promise<{ events: StoredEvent[]; next: number; end: boolean; skipped: number }> {
    if (this.isAll) {
      this.#skipped = 0;
      const r = await store.readAll({
        direction: "forwards",
        fromPosition: this.#from,
        maxCount,
        ...(this.#filter && { filter: this.#filter, maxScan: MAX_SCAN }),
      });
      return { events: r.events, next: r.nextPosition, end: r.endOfStream, skipped: this.#skipped };
    }
    try {
      const r = await store.readStream(this.#streamId, {
        direction: "forwards",
        fromRevision: this.#from,
        maxCount,
      });
      return { events: r.events, next: r.nextRevision, end: r.endOfStream, skipped: 0 };
    } catch (err) {
      // A source that does not exist (yet) or was deleted has nothing to deliver.
      if (
        err instanceof StoreError &&
        (err.code === "STREAM_NOT_FOUND" || err.code === "STREAM_DELETED")
      )
        return { events: [], next: this.#from, end: true, skipped: 0 };
      throw err;
    }
  }

  /**
   * Moves the cursor after a read, once its events were taken (accept). For $all, what the
   * read scanned counts as read: the last read point becomes the scan's end.
   */
  advance(next: number): void {
    this.#from = next;
    if (this.isAll && next - 1 > this.#lastRead.position)
      this.#lastRead = { point: next - 1, position: next - 1, next };
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
