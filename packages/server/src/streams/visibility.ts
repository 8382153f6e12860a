/**
 * What readers see of a stream, given its metadata and deletes: `truncateBefore`, `maxCount`
 * and `maxAgeSec` hide events; a soft delete hides the whole stream (until it is written
 * again); a hard delete (tombstone) removes it for good. The same rules serve stream reads and
 * `$all`.
 */
import { isMetadataStream } from "@chorus/protocol";
import { SOFT_DELETED_KEY, metadataInt } from "./metadata.js";
import { streamDeleted, streamNotFound } from "./errors.js";
import type { ReadStreamOptions, StreamMetadata } from "./types.js";
import type { StreamView } from "./view.js";

/**
 * First revision readers may see: the larger of `truncateBefore` (an integer >= 0) and
 * `last - maxCount + 1` (`maxCount` an integer >= 1); 0 without metadata. Invalid values are
 * ignored.
 */
export function firstReadable(meta: StreamMetadata | null, last: number): number {
  if (meta === null) return 0;
  let first = 0;
  const tb = metadataInt(meta.truncateBefore, 0);
  if (tb !== undefined) first = Math.max(first, tb);
  const mc = metadataInt(meta.maxCount, 1);
  if (mc !== undefined) first = Math.max(first, last - mc + 1);
  return first;
}

/**
 * Events created before this time (ms since the epoch) are hidden: `nowMs - maxAgeSec * 1000`
 * (`maxAgeSec` an integer >= 1); -Infinity (nothing hidden) without one.
 */
export function maxAgeCutoffMs(meta: StreamMetadata | null, nowMs: number): number {
  const age = metadataInt(meta?.maxAgeSec, 1);
  return age === undefined ? -Infinity : nowMs - age * 1000;
}

/**
 * Soft-deleted: the metadata carries `$softDeleted: true` and no event has been written since
 * the delete (last < truncateBefore). Writing again recreates the stream (revisions continue).
 */
export function isSoftDeleted(meta: StreamMetadata | null, last: number): boolean {
  if (meta === null || meta[SOFT_DELETED_KEY] !== true) return false;
  return last < (metadataInt(meta.truncateBefore, 0) ?? 0);
}

/**
 * The metadata that applies to reads of `streamId`: its own, except for metadata streams
 * `$$name`, which metadata never truncates, ages out or soft-deletes.
 */
export function readMetadata(streamId: string, meta: StreamMetadata | null): StreamMetadata | null {
  return isMetadataStream(streamId) ? null : meta;
}

/** The revisions of a readable stream that readers may see. */
export interface ReadableRange {
  /** First readable revision (metadata: truncateBefore, maxCount). */
  readonly first: number;
  /** Last revision of the stream. */
  readonly last: number;
  /** Events created before this (ms since the epoch) are hidden (maxAgeSec). */
  readonly cutoffMs: number;
}

/**
 * Whether `streamId` can be read, and what of it: STREAM_DELETED when it is tombstoned;
 * STREAM_NOT_FOUND when it has no events (absent, or metadata only) or is soft-deleted.
 * `view` is the committed view (what readers see).
 */
export function readableRange(streamId: string, view: StreamView, nowMs: number): ReadableRange {
  if (view.tombstoned) throw streamDeleted(streamId);
  const meta = readMetadata(streamId, view.meta);
  if (view.last < 0 || isSoftDeleted(meta, view.last)) {
    throw streamNotFound(streamId);
  }
  return {
    first: firstReadable(meta, view.last),
    last: view.last,
    cutoffMs: maxAgeCutoffMs(meta, nowMs),
  };
}

/** Is an event younger than the cutoff of its stream (maxAgeSec)? */
export function withinMaxAge(createdMs: number, stream: Pick<ReadableRange, "cutoffMs">): boolean {
  return createdMs >= stream.cutoffMs;
}

/**
 * One page of a stream read: the revisions `from..to` to read (ascending; none when
 * `to < from`; a backwards page delivers them in reverse), and what the result says.
 */
export interface StreamReadPlan {
  readonly from: number;
  readonly to: number;
  /** Where the next page starts (same direction); -1 backwards past the first revision. */
  readonly nextRevision: number;
  /** No further readable event in this direction right now. */
  readonly endOfStream: boolean;
}

/**
 * Pages a read of a readable stream (options validated): forwards from
 * max(fromRevision, first) ("end": last + 1) up to maxCount revisions; backwards from
 * min(fromRevision, last) ("end": last) down to maxCount revisions, never below `first`.
 * Events the page holds may still be hidden by `withinMaxAge`.
 */
export function planStreamRead(options: ReadStreamOptions, stream: ReadableRange): StreamReadPlan {
  const { direction, fromRevision, maxCount } = options;
  const { first, last } = stream;
  if (direction === "forwards") {
    const start = Math.max(fromRevision === "end" ? last + 1 : fromRevision, first);
    if (start > last) return { from: start, to: start - 1, nextRevision: start, endOfStream: true };
    const hi = Math.min(start + maxCount - 1, last);
    return { from: start, to: hi, nextRevision: hi + 1, endOfStream: hi >= last };
  }
  const from = fromRevision === "end" ? last : Math.min(fromRevision, last);
  if (from < first) return { from, to: from - 1, nextRevision: -1, endOfStream: true };
  const lo = Math.max(from - maxCount + 1, first);
  return { from: lo, to: from, nextRevision: lo - 1, endOfStream: lo <= first };
}

/**
 * Is an event of `$all` visible? Not when its stream is tombstoned; otherwise when its
 * revision is readable (truncateBefore, maxCount: a soft-deleted stream's events are all
 * below truncateBefore) and it is within maxAgeSec. Events of metadata streams are always
 * visible (unless that stream itself is tombstoned). `view` is the committed view of the
 * event's stream.
 */
export function visibleInAll(
  event: { readonly streamId: string; readonly revision: number; readonly createdMs: number },
  view: StreamView,
  nowMs: number,
): boolean {
  if (view.tombstoned) return false;
  const meta = readMetadata(event.streamId, view.meta);
  if (meta === null) return true;
  if (event.revision < firstReadable(meta, view.last)) return false;
  return event.createdMs >= maxAgeCutoffMs(meta, nowMs);
}
