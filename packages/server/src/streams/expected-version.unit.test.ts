import { describe, expect, it } from "vitest";
import {
  checkDeleteExpectedVersion,
  checkExpectedVersion,
  streamExists,
  wrongExpectedVersion,
  type ExpectedVersionCheck,
} from "./expected-version.js";
import {
  ANY,
  NO_STREAM,
  STATES,
  STREAM_EXISTS,
  conflict,
  exact,
  outcome,
  type StateName,
} from "./test-support/states.js";
import type { ExpectedVersion } from "./types.js";

const write: ExpectedVersionCheck = { kind: "write" };
const compare = (fromRevision: number): ExpectedVersionCheck => ({
  kind: "compare-ids",
  fromRevision,
});
const DELETED = "STREAM_DELETED";

/** state × expected version → the append's check (or the error code it throws). */
const APPEND: Array<[StateName, string, ExpectedVersion, ExpectedVersionCheck | typeof DELETED]> = [
  ["absent", "any", ANY, write],
  ["absent", "no_stream", NO_STREAM, write],
  ["absent", "stream_exists", STREAM_EXISTS, conflict(false, -1)],
  ["absent", "exact 0", exact(0), conflict(false, -1)],
  ["exists", "any", ANY, write],
  ["exists", "no_stream", NO_STREAM, compare(0)],
  ["exists", "stream_exists", STREAM_EXISTS, write],
  ["exists", "exact last", exact(4), write],
  ["exists", "exact behind", exact(2), compare(3)],
  ["exists", "exact 0", exact(0), compare(1)],
  ["exists", "exact ahead", exact(5), conflict(true, 4)],
  ["softDeleted", "any", ANY, write],
  ["softDeleted", "no_stream", NO_STREAM, write],
  ["softDeleted", "stream_exists", STREAM_EXISTS, conflict(false, 4)],
  ["softDeleted", "exact last", exact(4), write],
  ["softDeleted", "exact behind", exact(2), compare(3)],
  ["softDeleted", "exact ahead", exact(5), conflict(false, 4)],
  ["recreated", "any", ANY, write],
  ["recreated", "no_stream", NO_STREAM, compare(0)],
  ["recreated", "stream_exists", STREAM_EXISTS, write],
  ["recreated", "exact last", exact(5), write],
  ["recreated", "exact before the delete", exact(4), compare(5)],
  ["recreated", "exact ahead", exact(6), conflict(true, 5)],
  ["tombstoned", "any", ANY, DELETED],
  ["tombstoned", "no_stream", NO_STREAM, DELETED],
  ["tombstoned", "stream_exists", STREAM_EXISTS, DELETED],
  ["tombstoned", "exact last", exact(4), DELETED],
  ["tombstoned", "exact ahead", exact(5), DELETED],
  ["metadataOnly", "any", ANY, write],
  ["metadataOnly", "no_stream", NO_STREAM, write],
  ["metadataOnly", "stream_exists", STREAM_EXISTS, conflict(false, -1)],
  ["metadataOnly", "exact 0", exact(0), conflict(false, -1)],
];

describe("checkExpectedVersion (appends)", () => {
  it.each(APPEND)("%s stream, %s", (state, _name, expected, want) => {
    expect(outcome(() => checkExpectedVersion("s", expected, STATES[state]))).toEqual(want);
  });

  it("names the deleted stream", () => {
    expect(() => checkExpectedVersion("orders-1", ANY, STATES.tombstoned)).toThrow(
      expect.objectContaining({ streamId: "orders-1", message: "stream orders-1 is deleted" }),
    );
  });
});

describe("checkDeleteExpectedVersion", () => {
  // A delete carries no ids: where an append would compare them, a delete is a conflict.
  it.each(APPEND)("%s stream, %s", (state, _name, expected, want) => {
    const view = STATES[state];
    const got = outcome(() => checkDeleteExpectedVersion("s", expected, view));
    if (typeof want === "object" && want.kind === "compare-ids")
      expect(got).toEqual({ kind: "conflict", result: wrongExpectedVersion(view) });
    else expect(got).toEqual(want);
  });
});

describe("streamExists", () => {
  it.each<[StateName, boolean]>([
    ["absent", false],
    ["exists", true],
    ["softDeleted", false],
    ["recreated", true],
    ["metadataOnly", false],
  ])("%s: %s", (state, exists) => {
    expect(streamExists(STATES[state])).toBe(exists);
  });

  it("counts a stream truncated past its end without the soft-delete flag as existing", () => {
    expect(streamExists({ last: 4, tombstoned: false, meta: { truncateBefore: 9 } })).toBe(true);
  });
});
