/**
 * Idempotent appends: when an append's event ids are already the stream's events at the
 * expected place, it is a retry and gets the original result instead of being written again.
 * These are the decisions; finding the ids (a cache of recent ids, an index of every id,
 * reading the stream) is the backend's I/O. Ids are compared as opaque strings, in whatever
 * form the backend keeps them (the log store: 16-byte keys).
 *
 * A retry is looked for where its first id was written: in the recent ids for every expected
 * version (for `exact n`, only at revision n + 1; `decideFromRecentIds`), and, where the backend
 * keeps one, in the index of every id when `findsRetriesById` says so (`decideFromIdIndex`;
 * PostgreSQL finds the id in the stream's rows). So a retry gets its original result however
 * long ago it was made, also when the stream was soft-deleted or recreated since (a `no_stream`
 * append to a recreated stream wrote its first event past revision 0). When the ids are not
 * found, the expected-version check may still send the append to `decideFromStream`
 * (`compare-ids`: the stream has gone past the expected place).
 */
import type { ExpectedVersion, WriteResult } from "./types.js";
import { wrongExpectedVersion, type WrongExpectedVersion } from "./expected-version.js";
import type { StreamView } from "./view.js";

/** The original result of an append. */
export type WriteSuccess = WriteResult & { ok: true };

/** Where an event id was written in the stream. */
export interface WrittenAt {
  readonly revision: number;
  readonly position: number;
}

/** An event of the stream read back: its id and position (consecutive revisions). */
export interface StoredId {
  readonly id: string;
  readonly position: number;
}

export type RetryDecision =
  /** Not a retry (as far as this lookup knows): go on with the expected-version check. */
  | { kind: "new" }
  /** A retry: answer with the original result (once it is committed). */
  | { kind: "idempotent"; result: WriteSuccess }
  /** Some ids match, not all (or not in order): a wrong expected version. */
  | { kind: "conflict"; result: WrongExpectedVersion };

/**
 * Can an append with this expected version be a retry of one whose first event was written at
 * `revision`? `exact n` wrote its first event at n + 1; the others anywhere.
 */
export function mayBeRetryAt(expected: ExpectedVersion, revision: number): boolean {
  return expected.kind !== "exact" || revision === expected.revision + 1;
}

/**
 * Must a retry of this append be looked for in the index of every id (past the recent ones)?
 * Only where the stream has events (`view`: its write view), and never for `exact n`: a stream
 * at n is not past the original append, and one past n has its events from n + 1 compared
 * (`decideFromStream`), whatever happened to the stream since. `no_stream` needs the index: a
 * stream soft-deleted since lets the append through, and on one recreated since the original's
 * events stand past revision 0. So the common appends, `exact` and the first `no_stream` of a
 * stream, never pay for the lookup.
 */
export function findsRetriesById(expected: ExpectedVersion, view: StreamView): boolean {
  return view.last >= 0 && expected.kind !== "exact";
}

/**
 * Against recently written ids (every expected version): `writtenAt(id)` tells where `id` was
 * written in *this* stream (undefined when not known, or known as another stream's event).
 * - New when the first id is not this stream's, or, for `exact n`, is not at revision n + 1
 *   (no ids: new).
 * - Idempotent when every id is this stream's event at consecutive revisions from the first:
 *   next expected version = revision of the last, position = position of the last.
 * - Otherwise (a partial match) a wrong expected version.
 * `view`: the stream's write view now.
 */
export function decideFromRecentIds(
  view: StreamView,
  expected: ExpectedVersion,
  ids: readonly string[],
  writtenAt: (id: string) => WrittenAt | undefined,
): RetryDecision {
  const id0 = ids[0];
  if (id0 === undefined) return { kind: "new" };
  const first = writtenAt(id0);
  if (first === undefined) return { kind: "new" };
  if (!mayBeRetryAt(expected, first.revision)) return { kind: "new" };
  let lastPosition = first.position;
  for (let i = 1; i < ids.length; i++) {
    const e = writtenAt(ids[i] as string);
    if (e?.revision !== first.revision + i)
      return { kind: "conflict", result: wrongExpectedVersion(view) };
    lastPosition = e.position;
  }
  return {
    kind: "idempotent",
    result: {
      ok: true,
      nextExpectedVersion: first.revision + ids.length - 1,
      position: lastPosition,
    },
  };
}

/**
 * Against the index of every id (after `mayBeRetryAt`): the first id was last written at
 * `hit` of this stream, and `stored` are the stream's events from `hit.revision` on (up to
 * ids.length of them; fewer where the stream ends).
 * - New when `stored` does not start with the first id at `hit.position` (a stale entry, or
 *   the event is not this stream's).
 * - Idempotent when the stream's events from there are exactly the ids, in order.
 * - Otherwise (too few events, another id) a wrong expected version.
 * `view`: the stream's write view when the append was made (before any wait or read).
 */
export function decideFromIdIndex(
  view: StreamView,
  hit: WrittenAt,
  ids: readonly string[],
  stored: readonly StoredId[],
): RetryDecision {
  const first = stored[0];
  if (first?.position !== hit.position || first.id !== ids[0]) return { kind: "new" };
  return compareIds(view, hit.revision, ids, stored);
}

/**
 * Against the stream (`exact n` from n + 1, `no_stream` from 0, after `compare-ids`): `stored`
 * are the stream's events from `fromRevision` on (up to ids.length; fewer where it ends).
 * Idempotent when they are exactly the ids, in order; otherwise (no ids, too few events,
 * another id) a wrong expected version.
 * `view`: the stream's write view when the append was made (before any wait or read).
 */
export function decideFromStream(
  view: StreamView,
  fromRevision: number,
  ids: readonly string[],
  stored: readonly StoredId[],
): Exclude<RetryDecision, { kind: "new" }> {
  return compareIds(view, fromRevision, ids, stored);
}

function compareIds(
  view: StreamView,
  fromRevision: number,
  ids: readonly string[],
  stored: readonly StoredId[],
): Exclude<RetryDecision, { kind: "new" }> {
  const last = stored[ids.length - 1];
  if (ids.length === 0 || last === undefined)
    return { kind: "conflict", result: wrongExpectedVersion(view) };
  for (let i = 0; i < ids.length; i++) {
    if (stored[i]?.id !== ids[i]) return { kind: "conflict", result: wrongExpectedVersion(view) };
  }
  return {
    kind: "idempotent",
    result: {
      ok: true,
      nextExpectedVersion: fromRevision + ids.length - 1,
      position: last.position,
    },
  };
}
