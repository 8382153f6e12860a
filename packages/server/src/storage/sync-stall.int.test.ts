// The injected fdatasync stall (sync-stall.ts) and what it does to the event loop: an inline
// sync blocks it for the whole stall; with setSyncOffLoop (cluster nodes) it keeps turning.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { DiskLog } from "./disk-log.js";
import { events, okResult } from "./test-helpers.js";

const STALL_MS = 400;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

afterAll(() => {
  delete process.env["CHORUS_TEST_SYNC_STALL"];
});

/** The longest gap between turns of a 5 ms interval timer while `work` runs. */
async function longestLoopGapMs(work: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 5);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(longest, performance.now() - last);
}

/** A store on a fresh log in a temp dir, with the stall injection on; and its stall file. */
async function stallableStore(
  makeLog?: (Log: typeof DiskLog, options: { dir: string; segmentBytes: number }) => DiskLog,
) {
  // Read when sync-stall.ts is loaded: set it first, then load the store.
  process.env["CHORUS_TEST_SYNC_STALL"] = "1";
  const { DiskLog: Log } = await import("./disk-log.js");
  const { LogStore } = await import("./store.js");
  const { SYNC_STALL_ENABLED, SYNC_STALL_FILE } = await import("./sync-stall.js");
  expect(SYNC_STALL_ENABLED).toBe(true);
  const dir = await mkdtemp(join(tmpdir(), "chorus-sync-stall-"));
  dirs.push(dir);
  const options = { dir, segmentBytes: 1024 * 1024 };
  const log = makeLog?.(Log, options) ?? new Log(options);
  const store = new LogStore(log);
  await store.open();
  const stall = (ms: number) => writeFile(join(dir, SYNC_STALL_FILE), String(ms));
  return { store, log, stall };
}

describe("a stalled fdatasync", () => {
  it.each([
    ["blocks the event loop when the sync runs inline", false],
    ["leaves the event loop free with setSyncOffLoop", true],
  ])("%s", async (_name, offLoop) => {
    const { store, stall } = await stallableStore();
    try {
      if (offLoop) store.setSyncOffLoop(() => true);
      await stall(STALL_MS);
      const startedAt = performance.now();
      // A lone write on a fresh log: the kind the store syncs inline when it may.
      const gapMs = await longestLoopGapMs(async () => {
        okResult(await store.append("s", { kind: "any" }, events(1)));
      });
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(STALL_MS - 5);
      if (offLoop) expect(gapMs).toBeLessThan(STALL_MS / 2);
      else expect(gapMs).toBeGreaterThanOrEqual(STALL_MS - 5);
    } finally {
      await store.close();
    }
  });

  it("leaves the event loop free when a read of the log is in flight as the sync starts", async () => {
    const { store, log, stall } = await stallableStore();
    try {
      okResult(await store.append("s", { kind: "any" }, events(1)));
      await stall(STALL_MS);
      let readDoneAt = 0;
      const startedAt = performance.now();
      const gapMs = await longestLoopGapMs(async () => {
        // The read completes on a later turn of the loop; the write's sync starts before it.
        const reading = log.read(0, 64).then(() => (readDoneAt = performance.now()));
        okResult(await store.append("s", { kind: "any" }, events(1)));
        await reading;
      });
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(STALL_MS - 5);
      expect(gapMs).toBeLessThan(STALL_MS / 2);
      // The read was answered during the stalled sync, not after it.
      expect(readDoneAt - startedAt).toBeLessThan(STALL_MS / 2);
    } finally {
      await store.close();
    }
  });

  it("a leader reads what it has just written from memory while the sync runs, not from the file", async () => {
    let fileReads = 0;
    const { store, stall } = await stallableStore(
      (Log, options) =>
        new (class CountingLog extends Log {
          override readSync(position: number, length: number): Buffer {
            fileReads++;
            return super.readSync(position, length);
          }
        })(options),
    );
    try {
      store.setSyncOffLoop(() => true);
      okResult(await store.append("s", { kind: "any" }, events(2)));
      const from = store.endPosition;
      await stall(STALL_MS);
      const pending = store.append("s", { kind: "any" }, events(3));
      // Written, its sync stalled: what a leader proposes to its followers now.
      const deadline = performance.now() + STALL_MS;
      while (store.stats().logBytes <= from && performance.now() < deadline)
        await new Promise((r) => setImmediate(r));
      const readsBefore = fileReads;
      const during = store.readRaw(from, 1 << 20);
      expect(fileReads).toBe(readsBefore);
      expect(during.batchEnds).toEqual([store.endPosition]);
      okResult(await pending);
      // The same bytes as the file holds once the sync is done.
      const after = store.readRaw(from, 1 << 20);
      expect(fileReads).toBeGreaterThan(readsBefore);
      expect(after.batchEnds).toEqual(during.batchEnds);
      expect(Buffer.compare(after.bytes, during.bytes)).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("reports how long the sync in flight has run; abandonUncommitted fails the writes waiting for it at once", async () => {
    const { store, stall } = await stallableStore();
    try {
      store.setSyncOffLoop(() => true);
      okResult(await store.append("s", { kind: "any" }, events(1)));
      expect(store.stats().syncRunningMs).toBe(0);
      await stall(STALL_MS);
      const pending = store.append("s", { kind: "any" }, events(1, 1));
      const outcome = pending.then(
        () => "acknowledged",
        (err: unknown) => err,
      );
      const deadline = performance.now() + STALL_MS;
      while (store.stats().syncRunningMs < STALL_MS / 4 && performance.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      expect(store.stats().syncRunningMs).toBeGreaterThanOrEqual(STALL_MS / 4);
      // This node stops leading: the write's outcome is unknown, and its client hears so now.
      const abandonedAt = performance.now();
      const err = new Error("stopped leading");
      store.abandonUncommitted(err);
      expect(await outcome).toBe(err);
      expect(performance.now() - abandonedAt).toBeLessThan(STALL_MS / 4);
      await stall(0);
      // The record stays: once the sync ends it is durable, and (this store commits what is
      // durable) the next append lands after it.
      const next = okResult(await store.append("s", { kind: "any" }, events(1, 2)));
      expect(next.nextExpectedVersion).toBe(2);
      expect(store.stats().syncRunningMs).toBe(0);
    } finally {
      await store.close();
    }
  });
});
