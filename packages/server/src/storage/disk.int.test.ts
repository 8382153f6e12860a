import { appendFile, readFile, readdir, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StreamStore } from "../streams/types.js";
import { createDiskStore, createMemoryStore, LogStore, type DiskStoreOptions } from "./index.js";
import { MemoryLog } from "./memory-log.js";
import {
  dataOf,
  events,
  newEvent,
  okResult,
  openError,
  recordingLogger,
  removeIndex,
  until,
} from "./test-helpers.js";
import { setCheckpoint as setDiskCheckpoint, TempDiskStores } from "./test-disk-stores.js";

const SEGMENT = "chunk-000000.log";
/** These tests read the log's end off its file's size: no zeros ahead of it (see preallocate.int.test.ts). */
const NO_PREALLOCATION = { preallocateBytes: 0 };

describe("disk store durability and recovery", () => {
  const temp = new TempDiskStores(NO_PREALLOCATION);
  const stores = temp.stores;
  let dir: string;
  beforeEach(async () => {
    dir = await temp.setUp();
  });
  afterEach(() => temp.tearDown());
  const openStore = (options: Partial<DiskStoreOptions> = {}) => temp.open(options);

  const setCheckpoint = (position: number) => setDiskCheckpoint(dir, position);

  async function streamRevisions(s: StreamStore, stream: string): Promise<number[]> {
    const r = await s.readStream(stream, {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 100_000,
    });
    return r.events.map((e) => e.revision);
  }

  it("keeps events and idempotency across close and reopen", async () => {
    const a = await openStore();
    const anyBatch = events(2);
    const exactBatch = events(3);
    const r1 = okResult(await a.append("s", { kind: "any" }, anyBatch));
    const r2 = okResult(await a.append("s", { kind: "exact", revision: 1 }, exactBatch));
    okResult(await a.append("t", { kind: "any" }, events(1)));
    await a.close();
    expect((await readdir(dir)).sort()).toEqual([
      "checkpoint",
      SEGMENT,
      "index-ids",
      "index.mdb",
      "index.mdb-lock",
      "log.json",
    ]);

    const b = await openStore();
    expect(b.stats()).toMatchObject({ events: 6, streams: 2 });
    expect(await b.append("s", { kind: "any" }, anyBatch)).toEqual(r1);
    expect(await b.append("s", { kind: "exact", revision: 1 }, exactBatch)).toEqual(r2);
    expect(await streamRevisions(b, "s")).toEqual([0, 1, 2, 3, 4]);
    expect(b.stats().events).toBe(6);
  });

  it("tells onSync how long each write-loop sync took", async () => {
    const seconds: number[] = [];
    const a = await openStore({ onSync: (s) => seconds.push(s) });
    const synced = a.stats().syncs;
    for (let i = 0; i < 3; i++) okResult(await a.append("s", { kind: "any" }, events(1)));
    // One sync per lone append (sequential appends are not grouped), each a duration >= 0.
    expect(seconds).toHaveLength(a.stats().syncs - synced);
    expect(seconds.length).toBe(3);
    for (const s of seconds) expect(s).toBeGreaterThanOrEqual(0);
    expect(seconds.every((s) => s < 10)).toBe(true);
  });

  it("recovers without close() from the log alone, idempotency included", async () => {
    const a = await openStore({ indexFlush: { flushEntries: 1_000_000, flushEveryMs: 3_600_000 } });
    const batch = events(2);
    const first = okResult(await a.append("c", { kind: "no_stream" }, batch));
    const other = events(1);
    const second = okResult(await a.append("d", { kind: "any" }, other));
    okResult(await a.append("$$d", { kind: "any" }, [newEvent({ maxCount: 5 }, "$metadata")]));
    okResult(await a.delete("gone", { kind: "any" }, true));
    // A second process opens the directory as after a crash: no index was ever written.
    const b = createDiskStore({ dir, ...NO_PREALLOCATION });
    stores.push(b);
    await b.open();
    expect(b.stats().indexedPosition).toBe(0);
    expect(b.stats()).toMatchObject({ events: 4, streams: 3, commitPosition: a.commitPosition });
    expect(await b.append("c", { kind: "no_stream" }, batch)).toEqual(first);
    expect(await b.append("d", { kind: "any" }, other)).toEqual(second);
    expect(await b.getMetadata("d")).toEqual({ maxCount: 5 });
    await expect(b.append("gone", { kind: "any" }, [newEvent()])).rejects.toMatchObject({
      code: "STREAM_DELETED",
    });
  });

  it("recovers from the index as persisted in the background plus the log after it", async () => {
    // The index is written one turn of the event loop after each commit (a timer of 0 ms).
    const a = await openStore({ indexFlush: { flushEntries: 1_000_000, flushEveryMs: 0 } });
    const early = events(1);
    const earlyResult = okResult(await a.append("early", { kind: "any" }, early));
    for (let i = 0; i < 60; i++)
      okResult(await a.append(`s${i % 3}`, { kind: "any" }, [newEvent({ i })]));
    await until(() => a.stats().indexedPosition === a.commitPosition, "the index writes");
    // The write for the last of these has not started when abort() stops the writer (no turn
    // of the event loop in between): the index ends before the log.
    for (let i = 60; i < 70; i++)
      okResult(await a.append(`s${i % 3}`, { kind: "any" }, [newEvent({ i })]));
    expect(a.stats().indexedPosition).toBeLessThan(a.commitPosition);
    await a.abort(); // nothing more written to the index: a crash
    expect((await readdir(dir)).includes("index.mdb")).toBe(true);
    const b = await openStore();
    expect(b.stats().events).toBe(71);
    expect(await streamRevisions(b, "s1")).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(await b.append("early", { kind: "any" }, early)).toEqual(earlyResult);
    expect(
      okResult(await b.append("s1", { kind: "exact", revision: 22 }, events(1)))
        .nextExpectedVersion,
    ).toBe(23);
  });

  it("rebuilds an index whose first page is damaged (lmdb itself would crash the process)", async () => {
    const a = await openStore();
    for (let i = 0; i < 30; i++)
      okResult(await a.append(`s${i % 3}`, { kind: "any" }, [newEvent({ i })]));
    await a.close();
    // A power loss while the index file was being created: its first page reads as zeros.
    const file = join(dir, "index.mdb");
    const bytes = await readFile(file);
    bytes.fill(0, 0, 4096);
    await writeFile(file, bytes);

    const logger = recordingLogger();
    const b = await openStore({ logger });
    expect(logger.warnings).toContain("the index is emptied and rebuilt from the log");
    expect(b.stats().events).toBe(30);
    expect(await streamRevisions(b, "s1")).toEqual(Array.from({ length: 10 }, (_, i) => i));
  });

  it("truncates a record torn mid-write after the checkpoint", async () => {
    const a = await openStore();
    okResult(await a.append("t", { kind: "any" }, events(3)));
    await a.close();
    const durable = (await stat(join(dir, SEGMENT))).size;
    const b = await openStore();
    const torn = okResult(
      await b.append("t", { kind: "any" }, [newEvent({ big: "x".repeat(500) })]),
    );
    await b.abort();
    // Power loss: the last record is half on disk and the lazy checkpoint never reached it.
    await truncate(join(dir, SEGMENT), torn.position + 100);
    await setCheckpoint(durable);
    const logger = recordingLogger();
    const c = await openStore({ logger });
    expect(logger.warnings).toEqual(["truncating a torn tail of the log"]);
    expect((await stat(join(dir, SEGMENT))).size).toBe(durable);
    expect(await streamRevisions(c, "t")).toEqual([0, 1, 2]);
    expect(okResult(await c.append("t", { kind: "exact", revision: 2 }, events(1))).position).toBe(
      durable,
    );
  });

  it("truncates garbage appended after the last record", async () => {
    const a = await openStore();
    okResult(await a.append("g", { kind: "any" }, events(2)));
    await a.close();
    const size = (await stat(join(dir, SEGMENT))).size;
    await appendFile(join(dir, SEGMENT), Buffer.from("this is not a record at all, just noise"));
    const logger = recordingLogger();
    const b = await openStore({ logger });
    expect(logger.warnings.length).toBe(1);
    expect((await stat(join(dir, SEGMENT))).size).toBe(size);
    expect(await streamRevisions(b, "g")).toEqual([0, 1]);
  });

  it("drops a batch whose last record is missing", async () => {
    const a = await openStore();
    okResult(await a.append("b", { kind: "any" }, events(1)));
    await a.close();
    const durable = (await stat(join(dir, SEGMENT))).size;
    const b = await openStore();
    okResult(await b.append("b", { kind: "any" }, events(3)));
    const third = (
      await b.readStream("b", { direction: "backwards", fromRevision: "end", maxCount: 1 })
    ).events[0]!;
    await b.abort();
    await truncate(join(dir, SEGMENT), third.position); // records 1 and 2 intact, 3 gone
    await setCheckpoint(durable);
    const c = await openStore({ logger: recordingLogger() });
    expect(await streamRevisions(c, "b")).toEqual([0]);
    expect(c.commitPosition).toBe(durable);
  });

  it("detects a bit-flip before the checkpoint as CORRUPTED", async () => {
    const a = await openStore();
    okResult(await a.append("f", { kind: "any" }, events(3)));
    okResult(await a.append("f", { kind: "any" }, events(3)));
    await a.close();
    const file = join(dir, SEGMENT);
    const bytes = await readFile(file);
    const second = bytes.readUInt32LE(0); // the second record starts right after the first
    bytes[second + 40] = (bytes[second + 40] ?? 0) ^ 0x01;
    await writeFile(file, bytes);

    // With the index, open is fast and reading the damaged event reports it: read from the
    // file (not held in memory since the open), every record's CRC is checked.
    const b = await openStore();
    await expect(
      b.readStream("f", { direction: "forwards", fromRevision: 0, maxCount: 10 }),
    ).rejects.toMatchObject({ code: "CORRUPTED" });
    for (const direction of ["forwards", "backwards"] as const)
      await expect(
        b.readAll({ direction, fromPosition: direction === "forwards" ? 0 : "end", maxCount: 10 }),
      ).rejects.toMatchObject({ code: "CORRUPTED" });
    await b.close();
    // Without the index, recovery scans the log and refuses to open.
    await removeIndex(dir);
    const err = await openError(createDiskStore({ dir, ...NO_PREALLOCATION }));
    expect(err.code).toBe("CORRUPTED");
    expect(err.message).toContain(`position ${second}`);
  });

  it("refuses to open when the log is shorter than the checkpoint", async () => {
    const a = await openStore();
    okResult(await a.append("x", { kind: "any" }, events(4)));
    await a.close();
    const size = (await stat(join(dir, SEGMENT))).size;
    await truncate(join(dir, SEGMENT), size - 10);
    expect((await openError(createDiskStore({ dir, ...NO_PREALLOCATION }))).code).toBe("CORRUPTED");
    await removeIndex(dir);
    expect((await openError(createDiskStore({ dir, ...NO_PREALLOCATION }))).code).toBe("CORRUPTED");
  });

  it("spreads the log over segments, records spanning files", async () => {
    const a = await openStore({ segmentBytes: 4096 });
    for (let i = 0; i < 40; i++)
      okResult(
        await a.append(`seg-${i % 2}`, { kind: "any" }, [newEvent({ i, pad: "p".repeat(300) })]),
      );
    await a.abort();
    expect((await readdir(dir)).filter((n) => n.startsWith("chunk-")).length).toBeGreaterThan(3);
    const b = await openStore({ segmentBytes: 1 << 20 }); // the layout recorded at creation wins
    const all = await b.readAll({ direction: "forwards", fromPosition: 0, maxCount: 1000 });
    expect(all.events.map((e) => (dataOf(e) as { i: number }).i)).toEqual(
      Array.from({ length: 40 }, (_, i) => i),
    );
    const back = await b.readAll({ direction: "backwards", fromPosition: "end", maxCount: 1000 });
    expect(back.events.length).toBe(40);
    expect(await streamRevisions(b, "seg-1")).toEqual(Array.from({ length: 20 }, (_, i) => i));
    okResult(await b.append("seg-1", { kind: "exact", revision: 19 }, events(1)));
    expect(b.stats().logBytes).toBe(b.commitPosition);
  });
});

