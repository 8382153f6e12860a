import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../test-helpers.js";
import { LmdbEventIdIndex, type LmdbEventIdIndexOptions } from "./lmdb-event-id-index.js";

function id(n: number): string {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(n, 0);
  b.writeUInt32BE((0x9e3779b9 ^ n) >>> 0, 8);
  return b.toString("latin1");
}

describe("LmdbEventIdIndex", () => {
  let dir: string;
  let remove: () => Promise<void>;
  const opened: LmdbEventIdIndex[] = [];

  beforeEach(async () => {
    ({ dir, remove } = await tempDir());
  });

  afterEach(async () => {
    for (const idx of opened.splice(0)) await idx.abort();
    await remove();
  });

  async function openIndex(options: Partial<LmdbEventIdIndexOptions> = {}) {
    const idx = new LmdbEventIdIndex({ path: join(dir, "event-ids.mdb"), ...options });
    opened.push(idx);
    await idx.open();
    return idx;
  }

  it("finds ids at once, and after close and reopen from disk", async () => {
    const a = await openIndex();
    expect(a.persistedUpTo).toBe(0);
    for (let i = 0; i < 20_000; i++) a.add(id(i), i * 100, i);
    expect(a.get(id(12_345))).toEqual({ position: 1_234_500, revision: 12_345 });
    a.durable(20_000 * 100);
    await a.close();
    expect((await readdir(dir)).sort()).toEqual(["event-ids.mdb", "event-ids.mdb-lock"]);

    const b = await openIndex();
    expect(b.persistedUpTo).toBe(2_000_000);
    expect(b.memoryEntries).toBe(0);
    expect(b.get(id(0))).toEqual({ position: 0, revision: 0 });
    expect(b.get(id(19_999))).toEqual({ position: 1_999_900, revision: 19_999 });
    expect(b.get(id(20_000))).toBeUndefined();
  });

  it("persists only what the log made durable", async () => {
    const a = await openIndex();
    for (let i = 0; i < 10; i++) a.add(id(i), i * 100, i);
    a.durable(500); // events at 0..400 are durable, 500.. not yet
    await a.close();
    const b = await openIndex();
    expect(b.persistedUpTo).toBe(500);
    expect(b.get(id(4))).toEqual({ position: 400, revision: 4 });
    expect(b.get(id(5))).toBeUndefined();
    // A re-index from persistedUpTo re-adds them; entries below it are ignored.
    b.add(id(3), 300, 3);
    expect(b.memoryEntries).toBe(0);
    b.add(id(5), 500, 5);
    expect(b.get(id(5))).toEqual({ position: 500, revision: 5 });
  });

  it("writes in batches in the background; a crash loses only what was not written", async () => {
    const a = await openIndex({ flushEntries: 4, flushEveryMs: 3_600_000 });
    for (let i = 0; i < 3; i++) a.add(id(i), i * 100, i);
    a.durable(300); // 3 entries: below the batch size, nothing is written
    for (let i = 3; i < 6; i++) a.add(id(i), i * 100, i);
    a.durable(600); // 6 entries: written
    for (let i = 6; i < 8; i++) a.add(id(i), i * 100, i);
    a.durable(800); // a write is in flight or 2 more wait
    await a.abort(); // a crash: waits for the write in flight, writes nothing more
    const b = await openIndex();
    expect(b.persistedUpTo).toBe(600);
    expect(b.get(id(5))).toEqual({ position: 500, revision: 5 });
    expect(b.get(id(6))).toBeUndefined();
  });

  it("a crash before any write leaves an empty index (the store re-indexes the log)", async () => {
    const a = await openIndex();
    for (let i = 0; i < 100; i++) a.add(id(i), i * 100, i);
    a.durable(10_000);
    await a.abort();
    const b = await openIndex();
    expect(b.persistedUpTo).toBe(0);
    expect(b.get(id(1))).toBeUndefined();
  });

  it("truncation removes persisted and pending entries at and above the cut, durably", async () => {
    const a = await openIndex();
    for (let i = 0; i < 1000; i++) a.add(id(i), i * 100, i);
    a.durable(100_000);
    await a.close();
    const b = await openIndex();
    b.add(id(1000), 100_000, 1000);
    b.add(id(1001), 100_100, 1001);
    await b.truncate(50_000);
    expect(b.persistedUpTo).toBe(50_000);
    expect(b.get(id(499))).toEqual({ position: 49_900, revision: 499 });
    expect(b.get(id(500))).toBeUndefined();
    expect(b.get(id(1001))).toBeUndefined();
    await b.abort();
    const c = await openIndex();
    expect(c.persistedUpTo).toBe(50_000);
    expect(c.get(id(500))).toBeUndefined();
    expect(c.get(id(999))).toBeUndefined();
    expect(c.get(id(10))).toEqual({ position: 1000, revision: 10 });
    // Writes go on from the cut.
    c.add(id(7777), 50_000, 0);
    c.durable(50_100);
    await c.close();
    const d = await openIndex();
    expect(d.get(id(7777))).toEqual({ position: 50_000, revision: 0 });
    expect(d.persistedUpTo).toBe(50_100);
  });

  it("truncation across several written batches, and back to nothing", async () => {
    const a = await openIndex({ flushEntries: 50, flushEveryMs: 3_600_000 });
    for (let i = 0; i < 1000; i++) {
      a.add(id(i), i * 100, i);
      if (i % 37 === 36) a.durable((i + 1) * 100);
    }
    a.durable(100_000);
    await a.close();
    const b = await openIndex();
    expect(b.persistedUpTo).toBe(100_000);
    await b.truncate(61_050); // inside an event's record: entries from 61,100 on go
    expect(b.get(id(610))).toEqual({ position: 61_000, revision: 610 });
    expect(b.get(id(611))).toBeUndefined();
    await b.truncate(30_000);
    await b.abort();
    const c = await openIndex();
    expect(c.persistedUpTo).toBe(30_000);
    expect(c.get(id(299))).toEqual({ position: 29_900, revision: 299 });
    for (const n of [300, 500, 611, 999]) expect(c.get(id(n))).toBeUndefined();
    await c.truncate(0);
    expect(c.get(id(0))).toBeUndefined();
    expect(c.persistedUpTo).toBe(0);
  });

  it("refuses bad settings", () => {
    expect(() => new LmdbEventIdIndex({ path: join(dir, "x"), flushEntries: 0 })).toThrow(
      /flushEntries/,
    );
  });
});
