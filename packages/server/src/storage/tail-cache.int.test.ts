/**
 * The disk log's tail cache on a real log: reads of the last bytes come from memory and equal
 * what was written, across segment boundaries, truncations and a reopen.
 */
import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskLog } from "./disk-log.js";
import { tempDir } from "./test-helpers.js";

const SEGMENT_BYTES = 64 * 1024;
const TAIL_BYTES = 32 * 1024;

describe("DiskLog tail cache", () => {
  let dir: string;
  let remove: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, remove } = await tempDir());
  });
  afterEach(() => remove());

  it("reads equal a model of the log under writes, truncations and a reopen", async () => {
    let log = new DiskLog({ dir, segmentBytes: SEGMENT_BYTES, tailCacheBytes: TAIL_BYTES });
    await log.open();
    let model = Buffer.alloc(0);
    const check = async (step: number) => {
      const at = (step * 7919) % (model.length + 1);
      const length = Math.min(model.length - at, 1 + ((step * 104_729) % (TAIL_BYTES * 2)));
      const want = model.subarray(at, at + length);
      expect((await log.read(at, length)).equals(want)).toBe(true);
      expect(log.readSync(at, length).equals(want)).toBe(true);
      // Held bytes, when the cache has them all, are the same bytes.
      const held = log.readHeld(at, length);
      if (held !== undefined) expect(held.equals(want)).toBe(true);
      // The last bytes, the way a live reader asks for them.
      const tailAt = Math.max(0, model.length - 300);
      expect((await log.read(tailAt, 300)).equals(model.subarray(tailAt))).toBe(true);
    };
    for (let step = 0; step < 300; step++) {
      if (step === 150) {
        await log.sync();
        await log.close();
        log = new DiskLog({ dir, segmentBytes: SEGMENT_BYTES, tailCacheBytes: TAIL_BYTES });
        await log.open();
      }
      if (step % 17 === 5 && model.length > 0) {
        const to = Math.floor((model.length * ((step * 37) % 100)) / 100);
        await log.truncate(to);
        model = model.subarray(0, to);
      } else {
        const data = randomBytes(1 + ((step * 6151) % (12 * 1024)));
        await log.write(log.end, data);
        model = Buffer.concat([model, data]);
      }
      await check(step);
    }
    await log.close();
  });

  it("serves the tail from memory and older bytes from the file", async () => {
    const log = new DiskLog({ dir, segmentBytes: SEGMENT_BYTES, tailCacheBytes: TAIL_BYTES });
    await log.open();
    const written = randomBytes(TAIL_BYTES * 2);
    await log.write(0, written);
    await log.sync();
    // Change the file behind the log's back: where a read comes from shows.
    const fh = await open(join(dir, "chunk-000000.log"), "r+");
    try {
      await fh.write(Buffer.alloc(written.length, 0x5a), 0, written.length, 0);
    } finally {
      await fh.close();
    }
    const tailAt = written.length - 100;
    expect((await log.read(tailAt, 100)).equals(written.subarray(tailAt))).toBe(true);
    expect(log.readSync(tailAt, 100).equals(written.subarray(tailAt))).toBe(true);
    expect(log.readHeld(tailAt, 100)?.equals(written.subarray(tailAt))).toBe(true);
    expect((await log.read(0, 100)).equals(Buffer.alloc(100, 0x5a))).toBe(true);
    // Bytes only the file has are not held: their reader checks their CRCs.
    expect(log.readHeld(0, 100)).toBeUndefined();
    expect(log.readHeld(TAIL_BYTES - 10, 20)).toBeUndefined();
    // A read straddling the cache's start goes to the file as a whole.
    expect((await log.read(TAIL_BYTES - 10, 20)).equals(Buffer.alloc(20, 0x5a))).toBe(true);
    await log.close();
  });
});
