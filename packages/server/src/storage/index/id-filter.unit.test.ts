import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { IdFilter } from "./id-filter.js";

const key = (): string => randomBytes(16).toString("latin1");

describe("IdFilter", () => {
  it("answers maybe for every id added, and rules out most others", () => {
    const f = new IdFilter(50_000);
    const added = Array.from({ length: 50_000 }, key);
    for (const k of added) f.add(k);
    for (const k of added) expect(f.mayHave(k)).toBe(true);
    let falseMaybes = 0;
    for (let i = 0; i < 50_000; i++) if (f.mayHave(key())) falseMaybes++;
    expect(falseMaybes / 50_000).toBeLessThan(0.01);
  });

  it("takes keys as bytes like keys as strings, sequential ones too", () => {
    const f = new IdFilter(20_000);
    const buf = Buffer.alloc(16);
    for (let i = 0; i < 20_000; i++) {
      buf.writeUInt32BE(i, 12);
      f.addBytes(buf, 0);
    }
    let falseMaybes = 0;
    for (let i = 0; i < 40_000; i++) {
      buf.writeUInt32BE(i, 12);
      expect(f.mayHaveBytes(buf, 0)).toBe(f.mayHave(buf.toString("latin1")));
      if (i < 20_000) expect(f.mayHave(buf.toString("latin1"))).toBe(true);
      else if (f.mayHaveBytes(buf, 0)) falseMaybes++;
    }
    expect(falseMaybes / 20_000).toBeLessThan(0.01);
  });

  it("is rebuilt from its bits", () => {
    const f = new IdFilter(1000);
    const added = Array.from({ length: 1000 }, key);
    for (const k of added) f.add(k);
    const g = new IdFilter(0, Int32Array.from(f.bits));
    for (const k of added) expect(g.mayHave(k)).toBe(true);
    expect(() => new IdFilter(0, new Int32Array(33))).toThrow(/power of two/);
  });
});
