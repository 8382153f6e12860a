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
    expect(falseMaybes / 50_000).toBeLessThan(0.05);
    expect(f.layerCount).toBe(1);
  });

  it("grows layers as ids come past its size, and still rules out most new ids", () => {
    const f = new IdFilter(0);
    const added = Array.from({ length: 200_000 }, key);
    for (const k of added) f.add(k);
    expect(f.layerCount).toBeGreaterThan(3);
    for (const k of added) expect(f.mayHave(k)).toBe(true);
    let falseMaybes = 0;
    for (let i = 0; i < 50_000; i++) if (f.mayHave(key())) falseMaybes++;
    expect(falseMaybes / 50_000).toBeLessThan(0.05);
  });

  it("takes keys as bytes like keys as strings, sequential ones too", () => {
    const f = new IdFilter(0);
    const buf = Buffer.alloc(16);
    for (let i = 0; i < 20_000; i++) {
      buf.writeUInt32BE(i, 12);
      f.addBytes(buf, 0);
    }
    for (let i = 0; i < 20_000; i++) {
      buf.writeUInt32BE(i, 12);
      expect(f.mayHave(buf.toString("latin1"))).toBe(true);
    }
  });
});
