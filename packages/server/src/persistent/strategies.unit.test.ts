import { describe, expect, it } from "vitest";
import { firstWithRoom, hash32, nextRoundRobin, pinnedOwner } from "./strategies.js";

const consumers = (names: string[]) => names.map((n) => ({ hashKey: n }));
const streams = Array.from({ length: 2_000 }, (_, i) => `stream-${i}`);

describe("pinnedOwner (rendezvous hashing)", () => {
  it("is a pure function of the stream and the consumer set, whatever their order", () => {
    const a = consumers(["a", "b", "c"]);
    const b = consumers(["c", "a", "b"]);
    for (const s of streams.slice(0, 200))
      expect(pinnedOwner(s, a)?.hashKey).toBe(pinnedOwner(s, b)?.hashKey);
  });

  it("spreads streams over the consumers", () => {
    const cs = consumers(["a", "b", "c", "d"]);
    const counts = new Map<string, number>();
    for (const s of streams) {
      const o = pinnedOwner(s, cs)!.hashKey;
      counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    for (const c of cs) expect(counts.get(c.hashKey)).toBeGreaterThan(streams.length / 4 / 1.4);
  });

  it("moves only the streams the joining consumer wins, and only those of a leaving one", () => {
    const before = consumers(["a", "b", "c"]);
    const after = consumers(["a", "b", "c", "d"]);
    let moved = 0;
    for (const s of streams) {
      const x = pinnedOwner(s, before)!.hashKey;
      const y = pinnedOwner(s, after)!.hashKey;
      if (x !== y) {
        moved++;
        expect(y).toBe("d");
      }
    }
    // About a quarter of the streams go to the newcomer.
    expect(moved).toBeGreaterThan(streams.length / 4 / 1.4);
    expect(moved).toBeLessThan((streams.length / 4) * 1.4);
    // And when "b" leaves, only b's streams move.
    const without = consumers(["a", "c", "d"]);
    for (const s of streams) {
      const x = pinnedOwner(s, after)!.hashKey;
      if (x !== "b") expect(pinnedOwner(s, without)!.hashKey).toBe(x);
    }
  });

  it("has no owner without consumers", () => {
    expect(pinnedOwner("s", [])).toBeUndefined();
  });
});

describe("RoundRobin and DispatchToSingle", () => {
  it.each([
    { free: [1, 1, 1], last: -1, next: 0 },
    { free: [1, 1, 1], last: 0, next: 1 },
    { free: [1, 1, 1], last: 2, next: 0 },
    { free: [1, 0, 1], last: 0, next: 2 },
    { free: [0, 0, 1], last: 2, next: 2 },
    { free: [0, 0, 0], last: 1, next: -1 },
  ])("nextRoundRobin($free, $last) = $next", ({ free, last, next }) => {
    expect(nextRoundRobin(free, last)).toBe(next);
  });

  it.each([
    { free: [3, 1], first: 0 },
    { free: [0, 1], first: 1 },
    { free: [0, 0], first: -1 },
  ])("firstWithRoom($free) = $first", ({ free, first }) => {
    expect(firstWithRoom(free)).toBe(first);
  });
});

it("hash32 is stable and spreads short keys", () => {
  expect(hash32("abc")).toBe(hash32("abc"));
  expect(new Set(streams.map(hash32)).size).toBe(streams.length);
});
