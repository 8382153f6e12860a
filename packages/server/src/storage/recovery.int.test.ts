/**
 * Recovery on real segment files: what open() makes durable, what it cuts (a torn tail) and
 * what it refuses (damage in the middle, fsync'd data damaged, bytes missing between segments).
 */
import { readFile, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskLog } from "./disk-log.js";
import { createDiskStore, LogStore, type DiskStoreOptions } from "./index.js";
import { newEvent, okResult, openError, recordingLogger } from "./test-helpers.js";
import { setCheckpoint as setDiskCheckpoint, TempDiskStores } from "./test-disk-stores.js";

const SEGMENT_BYTES = 4096;

function segment(i: number): string {
  return `chunk-${String(i).padStart(6, "0")}.log`;
}

describe("recovery on segment files", () => {
  // File sizes are the log's end here: no zeros ahead of it (see preallocate.int.test.ts).
  const temp = new TempDiskStores({ segmentBytes: SEGMENT_BYTES, preallocateBytes: 0 });
  const stores = temp.stores;
  let dir: string;
  beforeEach(async () => {
    dir = await temp.setUp();
  });
  afterEach(() => temp.tearDown());
  const openStore = (options: Partial<DiskStoreOptions> = {}) => temp.open(options);

  const setCheckpoint = (position: number) => setDiskCheckpoint(dir, position);

  /** Appends `n` single-event batches of ~`pad` bytes each; returns each event's position. */
  async function writeBatches(
    s: LogStore,
    stream: string,
    n: number,
    pad = 200,
  ): Promise<number[]> {
    const positions: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = okResult(
        await s.append(stream, { kind: "any" }, [newEvent({ i, pad: "p".repeat(pad) })]),
      );
      positions.push(r.position);
    }
    return positions;
  }

  async function revisions(s: LogStore, stream: string): Promise<number[]> {
    const r = await s.readStream(stream, {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 10_000,
    });
    return r.events.map((e) => e.revision);
  }

  async function flipBit(position: number): Promise<void> {
    const index = Math.floor(position / SEGMENT_BYTES);
    const file = join(dir, segment(index));
    const bytes = await readFile(file);
    const at = position - index * SEGMENT_BYTES;
    bytes[at] = (bytes[at] as number) ^ 0x10;
    await writeFile(file, bytes);
  }

  async function segmentSizes(): Promise<number[]> {
    const names = (await readdir(dir)).filter((n) => n.startsWith("chunk-")).sort();
    return Promise.all(names.map(async (n) => (await stat(join(dir, n))).size));
  }

  describe("open makes the recovered log durable", () => {
    async function openObserved(): Promise<{ store: LogStore; synced: string[] }> {
      const synced: string[] = [];
      const store = new LogStore(
        new DiskLog({
          dir,
          segmentBytes: SEGMENT_BYTES,
          onRecoverySync: (path) => synced.push(path),
        }),
      );
      stores.push(store);
      await store.open();
      return { store, synced };
    }

    it("fdatasyncs every segment holding data past the fsync'd checkpoint, then the directory", async () => {
      const a = await openStore();
      await writeBatches(a, "d", 40); // ~10 KB: three segments
      const end = a.endPosition;
      await a.abort();
      expect((await segmentSizes()).length).toBe(3);
      // A process crash after writes it never fsync'd: the checkpoint knows only of the
      // first segment and part of the second; the rest sits in the page cache.
      await setCheckpoint(SEGMENT_BYTES + 100);

      const { store, synced } = await openObserved();
      expect(synced).toEqual([join(dir, segment(1)), join(dir, segment(2)), dir]);
      expect(store.durableEnd).toBe(end);
      expect(store.commitPosition).toBe(end);
    });

    it("fdatasyncs the whole log when there is no checkpoint", async () => {
      const a = await openStore();
      await writeBatches(a, "d", 20);
      await a.abort();
      await writeFile(join(dir, "checkpoint"), Buffer.alloc(0));
      const { synced } = await openObserved();
      const segments = (await segmentSizes()).map((_, i) => join(dir, segment(i)));
      expect(synced).toEqual([...segments, dir]);
    });

    it("syncs no segment after a clean close (everything is at or below the checkpoint)", async () => {
      const a = await openStore();
      await writeBatches(a, "d", 20);
      await a.close();
      const { store, synced } = await openObserved();
      expect(synced).toEqual([dir]);
      expect(store.durableEnd).toBe(store.endPosition);
    });
  });

  describe("torn tail or corruption", () => {
    it("refuses a bit flip after the checkpoint that valid records follow, naming file and offset", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "m", 12);
      const end = a.endPosition;
      await a.abort();
      // The lazy checkpoint lags (it is not fsync'd): it says nothing past the first record.
      await setCheckpoint(positions[1] as number);
      const damaged = positions[5] as number;
      await flipBit(damaged + 30);

      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      const segmentIndex = Math.floor(damaged / SEGMENT_BYTES);
      expect(err.message).toContain(
        `${segment(segmentIndex)} at offset ${damaged - segmentIndex * SEGMENT_BYTES}`,
      );
      expect(err.message).toContain(`position ${damaged}`);
      expect(err.message).toContain(`valid record follows it at position ${positions[6]}`);
      expect(err.message).toMatch(/re-syncs from the cluster/);
      expect(err.message).toMatch(/restore the data directory from a backup/);
      // Nothing was cut.
      expect((await segmentSizes()).reduce((x, y) => x + y, 0)).toBe(end);
    });

    it("refuses zeroed bytes in the middle of the log (a lost block) with valid records after them", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "z", 12);
      await a.abort();
      await setCheckpoint(0);
      const file = join(dir, segment(0));
      const bytes = await readFile(file);
      const from = positions[2] as number;
      bytes.fill(0, from, from + 64);
      await writeFile(file, bytes);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain(`${segment(0)} at offset ${from}`);
      expect(err.message).toContain(`valid record follows it at position ${positions[3]}`);
    });

    it("still cuts a damaged last record (nothing valid after it) as a torn tail", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "t", 12);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      const last = positions[11] as number;
      await flipBit(last + 40);
      const logger = recordingLogger();
      const b = await openStore({ logger });
      expect(logger.warnings).toEqual(["truncating a torn tail of the log"]);
      expect(await revisions(b, "t")).toEqual(Array.from({ length: 11 }, (_, i) => i));
      expect(b.endPosition).toBe(last);
      expect((await segmentSizes()).reduce((x, y) => x + y, 0)).toBe(last);
    });

    it("still cuts a record torn in half at the end of the last segment", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "h", 12);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      const last = positions[11] as number;
      const index = Math.floor(last / SEGMENT_BYTES);
      await truncate(join(dir, segment(index)), last - index * SEGMENT_BYTES + 50);
      const b = await openStore({ logger: recordingLogger() });
      expect(await revisions(b, "h")).toEqual(Array.from({ length: 11 }, (_, i) => i));
      expect(b.endPosition).toBe(last);
    });

    /** Zeros `bytes` at log position `at` (a sector a power loss kept the disk from writing). */
    async function zeroAt(at: number, bytes: number): Promise<void> {
      for (let pos = at; pos < at + bytes;) {
        const index = Math.floor(pos / SEGMENT_BYTES);
        const file = join(dir, segment(index));
        const data = await readFile(file);
        const from = pos - index * SEGMENT_BYTES;
        const to = Math.min(data.length, from + (at + bytes - pos));
        data.fill(0, from, to);
        await writeFile(file, data);
        pos += to - from;
      }
    }

    /** The first position >= `from` at a multiple of 512 in its segment file. */
    const sectorAfter = (from: number): number => {
      const offset = from % SEGMENT_BYTES;
      const aligned = from + ((512 - (offset % 512)) % 512);
      return aligned % SEGMENT_BYTES > SEGMENT_BYTES - 512 ? sectorAfter(aligned + 512) : aligned;
    };

    it("cuts a torn last write: damage holding a sector never written (zeros), valid records after it", async () => {
      const a = await openStore();
      // Records of ~1.5 KB: each holds a whole 512-byte sector.
      const positions = await writeBatches(a, "w", 12, 1500);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      // A power loss during the last write: a sector of record 6 never reached the disk (the
      // preallocated zeros are still there); the disk wrote the sectors after it.
      const torn = positions[6] as number;
      const sector = sectorAfter(torn + 20);
      expect(sector + 512).toBeLessThan(positions[7] as number);
      await zeroAt(sector, 512);

      const logger = recordingLogger();
      const b = await openStore({ logger });
      expect(logger.warnings).toEqual([
        expect.stringMatching(
          /^truncating a torn tail of the log: valid records follow the damage, but a sector of it the disk never wrote/,
        ),
      ]);
      expect(await revisions(b, "w")).toEqual([0, 1, 2, 3, 4, 5]);
      expect(b.endPosition).toBe(torn);
    });

    it("cuts a torn last write that begins mid-sector: zeros from the record to the sector's end", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "m", 12, 1500);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      // The sector the last write began in kept what it held before (the end of the log,
      // then zeros); the disk wrote the sectors after it.
      const torn = [6, 7, 8]
        .map((i) => positions[i] as number)
        .find((p) => p % 512 !== 0 && 512 - (p % 512) >= 4) as number;
      await zeroAt(torn, 512 - (torn % 512));

      const logger = recordingLogger();
      const b = await openStore({ logger });
      expect(logger.warnings).toEqual([
        expect.stringMatching(/a sector of it the disk never wrote/),
      ]);
      expect(b.endPosition).toBe(torn);
    });

    it("refuses zeros from a record's start that stop short of its sector's end", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "n", 12, 1500);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      const damaged = [6, 7, 8]
        .map((i) => positions[i] as number)
        .find((p) => 512 - (p % 512) >= 16) as number;
      await zeroAt(damaged, 8);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain(`position ${damaged}`);
    });

    it("refuses the same damage when it holds no whole sector of zeros (a flipped bit)", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "f", 12, 1500);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      await flipBit((positions[6] as number) + 700);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain(`valid record follows it at position ${positions[7]}`);
    });

    it("refuses a never-written sector when later damage holds none (not one torn write)", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "l", 12, 1500);
      await a.abort();
      await setCheckpoint(positions[3] as number);
      await zeroAt(sectorAfter((positions[6] as number) + 20), 512);
      await flipBit((positions[9] as number) + 700);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain(`position ${positions[6]}`);
    });

    it("refuses a never-written sector before the checkpoint: that data was synced", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "k", 12, 1500);
      await a.abort();
      await setCheckpoint(positions[9] as number);
      await zeroAt(sectorAfter((positions[6] as number) + 20), 512);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain("before the checkpoint");
    });

    it("refuses a damaged record before the checkpoint with a clear, actionable error", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "c", 12);
      await a.close();
      await setCheckpoint(a.durableEnd);
      await writeFile(join(dir, "index.snapshot"), Buffer.from("damaged")); // force a full scan
      const damaged = positions[11] as number; // even the last record: it was fsync'd
      await flipBit(damaged + 40);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      const index = Math.floor(damaged / SEGMENT_BYTES);
      expect(err.message).toContain(
        `${segment(index)} at offset ${damaged - index * SEGMENT_BYTES}`,
      );
      expect(err.message).toContain("before the checkpoint");
      expect(err.message).toMatch(/re-syncs from the cluster/);
      expect(err.message).toMatch(/from a backup/);
    });
  });

  describe("a short segment before the last", () => {
    it("opens when only empty segments follow it (a crash while moving to a new segment)", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "s", 30); // two segments and a part
      await a.abort();
      expect((await segmentSizes()).length).toBe(3);
      // Power loss: segment 1's last pages and segment 2's data never reached the disk;
      // segment 2's directory entry did.
      await setCheckpoint(SEGMENT_BYTES);
      const cut = positions.find((p) => p > SEGMENT_BYTES + 1000) as number;
      await truncate(join(dir, segment(1)), cut + 10 - SEGMENT_BYTES);
      await truncate(join(dir, segment(2)), 0);
      const logger = recordingLogger();
      const b = await openStore({ logger });
      expect(logger.warnings).toEqual([
        "dropping empty segments after a short one (a crash while the log moved to a new segment)",
        "truncating a torn tail of the log",
      ]);
      const kept = positions.indexOf(cut);
      expect(await revisions(b, "s")).toEqual(Array.from({ length: kept }, (_, i) => i));
      expect(b.endPosition).toBe(cut);
      expect(await segmentSizes()).toEqual([SEGMENT_BYTES, cut - SEGMENT_BYTES]);
      // And writes continue from there, across a new segment again.
      await writeBatches(b, "s", 20);
      expect(await revisions(b, "s")).toEqual(Array.from({ length: kept + 20 }, (_, i) => i));
    });

    it("refuses when a later segment holds data: bytes in the middle are missing", async () => {
      const a = await openStore();
      await writeBatches(a, "s", 30);
      const end = a.endPosition;
      await a.abort();
      // The checkpoint says all of it was synced.
      await setCheckpoint(end);
      await truncate(join(dir, segment(1)), 1000);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain(`segment ${segment(1)} in ${dir} has 1000 bytes of 4096`);
      expect(err.message).toContain(`but ${segment(2)} after it holds data`);
      expect(err.message).toContain(
        `3096 bytes in the middle of the log (from log position 5096) are missing`,
      );
      expect(err.message).toMatch(/from a backup/);
      expect((await segmentSizes()).length).toBe(3); // nothing removed
    });

    it("refuses it without a checkpoint too: nothing says those bytes were not synced", async () => {
      const a = await openStore();
      await writeBatches(a, "s", 30);
      await a.abort();
      await rm(join(dir, "checkpoint"));
      await truncate(join(dir, segment(1)), 1000);
      const err = await openError(createDiskStore({ dir, segmentBytes: SEGMENT_BYTES }));
      expect(err.code).toBe("CORRUPTED");
      expect(err.message).toContain("bytes in the middle of the log");
    });

    it("cuts a torn write that crossed into the next segment: its part in the first cut short", async () => {
      const a = await openStore();
      const positions = await writeBatches(a, "x", 30, 300);
      await a.abort();
      // A power loss during the last write, which crossed from segment 1 into segment 2:
      // segment 1's new size never reached the disk (it ends early, after the checkpoint),
      // segment 2's pages did.
      await setCheckpoint(SEGMENT_BYTES);
      const cutAt = positions.find((p) => p > SEGMENT_BYTES + 1500) as number;
      await truncate(join(dir, segment(1)), cutAt - SEGMENT_BYTES);
      expect((await segmentSizes())[2]).toBeGreaterThan(0);

      const logger = recordingLogger();
      const b = await openStore({ logger });
      expect(logger.warnings).toEqual([
        "a segment ends early, after the last position known durable, and a later one holds " +
          "data: the missing bytes are taken as never written (zeros)",
        expect.stringMatching(/^truncating a torn tail of the log: valid records follow/),
      ]);
      expect(b.endPosition).toBe(cutAt);
      expect(await revisions(b, "x")).toEqual(
        Array.from({ length: positions.indexOf(cutAt) }, (_, i) => i),
      );
      expect(await segmentSizes()).toEqual([SEGMENT_BYTES, cutAt - SEGMENT_BYTES]);
      await writeBatches(b, "x", 10, 300);
      expect(await revisions(b, "x")).toHaveLength(positions.indexOf(cutAt) + 10);
    });
  });
});
