import { describe, expect, it } from "vitest";
import type { StreamMetadata } from "../streams/types.js";
import {
  IdempotencyWindow,
  StreamState,
  decodeSnapshot,
  encodeSnapshot,
  firstReadable,
  isSoftDeleted,
  maxAgeCutoffMs,
} from "./stream-index.js";

describe("idempotency window", () => {
  const s = new StreamState("s");
  it("evicts the oldest ids beyond its capacity and lists oldest first", () => {
    const w = new IdempotencyWindow(3);
    for (const k of ["a", "b", "c", "d", "e"])
      w.add(k, { stream: s, revision: k.charCodeAt(0), position: 0 });
    expect(w.size).toBe(3);
    expect(w.get("a")).toBeUndefined();
    expect(w.get("b")).toBeUndefined();
    expect([...w.list()].map(([k]) => k)).toEqual(["c", "d", "e"]);
  });

  it("moves a re-added id to the newest place", () => {
    const w = new IdempotencyWindow(3);
    for (const k of ["a", "b", "c", "a", "d"])
      w.add(k, { stream: s, revision: 0, position: k === "a" ? 9 : 0 });
    expect([...w.list()].map(([k]) => k)).toEqual(["c", "a", "d"]);
    expect(w.get("a")?.position).toBe(9);
    expect(w.get("b")).toBeUndefined();
  });

  it("stays fast when full (eviction is O(1))", () => {
    const w = new IdempotencyWindow(50_000);
    const t = performance.now();
    for (let i = 0; i < 300_000; i++) w.add(`k${i}`, { stream: s, revision: i, position: i });
    expect(performance.now() - t).toBeLessThan(5_000);
    expect(w.size).toBe(50_000);
    expect(w.get("k250000")?.revision).toBe(250_000);
  });

  it("is disabled with capacity 0", () => {
    const w = new IdempotencyWindow(0);
    w.add("a", { stream: s, revision: 0, position: 0 });
    expect(w.get("a")).toBeUndefined();
  });
});

describe("metadata rules", () => {
  it.each<[string, StreamMetadata | null, number, number]>([
    ["no metadata", null, 9, 0],
    ["maxCount", { maxCount: 3 }, 9, 7],
    ["maxCount larger than the stream", { maxCount: 30 }, 9, 0],
    ["truncateBefore", { truncateBefore: 4 }, 9, 4],
    ["both, the stricter wins", { truncateBefore: 8, maxCount: 5 }, 9, 8],
    [
      "invalid values are ignored",
      { truncateBefore: "4", maxCount: 0 } as unknown as StreamMetadata,
      9,
      0,
    ],
  ])("first readable revision with %s", (_n, meta, last, first) => {
    expect(firstReadable(meta, last)).toBe(first);
  });

  it("knows soft-deleted streams and max age", () => {
    expect(isSoftDeleted({ truncateBefore: 5, $softDeleted: true }, 4)).toBe(true);
    expect(isSoftDeleted({ truncateBefore: 5, $softDeleted: true }, 5)).toBe(false);
    expect(isSoftDeleted({ truncateBefore: 5 }, 4)).toBe(false);
    expect(maxAgeCutoffMs({ maxAgeSec: 10 }, 100_000)).toBe(90_000);
    expect(maxAgeCutoffMs(null, 100_000)).toBe(-Infinity);
  });
});

describe("index snapshot", () => {
  it("round-trips the committed view and rejects damage", () => {
    const a = new StreamState("a");
    a.last = 40;
    a.lastPos = 4000;
    a.sparse.push(0, 3200, 9999); // the last entry is beyond the committed view
    a.meta = { maxCount: 2 };
    const b = new StreamState("b");
    b.tombstoned = true;
    const w = new IdempotencyWindow(10);
    w.add("0123456789abcdef", { stream: a, revision: 40, position: 4000 });
    w.add("fedcba9876543210", { stream: a, revision: 41, position: 5000 }); // not committed
    const bytes = encodeSnapshot(4100, 41, [a, b], w);
    const snap = decodeSnapshot(bytes);
    expect(snap?.position).toBe(4100);
    expect(snap?.events).toBe(41);
    const ra = snap?.streams.get("a");
    expect(ra).toMatchObject({
      last: 40,
      wLast: 40,
      lastPos: 4000,
      meta: { maxCount: 2 },
      sparse: [0, 3200],
    });
    expect(snap?.streams.get("b")?.tombstoned).toBe(true);
    expect(snap?.window.map(([k, e]) => [k, e.revision])).toEqual([["0123456789abcdef", 40]]);
    bytes[10] = (bytes[10] ?? 0) ^ 1;
    expect(decodeSnapshot(bytes)).toBeNull();
  });
});
