import { describe, expect, it } from "vitest";
import { STATES, type StateName } from "./test-support/states.js";
import type { ReadStreamOptions, StreamMetadata } from "./types.js";
import type { StreamView } from "./view.js";
import {
  firstReadable,
  isSoftDeleted,
  maxAgeCutoffMs,
  planStreamRead,
  readMetadata,
  readableRange,
  visibleInAll,
  withinMaxAge,
  type StreamReadPlan,
} from "./visibility.js";

describe("firstReadable", () => {
  it.each<[string, StreamMetadata | null, number, number]>([
    ["no metadata", null, 9, 0],
    ["maxCount", { maxCount: 3 }, 9, 7],
    ["maxCount larger than the stream", { maxCount: 30 }, 9, 0],
    ["truncateBefore", { truncateBefore: 4 }, 9, 4],
    ["truncateBefore past the end", { truncateBefore: 20 }, 9, 20],
    ["both, truncateBefore stricter", { truncateBefore: 8, maxCount: 5 }, 9, 8],
    ["both, maxCount stricter", { truncateBefore: 2, maxCount: 3 }, 9, 7],
    ["soft delete", { truncateBefore: 10, $softDeleted: true }, 9, 10],
    ["a string is ignored", { truncateBefore: "4" } as unknown as StreamMetadata, 9, 0],
    ["maxCount 0 is ignored", { maxCount: 0 }, 9, 0],
    ["a fraction is ignored", { maxCount: 2.5, truncateBefore: 1.5 }, 9, 0],
    ["a negative truncateBefore is ignored", { truncateBefore: -3 }, 9, 0],
  ])("%s", (_name, meta, last, first) => {
    expect(firstReadable(meta, last)).toBe(first);
  });
});

describe("maxAgeCutoffMs", () => {
  it.each<[StreamMetadata | null, number]>([
    [null, -Infinity],
    [{}, -Infinity],
    [{ maxAgeSec: 10 }, 90_000],
    [{ maxAgeSec: 100 }, 0],
    [{ maxAgeSec: 0 }, -Infinity],
    [{ maxAgeSec: 1.5 }, -Infinity],
  ])("%j", (meta, cutoff) => {
    expect(maxAgeCutoffMs(meta, 100_000)).toBe(cutoff);
  });
});

describe("isSoftDeleted", () => {
  it.each<[StreamMetadata | null, number, boolean]>([
    [{ truncateBefore: 5, $softDeleted: true }, 4, true],
    [{ truncateBefore: 5, $softDeleted: true }, 5, false], // written again
    [{ truncateBefore: 0, $softDeleted: true }, -1, true], // deleted before any event
    [{ truncateBefore: 5 }, 4, false], // truncated, not deleted
    [{ truncateBefore: 5, $softDeleted: "yes" }, 4, false],
    [{ $softDeleted: true }, -1, true], // no truncateBefore counts as 0
    [{ $softDeleted: true }, 0, false],
    [null, 4, false],
  ])("%j at last %i: %s", (meta, last, deleted) => {
    expect(isSoftDeleted(meta, last)).toBe(deleted);
  });
});

describe("readMetadata", () => {
  it("ignores the metadata of metadata streams", () => {
    expect(readMetadata("s", { maxCount: 1 })).toEqual({ maxCount: 1 });
    expect(readMetadata("$$s", { maxCount: 1 })).toBeNull();
    expect(readMetadata("$s", { maxCount: 1 })).toEqual({ maxCount: 1 });
  });
});

describe("readableRange", () => {
  const NOW = 1_000_000;
  it.each<[StateName, { first: number; last: number } | string]>([
    ["absent", "STREAM_NOT_FOUND"],
    ["exists", { first: 0, last: 4 }],
    ["softDeleted", "STREAM_NOT_FOUND"],
    ["recreated", { first: 5, last: 5 }],
    ["tombstoned", "STREAM_DELETED"],
    ["metadataOnly", "STREAM_NOT_FOUND"],
  ])("%s stream", (state, want) => {
    let got: unknown;
    try {
      got = readableRange("s", STATES[state], NOW);
    } catch (err) {
      got = (err as { code: string }).code;
    }
    expect(got).toEqual(typeof want === "string" ? want : { ...want, cutoffMs: -Infinity });
  });

  it("applies maxCount, truncateBefore and maxAgeSec", () => {
    const view = { last: 9, tombstoned: false, meta: { maxCount: 4, maxAgeSec: 60 } };
    expect(readableRange("s", view, NOW)).toEqual({ first: 6, last: 9, cutoffMs: NOW - 60_000 });
  });

  it("reads a metadata stream whatever its metadata says", () => {
    const view = { last: 2, tombstoned: false, meta: { truncateBefore: 9, $softDeleted: true } };
    expect(() => readableRange("s", view, NOW)).toThrow("stream s not found");
    expect(readableRange("$$s", view, NOW)).toEqual({ first: 0, last: 2, cutoffMs: -Infinity });
  });

  it("names the stream in its errors", () => {
    expect(() => readableRange("a-1", STATES.tombstoned, NOW)).toThrow(
      expect.objectContaining({ message: "stream a-1 is deleted", streamId: "a-1" }),
    );
    expect(() => readableRange("a-1", STATES.absent, NOW)).toThrow(
      expect.objectContaining({ message: "stream a-1 not found", streamId: "a-1" }),
    );
  });
});

