import { randomFillSync } from "node:crypto";
import { readFile, readdir, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { open } from "lmdb";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../test-helpers.js";
import { LmdbKv } from "./lmdb-kv.js";
import { LogIndex } from "./log-index.js";

describe("LmdbKv under the log index", () => {
  let dir: string;
  let remove: () => Promise<void>;
  const opened: LmdbKv[] = [];

  beforeEach(async () => {
    ({ dir, remove } = await tempDir());
  });

  afterEach(async () => {
    for (const kv of opened.splice(0)) await kv.close();
    await remove();
  });

  const discarded: string[] = [];

  async function openIndex(obsolete: string[] = []) {
    const kv = new LmdbKv(join(dir, "index.mdb"), {
      obsolete,
      onDiscard: (reason) => discarded.push(reason),
    });
    opened.push(kv);
    const index = new LogIndex(kv);
    await index.open();
    return { kv, index };
  }

  it("writes atomically in the background and reads back after a reopen", async () => {
    const a = await openIndex();
    expect(a.index.persistedUpTo).toBe(0);
    const ids = { ids: [] as string[], positions: [] as number[], revisions: [] as number[] };
    for (let i = 0; i < 10_000; i++) {
      const k = Buffer.alloc(16);
      k.writeUInt32BE(i, 0);
      ids.ids.push(k.toString("latin1"));
      ids.positions.push(i * 100);
      ids.revisions.push(i % 7);
    }
    await a.index.write({
      upTo: 1_000_000,
      events: 10_000,
      streamCount: 2,
      streams: [
        ["orders-1", { last: 40, lastPos: 4000, firstPos: 0, tombstoned: false, meta: null }],
        ["gone", { last: 3, lastPos: 900, firstPos: 10, tombstoned: true, meta: { maxCount: 2 } }],
      ],
      sparse: [["orders-1", 1, 3200]],
      ids,
      epochs: [{ epochNumber: 3, epochId: "abc", position: 5_000_000_000 }],
    });
    expect(a.index.stream("orders-1")).toMatchObject({ last: 40, lastPos: 4000 });
    await a.kv.close();
    opened.splice(0);

    const b = await openIndex();
    expect(b.index.persistedUpTo).toBe(1_000_000);
    expect(b.index.totals).toEqual({ events: 10_000, streams: 2 });
    expect(b.index.stream("gone")).toEqual({
      last: 3,
      lastPos: 900,
      firstPos: 10,
      tombstoned: true,
      meta: { maxCount: 2 },
    });
    expect(b.index.stream("orders-2")).toBeUndefined();
    expect(b.index.sparse("orders-1", 1)).toBe(3200);
    expect(b.index.sparse("orders-1", 2)).toBeUndefined();
    expect(b.index.id(ids.ids[9_999]!)).toEqual({ position: 999_900, revision: 9_999 % 7 });
    expect(b.index.id(ids.ids[1_234]!)).toEqual({ position: 123_400, revision: 1_234 % 7 });
    expect(b.index.epochs()).toEqual([{ epochNumber: 3, epochId: "abc", position: 5_000_000_000 }]);
    await b.index.clear();
    expect(b.index.persistedUpTo).toBe(0);
    expect(b.index.stream("gone")).toBeUndefined();
  });

  it("removes the files of older index formats at open", async () => {
    await writeFile(join(dir, "index.snapshot"), "old");
    await writeFile(join(dir, "event-ids.mdb"), "old");
    await openIndex([join(dir, "index.snapshot"), join(dir, "event-ids.mdb")]);
    expect((await readdir(dir)).sort()).toEqual(["index-ids", "index.mdb", "index.mdb-lock"]);
  });

  it("refuses to let the persisted position go back", async () => {
    const a = await openIndex();
    const ids = { ids: [], positions: [], revisions: [] };
    const empty = { events: 0, streamCount: 0, streams: [], sparse: [], ids, epochs: [] };
    await a.index.write({ upTo: 500, ...empty });
    await expect(a.index.write({ upTo: 400, ...empty })).rejects.toThrow(/below 500/);
  });

  it("keeps event ids in runs: every one found after merges and a reopen, new ones not", async () => {
    const a = await openIndex();
    const key = (i: number): string => {
      const k = Buffer.alloc(16);
      k.writeUInt32BE(Math.imul(i, 2654435761) >>> 0, 0);
      k.writeUInt32BE(i, 12);
      return k.toString("latin1");
    };
    const runFiles = async () =>
      (await readdir(join(dir, "index-ids"))).filter((f) => f.endsWith(".run"));
    let upTo = 0;
    // Nine writes of 5,000 ids: every fourth one makes a size class full, which merges.
    for (let round = 0; round < 9; round++) {
      const ids = { ids: [] as string[], positions: [] as number[], revisions: [] as number[] };
      for (let i = round * 5000; i < (round + 1) * 5000; i++) {
        ids.ids.push(key(i));
        ids.positions.push(i);
        ids.revisions.push(i % 3);
      }
      upTo += 5000;
      await a.index.write({
        upTo,
        events: upTo,
        streamCount: 1,
        streams: [],
        sparse: [],
        ids,
        epochs: [],
      });
      for (let i = 0; i < upTo; i += 97) expect(a.index.id(key(i))?.position).toBe(i);
    }
    // 9 runs of 5,000: two merges into 20,000 each, and one run left.
    await expect.poll(runFiles, { timeout: 10_000 }).toHaveLength(3);
    for (let i = 0; i < upTo; i++)
      expect(a.index.id(key(i))).toEqual({ position: i, revision: i % 3 });
    await a.kv.close();
    opened.length = 0;
    const b = await openIndex();
    expect(await runFiles()).toHaveLength(3);
    for (let i = 0; i < upTo; i++) expect(b.index.id(key(i))?.position).toBe(i);
    for (let i = upTo; i < 2 * upTo; i++) expect(b.index.id(key(i))).toBeUndefined();
    await b.index.clear();
    expect(await runFiles()).toHaveLength(0);
    expect(b.index.id(key(1))).toBeUndefined();
  });

  it("empties an index whose ids are of the layout before runs, or whose runs are damaged", async () => {
    const a = await openIndex();
    const ids = { ids: ["x".repeat(16)], positions: [7], revisions: [0] };
    const delta = {
      upTo: 100,
      events: 1,
      streamCount: 0,
      streams: [],
      sparse: [],
      ids,
      epochs: [],
    };
    await a.index.write(delta);
    await a.kv.close();
    opened.length = 0;
    // A run file the list names, cut short: the index is rebuilt from the log.
    const [run] = (await readdir(join(dir, "index-ids"))).filter((f) => f.endsWith(".run"));
    await truncate(join(dir, "index-ids", run!), 40);
    const b = await openIndex();
    expect(b.index.persistedUpTo).toBe(0);
    expect(b.index.id("x".repeat(16))).toBeUndefined();
    expect(discarded.splice(0)).toEqual([expect.stringMatching(/ids-0000000001.run is shorter/)]);
    await b.index.write(delta);
    await b.kv.close();
    opened.length = 0;
    // Ids as keys of the ids database itself (the layout before runs).
    const env = open({
      path: join(dir, "index.mdb"),
      maxDbs: 8,
      keyEncoding: "binary",
      encoding: "binary",
    });
    await env
      .openDB({ name: "ids", keyEncoding: "binary", encoding: "binary" })
      .put(Buffer.alloc(16, 1), Buffer.alloc(16));
    await env.close();
    const c = await openIndex();
    expect(c.index.persistedUpTo).toBe(0);
    expect(discarded.splice(0)).toEqual([expect.stringMatching(/layout before id runs/)]);
  });

  it("applies a batch in key order, the later of two puts of one key winning", async () => {
    const a = await openIndex();
    const key = (i: number): Buffer => {
      const k = Buffer.alloc(16);
      k.writeUInt32BE((i * 2654435761) % 4294967296, 0);
      k.writeUInt32BE(i, 12);
      return k;
    };
    const value = (v: number): Buffer => {
      const b = Buffer.alloc(16);
      b.writeDoubleLE(v, 0);
      return b;
    };
    const ops = [];
    for (let i = 0; i < 3000; i++)
      ops.push({ table: "streams" as const, key: key(i), value: value(i) });
    // Keys sharing their first 4 bytes, and every key put a second time later in the batch.
    for (let i = 0; i < 50; i++) {
      const k = Buffer.alloc(16);
      k.writeUInt32BE(7, 0);
      k.writeUInt32BE(i, 12);
      ops.push({ table: "streams" as const, key: k, value: value(-i - 1) });
    }
    for (let i = 0; i < 3000; i++)
      ops.push({ table: "streams" as const, key: key(i), value: value(i + 0.5) });
    await a.kv.write(ops);
    for (let i = 0; i < 3000; i++)
      expect(a.kv.get("streams", key(i))?.readDoubleLE(0)).toBe(i + 0.5);
    const k = Buffer.alloc(16);
    k.writeUInt32BE(7, 0);
    for (let i = 0; i < 50; i++) {
      k.writeUInt32BE(i, 12);
      expect(a.kv.get("streams", k)?.readDoubleLE(0)).toBe(-i - 1);
    }
  });
  it("maps its file once however far it grows (its pages resident once, not once per map)", async () => {
    const { kv } = await openIndex();
    const path = join(dir, "index.mdb");
    // 40 writes of 8,192 random keys: the file grows from a few pages to about 20 MB, past
    // every size a map that started small would have outgrown.
    for (let w = 0; w < 40; w++) {
      await kv.write(
        [],
        [
          {
            table: "streams",
            count: 8192,
            keyBytes: 16,
            valueBytes: 16,
            fill: (i, buf, keyAt, valueAt) => {
              randomFillSync(buf, keyAt, 16);
              buf.writeDoubleLE(w * 8192 + i, valueAt);
              buf.writeDoubleLE(0, valueAt + 8);
            },
          },
        ],
      );
    }
    expect((await stat(path)).size).toBeGreaterThan(8 * 1024 * 1024);
    const maps = (await readFile("/proc/self/maps", "utf8"))
      .split("\n")
      .filter((line) => line.endsWith(` ${path}`));
    expect(maps).toHaveLength(1);
  });
});
