/**
 * The disk log writes zeros ahead of its end (DiskLog.preallocate), so an append overwrites
 * bytes the file already has and its fdatasync has no file size to write. Recovery then
 * reads zeros after the last record as the end of the log, and anything else as before: a
 * torn record is cut, zeros where durable data should be are refused.
 */
import { randomBytes } from "node:crypto";
import { open, readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskLog } from "./disk-log.js";
import { createDiskStore, type LogStore } from "./index.js";
import {
  dataOf,
  newEvent,
  okResult,
  openError,
  recordingLogger,
  removeIndex,
  tempDir,
  until,
} from "./test-helpers.js";
import { setCheckpoint, TempDiskStores } from "./test-disk-stores.js";

const SEGMENT = "chunk-000000.log";
const PREALLOCATE = 64 * 1024;

async function fileSize(dir: string): Promise<number> {
  return (await stat(join(dir, SEGMENT))).size;
}

/** Overwrites `length` bytes of the first segment at `at` with `fill`. */
async function overwrite(dir: string, at: number, length: number, fill = 0): Promise<void> {
  const fh = await open(join(dir, SEGMENT), "r+");
  try {
    await fh.write(Buffer.alloc(length, fill), 0, length, at);
  } finally {
    await fh.close();
  }
}

async function numbers(s: LogStore, stream: string): Promise<unknown[]> {
  const r = await s.readStream(stream, { direction: "forwards", fromRevision: 0, maxCount: 1000 });
  return r.events.map((e) => (dataOf(e) as { n: number }).n);
}

/** Appends events n = from..to-1 to `stream`, one batch each; returns their positions. */
async function appendRange(s: LogStore, stream: string, from: number, to: number) {
  const positions: number[] = [];
  for (let n = from; n < to; n++) {
    positions.push(okResult(await s.append(stream, { kind: "any" }, [newEvent({ n })])).position);
  }
  return positions;
}

