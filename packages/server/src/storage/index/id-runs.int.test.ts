import { randomBytes } from "node:crypto";
import { open, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Worker } from "node:worker_threads";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../test-helpers.js";
import { compareIds, ENTRY_BYTES, sortEntries } from "./id-run-format.js";
import {
  decodeRunList,
  encodeRunList,
  IdRuns,
  IdRunsCorruptError,
  MERGE_WIDTH,
  planMerge,
  type RunInfo,
} from "./id-runs.js";

/** An id: 16 bytes, as the index's latin1 key string. */
const newId = (): string => randomBytes(16).toString("latin1");

interface Put {
  id: string;
  position: number;
  revision: number;
}

async function writeRun(runs: IdRuns, puts: readonly Put[]): Promise<RunInfo> {
  const run = await runs.write(puts.length, (i, buf, keyAt, valueAt) => {
    const p = puts[i]!;
    buf.write(p.id, keyAt, "latin1");
    buf.writeDoubleLE(p.position, valueAt);
    buf.writeDoubleLE(p.revision, valueAt + 8);
  });
  runs.install(run);
  return run;
}

/** MERGE_WIDTH runs of `size` new ids each (run w at positions w * size + i): one merge's worth. */
async function writeMergeable(runs: IdRuns, size: number): Promise<Put[][]> {
  const puts: Put[][] = [];
  for (let w = 0; w < MERGE_WIDTH; w++) {
    puts.push(
      Array.from({ length: size }, (_, i) => ({
        id: newId(),
        position: w * size + i,
        revision: 0,
      })),
    );
    await writeRun(runs, puts[w]!);
  }
  return puts;
}

function lookup(runs: IdRuns, id: string): { position: number; revision: number } | undefined {
  const v = runs.get(Buffer.from(id, "latin1"));
  return v === undefined ? undefined : { position: v.readDoubleLE(0), revision: v.readDoubleLE(8) };
}

describe("sortEntries", () => {
  it("orders entries by id, equal ids in their order, ids sharing their first 5 bytes too", () => {
    const n = 20_000;
    const buf = Buffer.alloc(n * ENTRY_BYTES);
    for (let i = 0; i < n; i++) {
      const at = i * ENTRY_BYTES;
      randomBytes(16).copy(buf, at);
      if (i % 10 === 0) buf.fill(7, at, at + 5); // many share a 5-byte prefix
      if (i % 97 === 0 && i > 0) buf.copy(buf, at, at - ENTRY_BYTES, at - ENTRY_BYTES + 16); // repeats
      buf.writeDoubleLE(i, at + 16);
    }
    const order = sortEntries(buf, n);
    expect(new Set(order).size).toBe(n);
    for (let j = 1; j < n; j++) {
      const a = order[j - 1]! * ENTRY_BYTES;
      const b = order[j]! * ENTRY_BYTES;
      const d = compareIds(buf, a, buf, b);
      expect(d <= 0).toBe(true);
      if (d === 0) expect(order[j - 1]! < order[j]!).toBe(true);
    }
  });
});

describe("planMerge", () => {
  it("merges MERGE_WIDTH runs of the smallest size class that has as many, and nothing else", () => {
    const r = (id: number, count: number): RunInfo => ({ id, count });
    expect(planMerge([r(1, 100), r(2, 100), r(3, 100)])).toBeUndefined();
    expect(planMerge([r(1, 100), r(2, 4000), r(3, 1), r(4, 4096)])?.map((x) => x.id)).toEqual([
      1, 2, 3, 4,
    ]);
    // Classes: ≤4096, ≤16384, ≤65536 …: a large run never merges with small ones.
    const mixed = [r(1, 60_000), r(2, 5000), r(3, 5000), r(4, 5000), r(5, 10), r(6, 10)];
    expect(planMerge(mixed)).toBeUndefined();
    expect(planMerge([...mixed, r(7, 16_000)])?.map((x) => x.id)).toEqual([2, 3, 4, 7]);
    expect(MERGE_WIDTH).toBe(4);
  });

  it("lists runs in a form it reads back, and refuses a damaged list", () => {
    const list = [
      { id: 3, count: 70_000 },
      { id: 1, count: 5 },
    ];
    expect(decodeRunList(encodeRunList(list))).toEqual(list);
    expect(decodeRunList(encodeRunList([]))).toEqual([]);
    expect(() => decodeRunList(encodeRunList(list).subarray(0, 10))).toThrow(IdRunsCorruptError);
  });
});

