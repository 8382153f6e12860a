import type { Direction } from "../types.js";

/** One page as the cursor needs to see it. */
export interface PageInfo {
  readonly count: number;
  readonly endOfStream: boolean;
  /** Where the next page starts (next_revision / next_position). */
  readonly next: number;
}

/** The `from` of the next page request: from the end, or from a revision/position. */
export interface PageRequest {
  readonly fromEnd: boolean;
  readonly from: number;
  readonly maxCount: number;
}

/**
 * The paging state of a read, pure: what to ask next, and when the read is over.
 * Only pages that arrived advance it, so a page lost with the connection is simply
 * asked for again from the same place.
 */
export class ReadCursor {
  readonly direction: Direction;
  #fromEnd: boolean;
  #from: number;
  #remaining: number;
  readonly #pageSize: number;
  #done = false;

  constructor(options: {
    direction: Direction;
    from: "start" | "end" | number;
    maxCount: number;
    pageSize: number;
  }) {
    this.direction = options.direction;
    this.#fromEnd = options.from === "end";
    this.#from = typeof options.from === "number" ? options.from : 0;
    this.#remaining = options.maxCount;
    this.#pageSize = Math.max(1, options.pageSize);
    if (this.#remaining <= 0) this.#done = true;
  }

  get done(): boolean {
    return this.#done;
  }

  get remaining(): number {
    return this.#remaining;
  }

  next(): PageRequest {
    return {
      fromEnd: this.#fromEnd,
      from: this.#from,
      maxCount: Math.min(this.#pageSize, this.#remaining),
    };
  }

  /** Advances past a page; returns how many of its events to deliver (maxCount may cut it). */
  advance(page: PageInfo): number {
    const deliver = Math.min(page.count, this.#remaining);
    this.#remaining -= deliver;
    const progressed = this.#fromEnd || page.next !== this.#from;
    this.#fromEnd = false;
    this.#from = page.next;
    // An empty page that moved on is not the end: a filtered read of $all examines a bounded
    // number of records per request and may find no match among them.
    if (page.endOfStream || this.#remaining <= 0 || !progressed) this.#done = true;
    return deliver;
  }
}
