import { describe, expect, it } from "vitest";
import {
  decideFromIdIndex,
  decideFromRecentIds,
  decideFromStream,
  findsRetriesById,
  mayBeRetryAt,
  type RetryDecision,
  type StoredId,
  type WrittenAt,
} from "./idempotency.js";
import {
  ANY,
  NO_STREAM,
  STATES,
  STREAM_EXISTS,
  conflict as wrongVersion,
  exact,
  type StateName,
} from "./test-support/states.js";
import type { ExpectedVersion } from "./types.js";

const view = STATES.exists; // revisions 0..4
const conflict: RetryDecision = wrongVersion(true, 4);
const idempotent = (next: number, position: number): RetryDecision => ({
  kind: "idempotent",
  result: { ok: true, nextExpectedVersion: next, position },
});
const NEW: RetryDecision = { kind: "new" };

/** This stream's events: id `e<r>` at revision r, position 100 * r. */
const written = (id: string): WrittenAt | undefined => {
  const m = /^e(\d+)$/.exec(id);
  return m ? { revision: Number(m[1]), position: 100 * Number(m[1]) } : undefined;
};
const stored = (...revisions: number[]): StoredId[] =>
  revisions.map((r) => ({ id: `e${r}`, position: 100 * r }));

describe("mayBeRetryAt", () => {
  it.each<[ExpectedVersion, number, boolean]>([
    [ANY, 0, true],
    [ANY, 7, true],
    [{ kind: "stream_exists" }, 3, true],
    // A no_stream append to a recreated stream wrote its first event past revision 0.
    [{ kind: "no_stream" }, 0, true],
    [{ kind: "no_stream" }, 5, true],
    [exact(3), 4, true],
    [exact(3), 3, false],
    [exact(3), 5, false],
  ])("%j, first id at %i: %s", (expected, revision, yes) => {
    expect(mayBeRetryAt(expected, revision)).toBe(yes);
  });
});

describe("findsRetriesById", () => {
  it.each<[StateName, ExpectedVersion, boolean]>([
    // No events: no append of this stream to retry.
    ["absent", ANY, false],
    ["absent", NO_STREAM, false],
    ["metadataOnly", NO_STREAM, false],
    ["exists", ANY, true],
    ["exists", STREAM_EXISTS, true],
    // A no_stream retry: on a live stream its events may stand past revision 0 (recreated),
    // on a soft-deleted one the expected version lets it through.
    ["exists", NO_STREAM, true],
    ["softDeleted", NO_STREAM, true],
    ["recreated", NO_STREAM, true],
    // exact n: the stream is at n (not a retry) or past it (compared from n + 1).
    ["exists", exact(4), false],
    ["exists", exact(2), false],
    ["softDeleted", exact(2), false],
  ])("%s, %j: %s", (state, expected, yes) => {
    expect(findsRetriesById(expected, STATES[state])).toBe(yes);
  });
});

describe("decideFromRecentIds", () => {
  it.each<[string, ExpectedVersion, string[], RetryDecision]>([
    ["full match", ANY, ["e2", "e3", "e4"], idempotent(4, 400)],
    ["full match of one event", ANY, ["e4"], idempotent(4, 400)],
    ["exact n: the ids from n + 1", exact(1), ["e2", "e3"], idempotent(3, 300)],
    ["exact n: the first id elsewhere is not a retry", exact(0), ["e2", "e3"], NEW],
    ["stream_exists: full match", { kind: "stream_exists" }, ["e1"], idempotent(1, 100)],
    // Recent ids are not checked against revision 0 for no_stream (see the README of streams/).
    ["no_stream: a full match anywhere", { kind: "no_stream" }, ["e3", "e4"], idempotent(4, 400)],
    ["first id unknown", ANY, ["x", "e3"], NEW],
    ["no ids", ANY, [], NEW],
    ["partial: a later id unknown", ANY, ["e2", "x"], conflict],
    ["partial: a later id out of order", ANY, ["e2", "e4"], conflict],
    ["partial: a later id repeated", ANY, ["e2", "e2"], conflict],
  ])("%s", (_name, expected, ids, want) => {
    expect(decideFromRecentIds(view, expected, ids, written)).toEqual(want);
  });

  it("answers a partial match with the stream's state as given", () => {
    expect(decideFromRecentIds(STATES.softDeleted, ANY, ["e1", "x"], written)).toEqual({
      kind: "conflict",
      result: { ok: false, wrongExpectedVersion: { streamExists: false, actualRevision: 4 } },
    });
  });
});

describe("decideFromIdIndex", () => {
  const hit = { revision: 2, position: 200 };
  it.each<[string, string[], StoredId[], RetryDecision]>([
    ["full match", ["e2", "e3"], stored(2, 3), idempotent(3, 300)],
    ["full match of one event", ["e2"], stored(2), idempotent(2, 200)],
    ["partial: the stream ends first", ["e2", "e3", "e4", "e5"], stored(2, 3, 4), conflict],
    ["partial: another id follows", ["e2", "x"], stored(2, 3), conflict],
    ["the event there is another", ["e2"], [{ id: "other", position: 200 }], NEW],
    ["the event is elsewhere (stale entry)", ["e2"], [{ id: "e2", position: 999 }], NEW],
    ["nothing read", ["e2"], [], NEW],
  ])("%s", (_name, ids, read, want) => {
    expect(decideFromIdIndex(view, hit, ids, read)).toEqual(want);
  });
});

describe("decideFromStream", () => {
  it.each<[string, number, string[], StoredId[], RetryDecision]>([
    ["full match from 0", 0, ["e0", "e1"], stored(0, 1), idempotent(1, 100)],
    ["full match from n + 1", 3, ["e3", "e4"], stored(3, 4), idempotent(4, 400)],
    ["mismatch", 0, ["e0", "x"], stored(0, 1), conflict],
    ["mismatch of the first", 0, ["x", "e1"], stored(0, 1), conflict],
    ["too few events", 3, ["e3", "e4", "e5"], stored(3, 4), conflict],
    ["no ids", 3, [], [], conflict],
  ])("%s", (_name, from, ids, read, want) => {
    expect(decideFromStream(view, from, ids, read)).toEqual(want);
  });
});
