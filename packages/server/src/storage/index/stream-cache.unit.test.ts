import { describe, expect, it } from "vitest";
import { MemoryKv } from "./kv.js";
import { LogIndex } from "./log-index.js";
import { SPARSE_EVERY, StreamCache, type CommittedTotals } from "./stream-cache.js";

function id(n: number): string {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(n, 12);
  return b.toString("latin1");
}

/** A cache over a memory engine, with the commit position under the test's control. */
async function setup(capacity = 4, kv = new MemoryKv()) {
  const index = new LogIndex(kv);
  await index.open();
  const totals: { -readonly [K in keyof CommittedTotals]: CommittedTotals[K] } = {
    commit: 0,
    events: 0,
    streams: 0,
    epochs: [],
  };
  const cache = new StreamCache(index, () => totals, {
    capacity,
    flushEntries: 1_000_000,
    flushEveryMs: 3_600_000,
  });
  cache.start();
  return { kv, index, cache, totals };
}

/** Appends and commits `n` events to `name` at positions 100 apart from `at`. */
function commitEvents(
  ctx: Awaited<ReturnType<typeof setup>>,
  name: string,
  n: number,
  at: number,
): number {
  const s = ctx.cache.getOrCreate(name);
  let pos = at;
  for (let i = 0; i < n; i++) {
    const r = s.wLast + 1;
    if (r % SPARSE_EVERY === 0) s.sparse.set(r / SPARSE_EVERY, pos);
    ctx.cache.addId(id(pos), pos, r);
    s.wLast = s.last = r;
    s.wLastPos = s.lastPos = pos;
    pos += 100;
    ctx.totals.events++;
  }
  if (s.last === n - 1) ctx.totals.streams++;
  ctx.cache.committed(s);
  ctx.totals.commit = pos;
  return pos;
}

describe("StreamCache", () => {
  it("keeps unpersisted states whatever the capacity, evicts them once persisted, reads them back", async () => {
    const ctx = await setup(4);
    let pos = 0;
    for (let i = 0; i < 20; i++) pos = commitEvents(ctx, `s-${i}`, 1, pos);
    // Nothing persisted yet: all 20 stay, over the capacity of 4.
    expect(ctx.cache.size).toBe(20);
    await ctx.cache.persist();
    expect(ctx.index.persistedUpTo).toBe(pos);
    expect(ctx.cache.size).toBeLessThanOrEqual(4);
    const s7 = ctx.cache.get("s-7");
    expect(s7).toMatchObject({ last: 0, lastPos: 700, wLast: 0, tombstoned: false });
    expect(ctx.cache.sparseAt(s7!, 0)).toBe(700);
    expect(ctx.cache.get("nope")).toBeUndefined();
    expect(ctx.cache.id(id(1300))).toEqual({ position: 1300, revision: 0 });
    expect(ctx.cache.memoryIds).toBe(0);
    expect(ctx.index.totals).toEqual({ events: 20, streams: 20 });
  });

  it("never evicts a state whose write view runs ahead of its committed view", async () => {
    const ctx = await setup(1);
    const pending = ctx.cache.getOrCreate("pending");
    pending.wLast = 0;
    pending.wLastPos = 0;
    let pos = 100;
    for (let i = 0; i < 10; i++) pos = commitEvents(ctx, `other-${i}`, 1, pos);
    await ctx.cache.persist();
    expect(ctx.cache.get("pending")).toBe(pending);
  });

  it("persists sparse positions and forgets them from memory; a reopened index serves them", async () => {
    const kv = new MemoryKv();
    const ctx = await setup(2, kv);
    const end = commitEvents(ctx, "long", 100, 0);
    const s = ctx.cache.get("long")!;
    expect(s.sparse.size).toBe(4); // revisions 0, 32, 64, 96
    await ctx.cache.persist();
    expect([...s.sparse.keys()]).toEqual([0]);
    expect(ctx.cache.sparseAt(s, 3)).toBe(9600);
    const again = await setup(2, kv);
    expect(again.index.persistedUpTo).toBe(end);
    const t = again.cache.get("long")!;
    expect(t).toMatchObject({ last: 99, lastPos: 9900 });
    expect(again.cache.sparseAt(t, 0)).toBe(0);
    expect(again.cache.sparseAt(t, 2)).toBe(6400);
    expect(again.cache.sparseAt(t, 4)).toBeUndefined();
  });

  it("a failed write keeps everything in memory for the next one", async () => {
    const kv = new MemoryKv();
    const ctx = await setup(1, kv);
    const real = kv.write.bind(kv);
    let fail = true;
    kv.write = async (ops, blocks) => {
      if (fail) throw new Error("disk on fire");
      return real(ops, blocks);
    };
    const end = commitEvents(ctx, "a", 40, 0);
    commitEvents(ctx, "b", 1, end);
    await ctx.cache.persist();
    expect(ctx.index.persistedUpTo).toBe(0);
    expect(ctx.cache.size).toBe(2);
    expect(ctx.cache.id(id(0))).toEqual({ position: 0, revision: 0 });
    fail = false;
    await ctx.cache.persist();
    expect(ctx.index.persistedUpTo).toBe(end + 100);
    expect(ctx.cache.sparseAt(ctx.cache.get("a")!, 1)).toBe(3200);
    expect(ctx.cache.id(id(3900))).toEqual({ position: 3900, revision: 39 });
  });

  it("persists epochs below the commit position once, and metadata", async () => {
    const kv = new MemoryKv();
    const ctx = await setup(4, kv);
    ctx.totals.epochs = [
      { epochNumber: 1, epochId: "e1", position: 0 },
      { epochNumber: 2, epochId: "e2", position: 500 },
    ];
    const s = ctx.cache.getOrCreate("m");
    s.meta = s.wMeta = { maxCount: 3 };
    ctx.cache.committed(s);
    ctx.totals.commit = 400;
    await ctx.cache.persist();
    ctx.totals.commit = 600;
    await ctx.cache.persist();
    const again = await setup(4, kv);
    expect(again.index.epochs()).toEqual(ctx.totals.epochs);
    expect(again.cache.get("m")).toMatchObject({ last: -1, meta: { maxCount: 3 } });
  });
});
