import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Rng } from "../cluster/sim/rng.js";
import { idHash, IdTable } from "./id-table.js";

/** Every key of `model` is found with its value; `absent` keys are not. */
function expectSame(table: IdTable, model: Map<string, number>, absent: string[]): void {
  expect(table.size).toBe(model.size);
  for (const [k, v] of model) expect(table.get(k)).toBe(v);
  for (const k of absent) if (!model.has(k)) expect(table.get(k)).toBe(-1);
}

describe("IdTable", () => {
  it("behaves as a Map under random sets and deletes, through wrap-around and growth", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rng = new Rng(seed);
      const random = (): number => rng.next();
      // Few distinct keys in a small table: long probe runs that wrap around its end.
      const universe = Array.from({ length: 24 }, (_, i) => `id-${seed}-${i}`);
      const table = new IdTable();
      const model = new Map<string, number>();
      for (let op = 0; op < 2_000; op++) {
        const key = universe[Math.floor(random() * universe.length)] as string;
        const r = random();
        if (r < 0.45) {
          const value = Math.floor(random() * 1000);
          expect(table.set(key, value)).toBe(model.get(key) ?? -1);
          model.set(key, value);
        } else if (r < 0.75) {
          expect(table.delete(key)).toBe(model.delete(key));
        } else {
          const value = Math.floor(random() * 3);
          const matches = model.get(key) === value;
          expect(table.deleteIf(key, value)).toBe(matches);
          if (matches) model.delete(key);
        }
        if (op % 50 === 0) expectSame(table, model, universe);
      }
      expectSame(table, model, universe);
    }
  });

  it("keeps every entry when it grows from empty to many thousands", () => {
    const table = new IdTable();
    const keys = Array.from({ length: 20_000 }, () => randomBytes(16).toString("latin1"));
    keys.forEach((k, i) => expect(table.set(k, i)).toBe(-1));
    expect(table.size).toBe(keys.length);
    keys.forEach((k, i) => expect(table.get(k)).toBe(i));
    expect(table.get(randomBytes(16).toString("latin1"))).toBe(-1);
    // Delete every other one: the rest stay reachable across the shifted runs.
    keys.forEach((k, i) => i % 2 === 0 && expect(table.deleteIf(k, i)).toBe(true));
    keys.forEach((k, i) => expect(table.get(k)).toBe(i % 2 === 0 ? -1 : i));
    expect(table.size).toBe(keys.length / 2);
  });

  it("empties with clear and is usable again", () => {
    const table = new IdTable(4);
    table.set("a", 1);
    table.set("b", 2);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.has("a")).toBe(false);
    table.set("a", 3);
    expect(table.get("a")).toBe(3);
  });

  it("refuses values it cannot store", () => {
    const table = new IdTable();
    for (const bad of [-1, 1.5, 2 ** 31, Number.NaN])
      expect(() => table.set("a", bad)).toThrow(RangeError);
    expect(table.size).toBe(0);
  });

  it("hashes every character: ids that differ in one byte rarely collide", () => {
    // Counter-like ids (all bytes equal but one) must spread over the buckets.
    const base = Buffer.alloc(16);
    const hashes = new Set<number>();
    for (let pos = 0; pos < 16; pos++) {
      for (let v = 0; v < 256; v++) {
        const b = Buffer.from(base);
        b[pos] = v;
        hashes.add(idHash(b.toString("latin1")) & 0xffff);
      }
    }
    // 16 × 256 - 15 distinct ids into 65,536 low-bit buckets: a good hash leaves few shared.
    expect(hashes.size).toBeGreaterThan(3_900);
  });
});
