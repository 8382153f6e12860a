/**
 * Stream reads from the log file itself (no tail cache): events of many streams written
 * interleaved, as aggregates are, some larger than a read block, read back whole, backwards
 * and in pages, from the file synchronously (the page cache) and, once slow reads pause that
 * (sync-read-gate.ts), through the thread pool; both give exactly what was written.
 */
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NewEvent, StoredEvent } from "../streams/types.js";
import { DiskLog } from "./disk-log.js";
import { MemoryKv } from "./index/kv.js";
import { SYNC_READS_PAUSE_MS, VERY_SLOW_SYNC_READ_MS } from "./sync-read-gate.js";
import { LogStore } from "./store.js";
import { okResult, tempDir } from "./test-helpers.js";

const STREAMS = 60;
const ROUNDS = 25;

/** Event `round` of stream `s`: sizes from a few bytes to more than a 4 KB block, some with metadata. */
function eventOf(s: number, round: number): NewEvent {
  const size = (s * 31 + round * 17) % 9 === 0 ? 6_000 + round : 20 + ((s + round) % 50);
  return {
    id: randomUUID(),
    type: `T${round % 3}`,
    isJson: true,
    data: Buffer.from(JSON.stringify({ s, round, pad: "x".repeat(size) })),
    metadata: round % 4 === 0 ? Buffer.from(JSON.stringify({ round })) : Buffer.alloc(0),
  };
}

/** What a read must give back of an event, compared field by field. */
function shape(e: StoredEvent | (NewEvent & { revision: number })) {
  return {
    id: e.id,
    type: e.type,
    revision: e.revision,
    data: Buffer.from(e.data).toString("utf8"),
    metadata: Buffer.from(e.metadata).toString("utf8"),
  };
}

/** Writes the interleaved streams into `store`; each stream's events as written. */
async function writeInterleaved(
  store: LogStore,
): Promise<Map<string, Array<NewEvent & { revision: number }>>> {
  const written = new Map<string, Array<NewEvent & { revision: number }>>();
  for (let round = 0; round < ROUNDS; round++) {
    for (let s = 0; s < STREAMS; s++) {
      const name = `agg-${s}`;
      const e = eventOf(s, round);
      okResult(await store.append(name, { kind: "any" }, [e]));
      const list = written.get(name) ?? [];
      list.push({ ...e, revision: round });
      written.set(name, list);
    }
  }
  return written;
}

/** Every way a client reads a stream, against what was written. */
async function checkReads(
  store: LogStore,
  written: Map<string, Array<NewEvent & { revision: number }>>,
): Promise<void> {
  for (const [name, want] of written) {
    const forwards = await store.readStream(name, {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 1_000,
    });
    expect(forwards.events.map(shape), name).toEqual(want.map(shape));
    const backwards = await store.readStream(name, {
      direction: "backwards",
      fromRevision: "end",
      maxCount: 1_000,
    });
    expect(backwards.events.map(shape), name).toEqual([...want].reverse().map(shape));
    // Pages of 7 from the middle, forwards, as a catch-up reader takes them.
    const paged: StoredEvent[] = [];
    let from = 3;
    for (;;) {
      const page = await store.readStream(name, {
        direction: "forwards",
        fromRevision: from,
        maxCount: 7,
      });
      paged.push(...page.events);
      if (page.endOfStream) break;
      from = page.nextRevision;
    }
    expect(paged.map(shape), name).toEqual(want.slice(3).map(shape));
  }
}

/** A disk log that counts its reads; with `slowMs`, its synchronous reads take that long. */
class CountingLog extends DiskLog {
  syncReads = 0;
  asyncReads = 0;
  slowMs = 0;
  override readSync(position: number, length: number): Buffer {
    this.syncReads++;
    const until = performance.now() + this.slowMs;
    while (performance.now() < until) {
      // busy: the read holds the thread, as a read from a busy disk would
    }
    return super.readSync(position, length);
  }
  override read(position: number, length: number): Promise<Buffer> {
    this.asyncReads++;
    return super.read(position, length);
  }
}

describe("stream reads from the log file", () => {
  let dir: string;
  let remove: () => Promise<void>;
  let log: CountingLog;
  let store: LogStore;
  beforeEach(async () => {
    ({ dir, remove } = await tempDir());
    // No tail cache: every block a read needs comes from the file.
    log = new CountingLog({ dir, segmentBytes: 64 * 1024, tailCacheBytes: 0 });
    store = new LogStore(log, { index: new MemoryKv() });
    await store.open();
  });
  afterEach(async () => {
    await store.close();
    await remove();
  });

  it("give every event of interleaved streams, read synchronously from the file", async () => {
    const written = await writeInterleaved(store);
    const before = { sync: log.syncReads, async: log.asyncReads };
    await checkReads(store, written);
    const syncReads = log.syncReads - before.sync;
    expect(syncReads).toBeGreaterThan(0);
    // Every block from the file synchronously (a block per event, mostly: each stream is read
    // three times), unless a read slowed by a busy machine paused them.
    if (store.stats().slowReadPauses === 0) {
      expect(syncReads).toBeGreaterThan(STREAMS * ROUNDS);
      expect(log.asyncReads - before.async).toBe(0);
    }
  });

  it("give the same once slow synchronous reads send them to the thread pool", async () => {
    const written = await writeInterleaved(store);
    log.slowMs = VERY_SLOW_SYNC_READ_MS;
    const before = { sync: log.syncReads, async: log.asyncReads };
    const start = performance.now();
    await checkReads(store, written);
    const elapsedMs = performance.now() - start;
    // One slow synchronous read paused them; the blocks after it came through the pool, but
    // for one more try each time a pause ran out.
    const syncReads = log.syncReads - before.sync;
    expect(syncReads).toBeGreaterThanOrEqual(1);
    expect(syncReads).toBeLessThanOrEqual(1 + Math.floor(elapsedMs / SYNC_READS_PAUSE_MS));
    expect(log.asyncReads - before.async).toBeGreaterThan(STREAMS * ROUNDS);
  });
});
