/**
 * The expected-version check of appends and deletes, against the write view of the stream
 * (every write accepted before this one, committed or not).
 */
import { streamDeleted } from "./errors.js";
import type { ExpectedVersion, WriteResult } from "./types.js";
import type { StreamView } from "./view.js";
import { isSoftDeleted } from "./visibility.js";

/** The answer of a write whose expected version does not hold. */
export type WrongExpectedVersion = WriteResult & { ok: false };

/**
 * Does the stream exist, for expected versions? It has events and is not soft-deleted: a
 * soft-deleted stream counts as absent (`no_stream` recreates it), one with metadata only too.
 */
export function streamExists(view: StreamView): boolean {
  return view.last >= 0 && !isSoftDeleted(view.meta, view.last);
}

/** The wrong-expected-version answer for a stream in this state: exists?, last revision. */
export function wrongExpectedVersion(view: StreamView): WrongExpectedVersion {
  return {
    ok: false,
    wrongExpectedVersion: { streamExists: streamExists(view), actualRevision: view.last },
  };
}

export type ExpectedVersionCheck =
  /** The expected version holds: write. */
  | { kind: "write" }
  /** It does not: answer with `result`. */
  | { kind: "conflict"; result: WrongExpectedVersion }
  /**
   * The stream has gone past the expected place: a retry of the append that put it there
   * succeeds (idempotency), so compare the append's event ids with the stream's events from
   * `fromRevision` (`decideFromStream`). Anything else is a conflict.
   */
  | { kind: "compare-ids"; fromRevision: number };

/**
 * The expected version against the stream's write view (a tombstoned stream: STREAM_DELETED,
 * whatever the expected version):
 * - `any`: write.
 * - `stream_exists`: write when the stream exists (`streamExists`), else conflict.
 * - `no_stream`: write when it does not exist; else compare the ids with revisions from 0.
 * - `exact n`: write when n is the last revision; compare the ids with revisions from n + 1
 *   when the stream is past n; conflict when it is not yet at n.
 */
export function checkExpectedVersion(
  streamId: string,
  expected: ExpectedVersion,
  view: StreamView,
): ExpectedVersionCheck {
  if (view.tombstoned) throw streamDeleted(streamId);
  switch (expected.kind) {
    case "any":
      return { kind: "write" };
    case "stream_exists":
      return streamExists(view) ? { kind: "write" } : conflict(view);
    case "no_stream":
      return streamExists(view) ? { kind: "compare-ids", fromRevision: 0 } : { kind: "write" };
    case "exact":
      if (expected.revision === view.last) return { kind: "write" };
      return expected.revision < view.last
        ? { kind: "compare-ids", fromRevision: expected.revision + 1 }
        : conflict(view);
  }
}

/**
 * The same check for a delete, which carries no event ids and so is never a retry: where an
 * append would compare ids, a delete is a conflict.
 */
export function checkDeleteExpectedVersion(
  streamId: string,
  expected: ExpectedVersion,
  view: StreamView,
): Exclude<ExpectedVersionCheck, { kind: "compare-ids" }> {
  const check = checkExpectedVersion(streamId, expected, view);
  return check.kind === "compare-ids" ? conflict(view) : check;
}

function conflict(view: StreamView): { kind: "conflict"; result: WrongExpectedVersion } {
  return { kind: "conflict", result: wrongExpectedVersion(view) };
}