describe("failures and cluster hooks", () => {
  it("an fsync failure rejects every queued append and refuses further writes", async () => {
    class FailingLog extends MemoryLog {
      failNext = false;
      syncs = 0;
      override async sync(): Promise<void> {
        this.syncs++;
        if (this.failNext)
          throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      }
    }
    const log = new FailingLog();
    const store = new LogStore(log);
    await store.open();
    okResult(await store.append("a", { kind: "any" }, events(1)));
    log.failNext = true;
    const pending = Array.from({ length: 5 }, () => store.append("a", { kind: "any" }, events(1)));
    const settled = await Promise.allSettled(pending);
    expect(settled.map((s) => s.status)).toEqual([
      "rejected",
      "rejected",
      "rejected",
      "rejected",
      "rejected",
    ]);
    expect(
      settled.every(
        (s) => s.status === "rejected" && (s.reason as { code?: string }).code === "IO_FAILED",
      ),
    ).toBe(true);
    await expect(store.append("a", { kind: "any" }, events(1))).rejects.toMatchObject({
      code: "IO_FAILED",
    });
    expect(store.stats().events).toBe(1);
    const read = await store.readStream("a", {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 10,
    });
    expect(read.events.length).toBe(1);
    await store.close();
  });

  it("with autoCommit off, nothing is visible or acknowledged until setCommitPosition", async () => {
    const store = createMemoryStore({ autoCommit: false });
    await store.open();
    let acked = false;
    const p = store.append("c", { kind: "any" }, events(2)).then((r) => {
      acked = true;
      return r;
    });
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (store.stats().durablePosition > 0) resolve();
        else setImmediate(check);
      };
      check();
    });
    expect(acked).toBe(false);
    expect(store.commitPosition).toBe(0);
    await expect(
      store.readStream("c", { direction: "forwards", fromRevision: 0, maxCount: 5 }),
    ).rejects.toMatchObject({
      code: "STREAM_NOT_FOUND",
    });
    store.setCommitPosition(store.stats().durablePosition);
    const r = okResult(await p);
    expect(r.nextExpectedVersion).toBe(1);
    expect(
      (await store.readStream("c", { direction: "forwards", fromRevision: 0, maxCount: 5 })).events
        .length,
    ).toBe(2);
    await store.close();
  });
});
