/**
 * Deletes. A soft delete hides a stream and keeps it writable: it writes the stream's
 * metadata `{ ...current, truncateBefore: last + 1, $softDeleted: true }`; reads give
 * STREAM_NOT_FOUND until an event is written again (`no_stream` / `any` recreate it, revisions
 * continuing). A hard delete writes a tombstone: from then on reads, appends, deletes and
 * metadata writes give STREAM_DELETED, and its events leave `$all`.
 */
import { isMetadataStream } from "@chorus/protocol";
import { invalid, streamDeleted } from "./errors.js";
import { checkDeleteExpectedVersion, type WrongExpectedVersion } from "./expected-version.js";
import { SOFT_DELETED_KEY } from "./metadata.js";
import type { ExpectedVersion, StreamMetadata } from "./types.js";
import type { StreamView } from "./view.js";

/**
 * Writes to a tombstoned stream are refused with STREAM_DELETED; so are writes to the
 * metadata stream `$$name` of a tombstoned `name` (checked with `name` and its state). An
 * append checks this before it looks for a retry: a retry to a deleted stream is refused too.
 */
export function assertNotTombstoned(streamId: string, tombstoned: boolean): void {
  if (tombstoned) throw streamDeleted(streamId);
}

/** The metadata a soft delete writes: the current one, truncated after `last`, flagged. */
export function softDeleteMetadata(current: StreamMetadata | null, last: number): StreamMetadata {
  return { ...(current ?? {}), truncateBefore: last + 1, [SOFT_DELETED_KEY]: true };
}

export type DeleteDecision =
  /** The expected version does not hold: answer with `result`, write nothing. */
  | { kind: "conflict"; result: WrongExpectedVersion }
  /** Hard delete: write a tombstone; the result's next expected version is the last revision. */
  | { kind: "tombstone"; nextExpectedVersion: number }
  /** Soft delete: write `metadata` to `$$name`; next expected version: the last revision. */
  | { kind: "soft-delete"; metadata: StreamMetadata; nextExpectedVersion: number };

/**
 * A delete of `streamId` (arguments validated) against its write view: STREAM_DELETED when it
 * is tombstoned already (`checkDeleteExpectedVersion`); a conflict when the expected version does not hold (a delete is
 * never a retry); else a tombstone (hard) or the soft-delete metadata. A metadata stream
 * cannot be soft-deleted (INVALID_ARGUMENT), only hard-deleted.
 */
export function decideDelete(
  streamId: string,
  expected: ExpectedVersion,
  view: StreamView,
  hard: boolean,
): DeleteDecision {
  const check = checkDeleteExpectedVersion(streamId, expected, view);
  if (check.kind === "conflict") return check;
  if (hard) return { kind: "tombstone", nextExpectedVersion: view.last };
  if (isMetadataStream(streamId))
    throw invalid("a metadata stream cannot be soft-deleted", streamId);
  return {
    kind: "soft-delete",
    metadata: softDeleteMetadata(view.meta, view.last),
    nextExpectedVersion: view.last,
  };
}
