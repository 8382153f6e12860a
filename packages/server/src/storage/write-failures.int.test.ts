/**
 * A write or fsync that fails: the log goes back to what is durable (end, last epoch, file
 * size), nothing undurable is acknowledged, and for want of space the store refuses writes
 * with STORAGE_FULL, keeps serving reads and writes again once space returns.
 */
import { randomUUID } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StoreError } from "../streams/types.js";
import { DiskLog } from "./disk-log.js";
import { LogStore } from "./index.js";
import { MemoryLog } from "./memory-log.js";
import { dataOf, events, newEvent, okResult } from "./test-helpers.js";
import { TempDiskStores } from "./test-disk-stores.js";

function ioError(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated, ${syscall}`), { code, syscall });
}

/** A disk log whose next writes or syncs fail on demand (after the bytes reached the file). */
class FaultyDiskLog extends DiskLog {
  failSyncWith: string | null = null;
  failTruncateWith: string | null = null;
  override async sync(background?: boolean): Promise<void> {
    if (this.failSyncWith !== null) throw ioError(this.failSyncWith, "fdatasync");
    return super.sync(background);
  }
  override async truncate(position: number): Promise<void> {
    if (this.failTruncateWith !== null) throw ioError(this.failTruncateWith, "ftruncate");
    return super.truncate(position);
  }
}

/** A memory log that runs out of space: a write stores part of its bytes, then ENOSPC. */
class FillingLog extends MemoryLog {
  full = false;
  free = 0;
  probes = 0;
  override async write(position: number, data: Buffer): Promise<void> {
    if (!this.full) return super.write(position, data);
    await super.write(position, data.subarray(0, data.length >> 1));
    throw ioError("ENOSPC", "write");
  }
  override async availableBytes(): Promise<number> {
    this.probes++;
    return this.free;
  }
}

async function waitUntil(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("expected a rejection");
}

describe("a failed fsync", () => {
  const temp = new TempDiskStores();
  const stores = temp.stores;
  let dir: string;
  beforeEach(async () => {
    dir = await temp.setUp();
  });
  afterEach(() => temp.tearDown());

  it("rolls the log, its end and its last epoch back to what is durable, file included", async () => {
    const log = new FaultyDiskLog({ dir, segmentBytes: 4096 });
    const store = new LogStore(log, { autoCommit: false });
    stores.push(store);
    await store.open();
    const epoch1 = store.appendEpoch({
      epochNumber: 1,
      epochId: randomUUID(),
      leaderInstanceId: "a",
    });
    const first = store.append("s", { kind: "any" }, events(3));
    await waitUntil(() => store.durableEnd === store.endPosition);
    const durable = store.durableEnd;
    store.setCommitPosition(durable);
    await epoch1;
    okResult(await first);

    log.failSyncWith = "EIO";
    const epoch2 = store.appendEpoch({
      epochNumber: 2,
      epochId: randomUUID(),
      leaderInstanceId: "a",
    });
    const big = Array.from({ length: 40 }, (_, i) => newEvent({ i, pad: "p".repeat(300) }));
    const more = store.append("s", { kind: "any" }, big); // crosses into new segments
    expect(store.lastEpoch).toBe(2);
    expect(store.endPosition).toBeGreaterThan(durable + 4096);
    const errs = await Promise.all([rejection(epoch2), rejection(more)]);
    for (const err of errs) {
      expect(err).toBeInstanceOf(StoreError);
      expect(err.code).toBe("IO_FAILED");
      expect((err.cause as NodeJS.ErrnoException).code).toBe("EIO");
      expect(err.message).toMatch(
        /^log fsync failed \(EIO: simulated, fdatasync\): the write was not made, and the store refuses further writes until the node is restarted$/,
      );
    }
    expect(store.stats().writesRefused).toMatch(/^log fsync failed \(EIO/);
    await waitUntil(() => log.end === durable);
    // What the consensus core votes with is what is really on disk.
    expect(store.endPosition).toBe(durable);
    expect(store.durableEnd).toBe(durable);
    expect(store.lastEpoch).toBe(1);
    expect(store.epochs().map((e) => e.epochNumber)).toEqual([1]);
    expect(store.isRecordBoundary(durable)).toBe(true);
    expect(store.readRaw(0, 1 << 20).end).toBe(durable);
    const sizes = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        stat(join(dir, `chunk-00000${i}.log`)).then(
          (s) => s.size,
          () => 0,
        ),
      ),
    );
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(durable);
    // Writes stay refused, reads go on.
    await expect(store.append("s", { kind: "any" }, events(1))).rejects.toMatchObject({
      code: "IO_FAILED",
    });
    const read = await store.readStream("s", {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 100,
    });
    expect(read.events.map((e) => e.revision)).toEqual([0, 1, 2]);
  });

  it("says a failed write's outcome is unknown when the log cannot be cut back", async () => {
    const log = new FaultyDiskLog({ dir, segmentBytes: 1 << 20 });
    const store = new LogStore(log);
    stores.push(store);
    await store.open();
    okResult(await store.append("s", { kind: "any" }, events(2)));
    log.failSyncWith = "EIO";
    log.failTruncateWith = "EIO";
    const err = await rejection(store.append("s", { kind: "any" }, events(1)));
    expect(err).toBeInstanceOf(StoreError);
    expect(err.code).toBe("IO_FAILED");
    expect(err.message).toMatch(
      /^log fsync failed \(EIO: simulated, fdatasync\): the write's outcome is unknown \(the log could not be cut back, so it may be there after a restart: retry with the same event ids\), and the store refuses further writes until the node is restarted$/,
    );
    // Its records are still in the file: a restart finds them (the outcome really is unknown).
    await store.close();
    const again = new LogStore(new DiskLog({ dir, segmentBytes: 1 << 20 }));
    stores.push(again);
    await again.open();
    expect(again.stats().events).toBe(3);
  });

  it("acknowledges nothing that was not durable, and a reopen finds only the durable records", async () => {
    const log = new FaultyDiskLog({ dir, segmentBytes: 4096 });
    const store = new LogStore(log);
    stores.push(store);
    await store.open();
    okResult(await store.append("s", { kind: "any" }, events(2)));
    log.failSyncWith = "EIO";
    const settled = await Promise.allSettled(
      Array.from({ length: 5 }, () => store.append("s", { kind: "any" }, events(1))),
    );
    expect(settled.map((s) => s.status)).toEqual(Array(5).fill("rejected"));
    expect(store.commitPosition).toBe(store.durableEnd);
    await store.close();
    const again = new LogStore(new DiskLog({ dir, segmentBytes: 4096 }));
    stores.push(again);
    await again.open();
    expect(again.stats().events).toBe(2);
  });
});

describe("a full disk (simulated)", () => {
  async function fullStore(options: { autoCommit?: boolean } = {}): Promise<{
    log: FillingLog;
    store: LogStore;
  }> {
    const log = new FillingLog();
    const store = new LogStore(log, { storageFullProbeEveryMs: 5, ...options });
    await store.open();
    return { log, store };
  }

  it("refuses writes with STORAGE_FULL, keeps reads, and writes again by itself once space returns", async () => {
    const { log, store } = await fullStore();
    okResult(await store.append("s", { kind: "any" }, events(3)));
    okResult(await store.append("$$m", { kind: "any" }, [newEvent({ maxCount: 10 }, "$metadata")]));
    okResult(await store.append("m", { kind: "any" }, events(1)));
    const durable = store.durableEnd;

    log.full = true;
    const retried = newEvent({ n: "retried" });
    const refused = await Promise.allSettled([
      store.append("s", { kind: "any" }, [retried]),
      store.append("s", { kind: "exact", revision: 3 }, events(2)), // after the one above
      store.append("new", { kind: "no_stream" }, events(1)),
      store.delete("m", { kind: "any" }, false), // a soft delete: metadata in the write view
      store.append("$$s", { kind: "any" }, [newEvent({ maxCount: 1 }, "$metadata")]),
      store.delete("s", { kind: "any" }, true), // a tombstone
    ]);
    for (const [i, r] of refused.entries()) {
      expect([i, r.status]).toEqual([i, "rejected"]);
      const err = (r as PromiseRejectedResult).reason as StoreError;
      expect(err).toBeInstanceOf(StoreError);
      expect(err.code).toBe("STORAGE_FULL");
      expect(err.message).toMatch(/^the disk is full \(ENOSPC: simulated, write\)/);
      expect(err.message).toContain("reads still work");
    }
    await waitUntil(() => store.stats().storageFull && log.end === durable);
    expect(store.endPosition).toBe(durable);
    expect(store.durableEnd).toBe(durable);
    // While full: refused at once, reads served.
    await expect(store.append("s", { kind: "any" }, events(1))).rejects.toMatchObject({
      code: "STORAGE_FULL",
    });
    const read = await store.readStream("s", {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 10,
    });
    expect(read.events.map((e) => e.revision)).toEqual([0, 1, 2]);
    expect(
      (await store.readAll({ direction: "forwards", fromPosition: 0, maxCount: 100 })).events
        .length,
    ).toBe(5);

    // Not enough room yet: still full.
    log.full = false;
    log.free = 1000;
    const probes = log.probes;
    await waitUntil(() => log.probes >= probes + 2);
    expect(store.stats().storageFull).toBe(true);
    await expect(store.append("s", { kind: "any" }, events(1))).rejects.toMatchObject({
      code: "STORAGE_FULL",
    });
    log.free = 10 * 1024 * 1024;
    await waitUntil(() => !store.stats().storageFull);

    // The write view was rolled back exactly: the retried id is written (not "found" in the
    // idempotency window), revisions continue from the durable ones, the soft delete and
    // the tombstone never happened, and the metadata is the durable one.
    const again = okResult(await store.append("s", { kind: "any" }, [retried]));
    expect(again.nextExpectedVersion).toBe(3);
    expect(again.position).toBe(durable);
    okResult(await store.append("s", { kind: "exact", revision: 3 }, events(1)));
    expect((await store.append("m", { kind: "no_stream" }, events(1))).ok).toBe(false);
    okResult(await store.append("new", { kind: "no_stream" }, events(1)));
    expect(await store.getMetadata("m")).toEqual({ maxCount: 10 });
    expect(await store.getMetadata("s")).toBeNull();
    const after = await store.readStream("s", {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 10,
    });
    expect(after.events.map((e) => e.revision)).toEqual([0, 1, 2, 3, 4]);
    expect(dataOf(after.events[3]!)).toEqual({ n: "retried" });
    await store.close();
  });

  it("rolls back the write view of a follower's raw batches and of uncommitted writes", async () => {
    const { log, store } = await fullStore({ autoCommit: false });
    const leader = new LogStore(new MemoryLog(), { autoCommit: true });
    await leader.open();
    okResult(await leader.append("r", { kind: "any" }, events(2)));
    okResult(await leader.append("r", { kind: "any" }, events(2)));
    const raw = leader.readRaw(0, 1 << 20);
    const [firstEnd] = raw.batchEnds as [number, number];

    const ok = store.appendRaw(0, raw.bytes.subarray(0, firstEnd));
    await waitUntil(() => store.durableEnd === firstEnd);
    log.full = true;
    const refused = store.appendRaw(firstEnd, raw.bytes.subarray(firstEnd));
    expect((await rejection(refused)).message).toMatch(/disk is full/);
    await waitUntil(() => store.stats().storageFull && log.end === firstEnd);
    expect(store.endPosition).toBe(firstEnd);
    // The durable, uncommitted batch is still pending and commits.
    store.setCommitPosition(firstEnd);
    await ok;
    log.full = false;
    log.free = Number.POSITIVE_INFINITY;
    await waitUntil(() => !store.stats().storageFull);
    // The same raw batch continues the log again (revisions 2, 3 of r).
    const resent = store.appendRaw(firstEnd, raw.bytes.subarray(firstEnd));
    await waitUntil(() => store.durableEnd === raw.end);
    store.setCommitPosition(raw.end);
    await resent;
    const read = await store.readStream("r", {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 10,
    });
    expect(read.events.map((e) => e.revision)).toEqual([0, 1, 2, 3]);
    await store.close();
    await leader.close();
  });
});
