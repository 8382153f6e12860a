import { describe, expect, it } from "vitest";
import { Rng } from "../cluster/sim/rng.js";
import { TailCache } from "./tail-cache.js";

function bytes(n: number, next: () => number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
  return b;
}

describe("tail cache", () => {
  it("serves the last bytes written, across the ring's wrap", () => {
    const cache = new TailCache(8);
    cache.reset(100);
    cache.written(100, Buffer.from("abcdef"), 0, 6);
    cache.written(106, Buffer.from("xxGHIJxx"), 2, 4);
    expect(cache.read(102, 8)?.toString()).toBe("cdefGHIJ");
    expect(cache.read(101, 2)).toBeUndefined(); // 101 fell out of the 8 bytes
    expect(cache.read(108, 3)).toBeUndefined(); // 110 was never written
    expect(cache.read(108, 2)?.toString()).toBe("IJ");
  });

  it("keeps the end of a write larger than the ring", () => {
    const cache = new TailCache(4);
    cache.reset(0);
    cache.written(0, Buffer.from("0123456789"), 0, 10);
    expect(cache.read(6, 4)?.toString()).toBe("6789");
    expect(cache.read(5, 2)).toBeUndefined();
  });

  it("drops what a truncation cuts, and what is written after it replaces it", () => {
    const cache = new TailCache(16);
    cache.reset(0);
    cache.written(0, Buffer.from("abcdefgh"), 0, 8);
    cache.truncate(5);
    expect(cache.read(4, 2)).toBeUndefined();
    expect(cache.read(2, 3)?.toString()).toBe("cde");
    cache.written(5, Buffer.from("XYZ"), 0, 3);
    expect(cache.read(3, 5)?.toString()).toBe("deXYZ");
  });

  it("a copy: later writes do not change what a read returned", () => {
    const cache = new TailCache(4);
    cache.reset(0);
    cache.written(0, Buffer.from("abcd"), 0, 4);
    const got = cache.read(0, 4)!;
    cache.written(4, Buffer.from("wxyz"), 0, 4);
    expect(got.toString()).toBe("abcd");
    expect(cache.read(0, 1)).toBeUndefined();
  });

  it("with capacity 0 keeps nothing", () => {
    const cache = new TailCache(0);
    cache.reset(0);
    cache.written(0, Buffer.from("abc"), 0, 3);
    expect(cache.read(0, 3)).toBeUndefined();
  });

  it("refuses a negative or fractional capacity", () => {
    expect(() => new TailCache(-1)).toThrow(RangeError);
    expect(() => new TailCache(1.5)).toThrow(RangeError);
  });

  it("agrees with a model log under random writes, truncations and reads", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rng = new Rng(seed);
      const next = () => rng.next();
      const capacity = 64 + Math.floor(next() * 200);
      const cache = new TailCache(capacity);
      let log = Buffer.alloc(0);
      cache.reset(0);
      let hits = 0;
      /** Below this, later writes may have pushed bytes out of the ring; above, none did. */
      let pushedOutBelow = 0;
      for (let step = 0; step < 3000; step++) {
        const r = next();
        if (r < 0.45) {
          const data = bytes(1 + Math.floor(next() * capacity * 1.5), next);
          const offset = Math.floor(next() * 4);
          const length = data.length - offset;
          cache.written(log.length, data, offset, length);
          log = Buffer.concat([log, data.subarray(offset)]);
          pushedOutBelow = Math.max(pushedOutBelow, log.length - capacity);
        } else if (r < 0.5 && log.length > 0) {
          const to = Math.floor(next() * log.length);
          cache.truncate(to);
          log = log.subarray(0, to);
        } else if (log.length > 0) {
          const at = Math.floor(next() * log.length);
          const length = Math.floor(next() * (log.length - at + 1));
          const got = cache.read(at, length);
          if (got !== undefined) {
            hits++;
            expect(got.equals(log.subarray(at, at + length))).toBe(true);
          }
          if (at >= pushedOutBelow) expect(got).toBeDefined();
        }
      }
      expect(hits).toBeGreaterThan(100);
    }
  });
});
