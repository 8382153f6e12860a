/**
 * How many bytes of events one page of a read holds. A page is bounded by its count
 * (`maxCount`, up to 4,096) and by its bytes: events may be as large as an append (1 MiB by
 * default), and 4,096 of them would be gigabytes, read into memory at once by a single request
 * or a catch-up subscription's page. Both stores stop a page before the event that would take
 * it past `maxBytes` (it always holds one event, however large), and say where the next page
 * starts, so a reader that pages on until `endOfStream` reads everything.
 */
import type { StoredEvent } from "./types.js";

/** The bytes a page may hold when the reader does not say (`maxBytes`). */
export const READ_PAGE_BYTES = 4 * 1024 * 1024;

/**
 * An event's bytes as pages count them: its data, metadata and names, and about what its
 * other fields take on the wire. Also what a native frame of events is measured by.
 */
export function eventBytes(
  e: Pick<StoredEvent, "data" | "metadata" | "streamId" | "type">,
): number {
  return e.data.byteLength + e.metadata.byteLength + e.streamId.length + e.type.length + 96;
}

/**
 * Counts a page's bytes: `fits(event)` says whether an event may join the page (always the
 * first; then while the page stays within `maxBytes`), and counts it when it does.
 */
export class PageBytes {
  #bytes = 0;
  #events = 0;

  constructor(private readonly maxBytes: number) {}

  fits(e: Pick<StoredEvent, "data" | "metadata" | "streamId" | "type">): boolean {
    return this.fitsSize(eventBytes(e));
  }

  /** `fits` for an event of `size` bytes, as `eventBytes` counts them. */
  fitsSize(size: number): boolean {
    if (this.#events > 0 && this.#bytes + size > this.maxBytes) return false;
    this.#bytes += size;
    this.#events++;
    return true;
  }
}