describe("a preallocated disk log", () => {
  const temp = new TempDiskStores({ preallocateBytes: PREALLOCATE });
  let dir: string;
  beforeEach(async () => {
    dir = await temp.setUp();
  });
  afterEach(() => temp.tearDown());

  /** A store with zeros written ahead of its end, and `count` events in stream "s". */
  async function preallocated(count: number): Promise<{ store: LogStore; positions: number[] }> {
    const store = await temp.open();
    const positions = await appendRange(store, "s", 0, count);
    await until(async () => (await fileSize(dir)) > store.endPosition, "zeros ahead of the end");
    return { store, positions };
  }

  it("appends into the zeros without growing the file, and reopens at the last record", async () => {
    const { store: a } = await preallocated(3);
    const size = await fileSize(dir);
    const tail = (await readFile(join(dir, SEGMENT))).subarray(a.endPosition);
    expect(tail.length).toBeGreaterThan(PREALLOCATE / 2);
    expect(tail.equals(Buffer.alloc(tail.length))).toBe(true);
    await appendRange(a, "s", 3, 10);
    expect(await fileSize(dir)).toBe(size);
    const end = a.endPosition;
    await a.abort(); // no checkpoint, no index flush: as a crash leaves it

    const logger = recordingLogger();
    const b = await temp.open({ logger });
    expect(logger.warnings).toEqual([]);
    expect(b.endPosition).toBe(end);
    expect(await fileSize(dir)).toBe(end);
    expect(await numbers(b, "s")).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(
      okResult(await b.append("s", { kind: "exact", revision: 9 }, [newEvent({ n: 10 })])).position,
    ).toBe(end);
    await b.close();
    const c = await temp.open();
    expect(await numbers(c, "s")).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it("cuts a record torn inside the zeros as a torn tail", async () => {
    const { store: a } = await preallocated(3);
    const [torn] = await appendRange(a, "s", 3, 4);
    const end = a.endPosition;
    await a.abort();
    // Power loss: the last record's second half never left the page cache, and the lazy
    // checkpoint stayed before it.
    const half = Math.floor((end - (torn as number)) / 2);
    await overwrite(dir, (torn as number) + half, end - (torn as number) - half);
    await setCheckpoint(dir, torn as number);

    const logger = recordingLogger();
    const b = await temp.open({ logger });
    expect(logger.warnings).toEqual(["truncating a torn tail of the log"]);
    expect(b.endPosition).toBe(torn);
    expect(await numbers(b, "s")).toEqual([0, 1, 2]);
  });

  it("refuses zeros in the middle of the log, with records after them", async () => {
    const { store: a, positions } = await preallocated(5);
    await a.close();
    const at = positions[2] as number;
    await overwrite(dir, at, (positions[3] as number) - at);
    await removeIndex(dir); // recovery reads the whole log again
    await setCheckpoint(dir, at); // no record is cut when valid records follow, checkpoint or not
    const err = await openError(createDiskStore({ dir, preallocateBytes: PREALLOCATE }));
    expect(err.code).toBe("CORRUPTED");
    expect(err.message).toContain(`a valid record follows it at position ${positions[3]}`);
  });

  it("refuses zeros where the checkpoint says durable data is", async () => {
    const { store: a, positions } = await preallocated(5);
    await a.close(); // the checkpoint now covers all five
    const at = positions[3] as number;
    await overwrite(dir, at, (await fileSize(dir)) - at);
    await removeIndex(dir); // the checkpoint alone knows
    const err = await openError(createDiskStore({ dir, preallocateBytes: PREALLOCATE }));
    expect(err.code).toBe("CORRUPTED");
    expect(err.message).toMatch(
      new RegExp(`^log ends at ${at} \\(only zeros after it\\), before the checkpoint`),
    );
  });

  it("refuses zeros where the index says committed data is, even with the checkpoint lagging", async () => {
    const { store: a, positions } = await preallocated(5);
    await a.close(); // the index now reaches the end
    const at = positions[3] as number;
    await overwrite(dir, at, (await fileSize(dir)) - at);
    await setCheckpoint(dir, at);
    const err = await openError(createDiskStore({ dir, preallocateBytes: PREALLOCATE }));
    expect(err.code).toBe("CORRUPTED");
    expect(err.message).toMatch(
      new RegExp(
        `^log ends at ${at} \\(only zeros after it\\), before the position \\d+ its index reaches`,
      ),
    );
  });
});

describe("DiskLog preallocation under writes, syncs and truncations", () => {
  let dir: string;
  let remove: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, remove } = await tempDir());
  });
  afterEach(() => remove());

  it("never lands zeros on written bytes (a model of the log's bytes, across segments and a reopen)", async () => {
    const segmentBytes = 64 * 1024;
    const log = new DiskLog({ dir, segmentBytes, preallocateBytes: 8 * 1024 });
    await log.open();
    let model = Buffer.alloc(0);
    // Writes up to 20 KiB outrun 8 KiB preallocations in flight; truncations cut into them.
    for (let step = 0; step < 400; step++) {
      const roll = step % 23;
      if (roll === 7 && model.length > 0) {
        const to = Math.floor((model.length * ((step * 37) % 100)) / 100);
        await log.truncate(to);
        model = model.subarray(0, to);
      } else {
        const data = randomBytes(1 + ((step * 7919) % (20 * 1024)));
        data[0] = 0xff; // never a zero at a write's start
        await log.write(log.end, data);
        model = Buffer.concat([model, data]);
        if (roll % 4 === 0) await log.sync();
      }
      expect(log.end).toBe(model.length);
    }
    expect((await log.read(0, model.length)).equals(model)).toBe(true);
    await log.sync();
    await log.close();

    const names = (await readdir(dir)).filter((n) => n.startsWith("chunk-")).sort();
    const files = await Promise.all(names.map((n) => readFile(join(dir, n))));
    const bytes = Buffer.concat(files);
    expect(bytes.subarray(0, model.length).equals(model)).toBe(true);
    const tail = bytes.subarray(model.length);
    expect(tail.equals(Buffer.alloc(tail.length))).toBe(true);
    expect(files.slice(0, -1).every((f) => f.length === segmentBytes)).toBe(true);
  });
});