describe("withinMaxAge", () => {
  it("keeps events created at or after the cutoff", () => {
    expect(withinMaxAge(100, { cutoffMs: 100 })).toBe(true);
    expect(withinMaxAge(99, { cutoffMs: 100 })).toBe(false);
    expect(withinMaxAge(0, { cutoffMs: -Infinity })).toBe(true);
  });
});

describe("planStreamRead", () => {
  const range = { first: 3, last: 9, cutoffMs: -Infinity };
  const opts = (
    direction: "forwards" | "backwards",
    fromRevision: number | "end",
    maxCount: number,
  ): ReadStreamOptions => ({ direction, fromRevision, maxCount });
  const plan = (from: number, to: number, nextRevision: number, endOfStream: boolean) => ({
    from,
    to,
    nextRevision,
    endOfStream,
  });
  it.each<[string, ReadStreamOptions, StreamReadPlan]>([
    ["forwards from the start", opts("forwards", 0, 2), plan(3, 4, 5, false)],
    ["forwards in the middle", opts("forwards", 5, 2), plan(5, 6, 7, false)],
    ["forwards to the end", opts("forwards", 8, 5), plan(8, 9, 10, true)],
    ["forwards from the end", opts("forwards", "end", 5), plan(10, 9, 10, true)],
    ["forwards past the end", opts("forwards", 20, 5), plan(20, 19, 20, true)],
    ["backwards from the end", opts("backwards", "end", 2), plan(8, 9, 7, false)],
    ["backwards past the end", opts("backwards", 50, 2), plan(8, 9, 7, false)],
    ["backwards to the first", opts("backwards", 5, 10), plan(3, 5, 2, true)],
    ["backwards exactly to the first", opts("backwards", 4, 2), plan(3, 4, 2, true)],
    ["backwards below the first", opts("backwards", 2, 2), plan(2, 1, -1, true)],
  ])("%s", (_name, options, want) => {
    expect(planStreamRead(options, range)).toEqual(want);
  });
});

describe("visibleInAll", () => {
  const NOW = 1_000_000;
  const at = (streamId: string, revision: number, createdMs = NOW) => ({
    streamId,
    revision,
    createdMs,
  });
  const view = (last: number, meta: StreamMetadata | null, tombstoned = false): StreamView => ({
    last,
    tombstoned,
    meta,
  });
  it.each<[string, ReturnType<typeof at>, StreamView, boolean]>([
    ["no metadata", at("s", 0), view(4, null), true],
    ["tombstoned", at("s", 4), view(4, null, true), false],
    ["tombstoned metadata stream", at("$$s", 0), view(0, null, true), false],
    ["below truncateBefore", at("s", 1), view(4, { truncateBefore: 2 }), false],
    ["at truncateBefore", at("s", 2), view(4, { truncateBefore: 2 }), true],
    ["beyond maxCount", at("s", 1), view(4, { maxCount: 3 }), false],
    ["within maxCount", at("s", 2), view(4, { maxCount: 3 }), true],
    ["older than maxAgeSec", at("s", 4, NOW - 61_000), view(4, { maxAgeSec: 60 }), false],
    ["within maxAgeSec", at("s", 4, NOW - 60_000), view(4, { maxAgeSec: 60 }), true],
    ["soft-deleted", at("s", 4), STATES.softDeleted, false],
    ["written after a soft delete", at("s", 5), STATES.recreated, true],
    ["before a soft delete, recreated", at("s", 4), STATES.recreated, false],
    ["metadata stream with metadata", at("$$s", 0), view(0, { truncateBefore: 5 }), true],
    ["unknown stream", at("s", 0), STATES.absent, true],
  ])("%s: %s", (_name, event, v, visible) => {
    expect(visibleInAll(event, v, NOW)).toBe(visible);
  });
});
