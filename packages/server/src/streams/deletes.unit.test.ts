import { describe, expect, it } from "vitest";
import {
  assertNotTombstoned,
  decideDelete,
  softDeleteMetadata,
  type DeleteDecision,
} from "./deletes.js";
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

const tombstone = (next: number): DeleteDecision => ({
  kind: "tombstone",
  nextExpectedVersion: next,
});
/** The soft delete of a stream whose last revision is `last` and metadata `meta`. */
const soft = (last: number, meta: object = {}): DeleteDecision => ({
  kind: "soft-delete",
  nextExpectedVersion: last,
  metadata: { ...meta, truncateBefore: last + 1, $softDeleted: true },
});
const DELETED = "STREAM_DELETED";

describe("decideDelete", () => {
  // [state, expected, hard delete, soft delete]
  it.each<[StateName, string, ExpectedVersion, DeleteDecision | string, DeleteDecision | string]>([
    ["absent", "any", ANY, tombstone(-1), soft(-1)],
    ["absent", "no_stream", NO_STREAM, tombstone(-1), soft(-1)],
    ["absent", "stream_exists", STREAM_EXISTS, conflict(false, -1), conflict(false, -1)],
    ["absent", "exact 0", exact(0), conflict(false, -1), conflict(false, -1)],
    ["exists", "any", ANY, tombstone(4), soft(4)],
    ["exists", "no_stream", NO_STREAM, conflict(true, 4), conflict(true, 4)],
    ["exists", "stream_exists", STREAM_EXISTS, tombstone(4), soft(4)],
    ["exists", "exact last", exact(4), tombstone(4), soft(4)],
    ["exists", "exact behind (never a retry)", exact(3), conflict(true, 4), conflict(true, 4)],
    ["exists", "exact ahead", exact(5), conflict(true, 4), conflict(true, 4)],
    ["softDeleted", "no_stream", NO_STREAM, tombstone(4), soft(4)],
    ["softDeleted", "stream_exists", STREAM_EXISTS, conflict(false, 4), conflict(false, 4)],
    ["softDeleted", "exact last", exact(4), tombstone(4), soft(4)],
    ["recreated", "exact last", exact(5), tombstone(5), soft(5)],
    ["recreated", "no_stream", NO_STREAM, conflict(true, 5), conflict(true, 5)],
    ["tombstoned", "any", ANY, DELETED, DELETED],
    ["tombstoned", "exact last", exact(4), DELETED, DELETED],
    ["tombstoned", "no_stream", NO_STREAM, DELETED, DELETED],
    ["metadataOnly", "any", ANY, tombstone(-1), soft(-1, { maxCount: 3 })],
    ["metadataOnly", "stream_exists", STREAM_EXISTS, conflict(false, -1), conflict(false, -1)],
  ])("%s stream, %s", (state, _name, expected, hard, softly) => {
    expect(outcome(() => decideDelete("s", expected, STATES[state], true))).toEqual(hard);
    expect(outcome(() => decideDelete("s", expected, STATES[state], false))).toEqual(softly);
  });

  it("refuses to soft-delete a metadata stream, after the expected version, and hard-deletes it", () => {
    const view = STATES.exists;
    expect(() => decideDelete("$$s", ANY, view, false)).toThrow(
      expect.objectContaining({
        code: "INVALID_ARGUMENT",
        message: "a metadata stream cannot be soft-deleted",
        streamId: "$$s",
      }),
    );
    expect(decideDelete("$$s", NO_STREAM, view, false)).toEqual(conflict(true, 4));
    expect(decideDelete("$$s", ANY, view, true)).toEqual(tombstone(4));
  });
});

describe("softDeleteMetadata", () => {
  it("keeps the other keys and truncates after the last revision", () => {
    expect(softDeleteMetadata({ maxAgeSec: 60, truncateBefore: 2, custom: "x" }, 9)).toEqual({
      maxAgeSec: 60,
      truncateBefore: 10,
      custom: "x",
      $softDeleted: true,
    });
    expect(softDeleteMetadata(null, -1)).toEqual({ truncateBefore: 0, $softDeleted: true });
  });
});

describe("assertNotTombstoned", () => {
  it("refuses a tombstoned stream with STREAM_DELETED naming it", () => {
    expect(() => assertNotTombstoned("a", false)).not.toThrow();
    expect(() => assertNotTombstoned("a", true)).toThrow(
      expect.objectContaining({
        code: "STREAM_DELETED",
        message: "stream a is deleted",
        streamId: "a",
      }),
    );
  });
});
