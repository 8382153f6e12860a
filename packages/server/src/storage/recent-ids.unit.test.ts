import { describe, expect, it } from "vitest";
import { IdempotencyWindow } from "./recent-ids.js";

describe("idempotency window", () => {
  const s = "s";
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