describe("IdRuns", () => {
  let dir: string;
  let remove: () => Promise<void>;
  let runs: IdRuns;

  beforeEach(async () => {
    ({ dir, remove } = await tempDir());
    runs = new IdRuns(join(dir, "ids"));
    await runs.open([]);
  });

  afterEach(async () => {
    runs.close();
    await remove();
  });

  it("finds every id written with its latest occurrence, and no other id", async () => {
    const ids = Array.from({ length: 9000 }, newId);
    const puts: Put[] = ids.map((id, i) => ({ id, position: i * 10, revision: i }));
    // Some ids again later in the same write, and one id put again with a lower position
    // after a higher one: the highest position is the latest occurrence.
    for (let i = 0; i < 9000; i += 50) puts.push({ id: ids[i]!, position: 1e6 + i, revision: -i });
    puts.push({ id: ids[1]!, position: 5, revision: 99 });
    const run = await writeRun(runs, puts);
    expect(run.count).toBe(9000);
    for (let i = 0; i < 9000; i++) {
      const want =
        i % 50 === 0 ? { position: 1e6 + i, revision: -i } : { position: i * 10, revision: i };
      expect(lookup(runs, ids[i]!)).toEqual(want);
    }
    for (let i = 0; i < 5000; i++) expect(lookup(runs, newId())).toBeUndefined();
  });

  it("merges runs into one that answers as they did, then removes their files", async () => {
    const model = new Map<string, { position: number; revision: number }>();
    const pool = Array.from({ length: 3000 }, newId);
    let position = 0;
    // Ids whose highest position is in an older run: a merged run is listed first, ahead of
    // runs written while it merged, so the list's order is not the order of positions.
    const early = Array.from({ length: 50 }, newId);
    const put = (puts: Put[], p: Put): void => {
      puts.push(p);
      if ((model.get(p.id)?.position ?? -1) < p.position)
        model.set(p.id, { position: p.position, revision: p.revision });
    };
    for (let w = 0; w < MERGE_WIDTH; w++) {
      const puts: Put[] = [];
      for (let i = 0; i < 2500; i++) {
        // A third of each write repeats ids of the pool (seen in earlier runs or not).
        const id = i % 3 === 0 ? pool[(w * 7919 + i) % pool.length]! : newId();
        put(puts, { id, position: ++position, revision: w });
      }
      for (const id of early) put(puts, { id, position: 1e9 - w, revision: w });
      await writeRun(runs, puts);
    }
    for (const [id, want] of model) expect(lookup(runs, id)).toEqual(want);
    const inputs = runs.plan();
    expect(inputs).toHaveLength(MERGE_WIDTH);
    const merged = await runs.merge(inputs!);
    expect(merged!.count).toBe(model.size);
    runs.install(merged, inputs);
    expect(runs.list).toEqual([{ id: merged!.id, count: model.size }]);
    for (const [id, want] of model) expect(lookup(runs, id)).toEqual(want);
    for (let i = 0; i < 2000; i++) expect(lookup(runs, newId())).toBeUndefined();
    await expect.poll(async () => (await readdir(join(dir, "ids"))).length).toBe(1);
  });

  it("stops a merge when told, keeping its inputs and no file of its own", async () => {
    await writeMergeable(runs, 3000);
    const before = (await readdir(join(dir, "ids"))).sort();
    expect(await runs.merge(runs.plan()!, AbortSignal.abort())).toBeUndefined();
    expect((await readdir(join(dir, "ids"))).sort()).toEqual(before);
    expect(runs.list).toHaveLength(MERGE_WIDTH);
  });

  it("stops a merge in flight on the worker, leaving no file behind", async () => {
    const puts = await writeMergeable(runs, 30_000);
    const before = (await readdir(join(dir, "ids"))).sort();
    const stop = new AbortController();
    const merging = runs.merge(runs.plan()!, stop.signal);
    stop.abort();
    expect(await merging).toBeUndefined();
    expect((await readdir(join(dir, "ids"))).sort()).toEqual(before);
    // The inputs still answer.
    expect(lookup(runs, puts[2]![7]!.id)).toEqual({ position: 2 * 30_000 + 7, revision: 0 });
  });

  it("survives its worker thread dying mid-merge and mid-write: those fail, the next requests start another", async () => {
    // Reached into: nothing outside can kill the thread.
    interface Thread {
      worker: Worker | null;
      ask: (...args: unknown[]) => unknown;
    }
    const thread = (): Thread => (runs as unknown as { thread: Thread }).thread;
    const worker = (): Worker | null => thread().worker;
    /** Kills the thread as soon as the next request is on it. */
    const killAtNextRequest = (): void => {
      const t = thread();
      const ask = t.ask;
      t.ask = (...args) => {
        t.ask = ask;
        const asked = ask.apply(t, args);
        void t.worker?.terminate();
        return asked;
      };
    };
    const puts = await writeMergeable(runs, 30_000);
    const inputs = runs.plan()!;
    const first = worker();
    expect(first).not.toBeNull();
    killAtNextRequest();
    const merging = runs.merge(inputs);
    await expect(merging).rejects.toThrow(/worker exited/);
    // The inputs still answer; the next merge runs on a new thread.
    expect(lookup(runs, puts[1]![5]!.id)).toEqual({ position: 30_000 + 5, revision: 0 });
    const merged = await runs.merge(inputs);
    expect(worker()).not.toBe(first);
    runs.install(merged, inputs);
    expect(lookup(runs, puts[3]![9]!.id)).toEqual({ position: 3 * 30_000 + 9, revision: 0 });

    // A write whose thread dies: its entries went with the thread; the next write has its own.
    const lost = Array.from({ length: 20_000 }, (_, i) => ({
      id: newId(),
      position: 1e6 + i,
      revision: 1,
    }));
    killAtNextRequest();
    const writing = writeRun(runs, lost);
    await expect(writing).rejects.toThrow(/worker exited/);
    const again = await writeRun(runs, lost.slice(0, 100));
    expect(again.count).toBe(100);
    expect(lookup(runs, lost[7]!.id)).toEqual({ position: 1e6 + 7, revision: 1 });
    expect(lookup(runs, lost[150]!.id)).toBeUndefined();

    // What the dead thread left half-written goes at the next open.
    const list = runs.list;
    runs.close();
    runs = new IdRuns(join(dir, "ids"));
    await runs.open(list);
    expect((await readdir(join(dir, "ids"))).sort()).toEqual(
      list.map((r) => `ids-${String(r.id).padStart(10, "0")}.run`).sort(),
    );
  });

  it("at open, keeps the listed runs and removes every other run file", async () => {
    const a = await writeRun(runs, [{ id: "a".repeat(16), position: 1, revision: 0 }]);
    const b = await writeRun(runs, [{ id: "b".repeat(16), position: 2, revision: 0 }]);
    runs.close();
    await writeFile(join(dir, "ids", "ids-0000000099.run.tmp"), "cut off");
    runs = new IdRuns(join(dir, "ids"));
    await runs.open([a]);
    expect(await readdir(join(dir, "ids"))).toEqual(["ids-0000000001.run"]);
    expect(lookup(runs, "a".repeat(16))).toEqual({ position: 1, revision: 0 });
    expect(lookup(runs, "b".repeat(16))).toBeUndefined();
    // New runs never take a number a file had.
    const c = await writeRun(runs, [{ id: "c".repeat(16), position: 3, revision: 0 }]);
    expect(c.id).toBeGreaterThan(Math.max(b.id, 99));
  });

  it("refuses a listed run that is missing, short or damaged, and a damaged block at lookup", async () => {
    const ids = Array.from({ length: 1000 }, newId);
    const run = await writeRun(
      runs,
      ids.map((id, i) => ({ id, position: i, revision: 0 })),
    );
    runs.close();
    const path = join(dir, "ids", "ids-0000000001.run");
    await expect(new IdRuns(join(dir, "ids")).open([run, { id: 5, count: 1 }])).rejects.toThrow(
      IdRunsCorruptError,
    );
    await expect(new IdRuns(join(dir, "ids")).open([{ id: run.id, count: 999 }])).rejects.toThrow(
      /holds 1000 ids, not 999/,
    );
    // A flipped byte in an entry: found when its block is read.
    const f = await open(path, "r+");
    const byte = Buffer.alloc(1);
    await f.read(byte, 0, 1, 64 + 100 * ENTRY_BYTES + 20);
    byte[0] = byte[0]! ^ 0xff;
    await f.write(byte, 0, 1, 64 + 100 * ENTRY_BYTES + 20);
    runs = new IdRuns(join(dir, "ids"));
    await runs.open([run]);
    let damaged = 0;
    for (const id of ids) {
      try {
        lookup(runs, id);
      } catch (err) {
        expect(err).toBeInstanceOf(IdRunsCorruptError);
        damaged++;
      }
    }
    expect(damaged).toBe(128); // the whole block of the flipped byte, nothing else
    runs.close();
    // A flipped byte in the tail (the filter): refused at open.
    const size = (await stat(path)).size;
    await f.read(byte, 0, 1, size - 30);
    byte[0] = byte[0] ^ 0xff;
    await f.write(byte, 0, 1, size - 30);
    await f.close();
    runs = new IdRuns(join(dir, "ids"));
    await expect(runs.open([run])).rejects.toThrow(/fails its CRC/);
  });
});
