import { describe, expect, it } from "vitest";
import { PendingIds } from "./pending-ids.js";

/** A 16-byte id key (latin1) for a number. */
function id(n: number): string {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(n, 12);
  return b.toString("latin1");
}

describe("PendingIds", () => {
  it("finds what was added, the latest occurrence of an id first", () => {
    const p = new PendingIds();
    expect(p.add(id(1), 0, 0)).toBe(true);
    expect(p.add(id(2), 100, 0)).toBe(true);
    expect(p.add(id(1), 200, 5)).toBe(true);
    expect(p.get(id(1))).toEqual({ position: 200, revision: 5 });
    expect(p.get(id(2))).toEqual({ position: 100, revision: 0 });
    expect(p.get(id(3))).toBeUndefined();
    expect(p.length).toBe(3);
  });

  it("ignores a rescan of an entry it has", () => {
    const p = new PendingIds();
    p.add(id(1), 0, 0);
    p.add(id(2), 100, 1);
    expect(p.add(id(1), 0, 0)).toBe(false);
    expect(p.length).toBe(2);
  });

  it("drops the front once persisted, keeping later entries findable", () => {
    const p = new PendingIds();
    for (let i = 0; i < 10_000; i++) p.add(id(i), i * 10, i);
    expect(p.countBelow(50_000)).toBe(5000);
    expect(p.front(2)).toEqual({ ids: [id(0), id(1)], positions: [0, 10], revisions: [0, 1] });
    p.drop(5000);
    expect(p.length).toBe(5000);
    expect(p.get(id(4999))).toBeUndefined();
    expect(p.get(id(5000))).toEqual({ position: 50_000, revision: 5000 });
    expect(p.countBelow(50_010)).toBe(1);
    p.drop(5000);
    expect(p.length).toBe(0);
    expect(p.get(id(9999))).toBeUndefined();
  });

  it("truncation removes entries at and above the cut and uncovers shadowed ones", () => {
    const p = new PendingIds();
    p.add(id(1), 0, 0);
    p.add(id(2), 100, 1);
    p.add(id(1), 200, 2);
    p.add(id(3), 300, 3);
    p.truncate(200);
    expect(p.get(id(1))).toEqual({ position: 0, revision: 0 });
    expect(p.get(id(3))).toBeUndefined();
    expect(p.length).toBe(2);
  });

  it("an add at or below the last position cuts the entries from there first", () => {
    const p = new PendingIds();
    p.add(id(1), 0, 0);
    p.add(id(2), 100, 1);
    p.add(id(3), 200, 2);
    // A failed write at 100.. was rolled back; the log goes on at 100 with another event.
    p.add(id(4), 100, 1);
    expect(p.get(id(2))).toBeUndefined();
    expect(p.get(id(3))).toBeUndefined();
    expect(p.get(id(4))).toEqual({ position: 100, revision: 1 });
    expect(p.countBelow(Number.POSITIVE_INFINITY)).toBe(2);
  });

  it("answers the same whether its map was built before or after the adds, drops and cuts", () => {
    // The map from id to entry is built at the first lookup (a follower never looks up): the
    // entries must say the same as a map kept from the start.
    const run = (lookFirst: boolean) => {
      const p = new PendingIds();
      if (lookFirst) p.get(id(0));
      for (let i = 0; i < 9000; i++) p.add(id(i % 7000), i * 10, i);
      p.drop(3000);
      p.truncate(80_000);
      p.add(id(5), 80_000, 8000);
      expect(p.add(id(5), 80_000, 8000)).toBe(false);
      return [0, 5, 6999, 999, 1000, 3500].map((n) => p.get(id(n)));
    };
    const eager = run(true);
    expect(run(false)).toEqual(eager);
    expect(eager).toEqual([
      { position: 70_000, revision: 7000 },
      { position: 80_000, revision: 8000 },
      { position: 69_990, revision: 6999 },
      { position: 79_990, revision: 7999 },
      undefined,
      { position: 35_000, revision: 3500 },
    ]);
  });

  it("renumbers its slots when they grow large, finding every pending id before and after", () => {
    const p = new PendingIds(10_000);
    let next = 0;
    // Keep about 6,000 pending while 60,000 pass through: the front is cut and compacted
    // (slots move up by thousands each time) until the renumbering threshold is crossed.
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 3000; i++, next++) p.add(id(next), next * 10, next);
      expect(p.get(id(next - 1))).toEqual({ position: (next - 1) * 10, revision: next - 1 });
      if (p.length > 6000) p.drop(p.length - 3000);
      for (const k of [next - 3000, next - 1500, next - 1])
        expect(p.get(id(k))).toEqual({ position: k * 10, revision: k });
      const firstPending = next - p.length;
      if (firstPending > 0) expect(p.get(id(firstPending - 1))).toBeUndefined();
    }
    expect(next).toBe(60_000);
  });
});
