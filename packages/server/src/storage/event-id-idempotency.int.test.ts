// Idempotency of appends of any age: the event-id index (on disk for a disk store, in memory for
// a memory store) answers what the bounded window no longer holds.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NewEvent, WriteResult } from "../streams/types.js";
import {
  INDEX_FILE,
  TruncatedError,
  createMemoryStore,
  type DiskStoreOptions,
  type LogStore,
} from "./index.js";
import { DEFAULT_IDEMPOTENCY_WINDOW } from "./store.js";
import { events, newEvent, okResult } from "./test-helpers.js";
import { TempDiskStores } from "./test-disk-stores.js";

/** Far more events than any window holds (the issue asks for 1M), in appends of 1000. */
const OTHER_EVENTS = 1_000_000;

async function appendOthers(store: LogStore, count: number): Promise<void> {
  for (let done = 0; done < count; done += 1000) {
    okResult(await store.append(`other-${done % 7}`, { kind: "any" }, events(1000, done)));
  }
}

async function revisionsOf(store: LogStore, stream: string): Promise<number[]> {
  const r = await store.readStream(stream, {
    direction: "forwards",
    fromRevision: 0,
    maxCount: 1000,
  });
  return r.events.map((e) => e.revision);
}

const WEV_A = { ok: false, wrongExpectedVersion: { streamExists: true, actualRevision: 1 } };

describe("retries beyond the idempotency window", () => {
  const temp = new TempDiskStores({}, "close");
  const stores = temp.stores;
  let dir: string;
  beforeEach(async () => {
    dir = await temp.setUp();
  });
  afterEach(() => temp.tearDown());
  const openDisk = (options: Partial<DiskStoreOptions> = {}) => temp.open(options);

  async function close(s: LogStore, crash = false): Promise<void> {
    stores.splice(stores.indexOf(s), 1);
    await (crash ? s.abort() : s.close());
  }

  it(`disk: after ${OTHER_EVENTS} other events the original result, nothing stored`, async () => {
    expect(OTHER_EVENTS).toBeGreaterThan(DEFAULT_IDEMPOTENCY_WINDOW);
    const s = await openDisk();
    const batchA = events(2);
    const a = okResult(await s.append("a", { kind: "any" }, batchA));
    okResult(await s.append("b", { kind: "any" }, events(1)));
    const batchB = events(3);
    const b = okResult(await s.append("b", { kind: "stream_exists" }, batchB));
    await appendOthers(s, OTHER_EVENTS);
    const total = s.stats().events;

    expect(await s.append("a", { kind: "any" }, batchA)).toEqual(a);
    expect(await s.append("b", { kind: "stream_exists" }, batchB)).toEqual(b);
    expect(await s.append("b", { kind: "any" }, batchB)).toEqual(b);
    // A partial match is a wrong expected version, as within the window.
    expect(await s.append("a", { kind: "any" }, [batchA[0] as NewEvent, newEvent()])).toEqual(
      WEV_A,
    );
    expect(await s.append("a", { kind: "any" }, [batchA[1] as NewEvent, newEvent()])).toEqual(
      WEV_A,
    );
    expect(s.stats().events).toBe(total);
    expect(await revisionsOf(s, "a")).toEqual([0, 1]);

    // And after a restart (the index is on disk).
    await close(s);
    const again = await openDisk();
    expect(await again.append("a", { kind: "any" }, batchA)).toEqual(a);
    expect(await again.append("b", { kind: "stream_exists" }, batchB)).toEqual(b);
    expect(again.stats().events).toBe(total);
    // An id of another stream's event is not a retry of this one: appended (as within the window).
    okResult(await again.append("c", { kind: "any" }, [batchA[0] as NewEvent]));
    expect(again.stats().events).toBe(total + 1);
  }, 240_000);

  it("disk: after a crash the index catches up from the log (no window to help)", async () => {
    const s = await openDisk({ idempotencyWindow: 0 });
    const first = events(2);
    const r1 = okResult(await s.append("x", { kind: "any" }, first));
    await appendOthers(s, 20_000);
    const last = events(1);
    const r2 = okResult(await s.append("x", { kind: "any" }, last));
    const total = s.stats().events;
    await close(s, true); // the last events were never written to the index

    const b = await openDisk({ idempotencyWindow: 0 });
    expect(await b.append("x", { kind: "any" }, first)).toEqual(r1);
    expect(await b.append("x", { kind: "any" }, last)).toEqual(r2);
    expect(b.stats().events).toBe(total);
    await close(b);

    // An index lost altogether is rebuilt from the log.
    await rm(join(dir, INDEX_FILE), { force: true });
    await rm(join(dir, `${INDEX_FILE}-lock`), { force: true });
    const c = await openDisk({ idempotencyWindow: 0 });
    expect(await c.append("x", { kind: "any" }, first)).toEqual(r1);
    expect(await c.append("x", { kind: "any" }, last)).toEqual(r2);
    expect(c.stats().events).toBe(total);
  }, 60_000);

  it("disk: ids of a truncated suffix are forgotten, before and after a restart", async () => {
    const s = await openDisk({ idempotencyWindow: 0, autoCommit: false });
    const commitWhenDurable = async (p: Promise<WriteResult>): Promise<WriteResult> => {
      const end = s.endPosition;
      await new Promise<void>((resolve) => {
        if (s.durableEnd >= end) return resolve();
        const off = s.onDurable((d) => {
          if (d < end) return;
          off();
          resolve();
        });
      });
      s.setCommitPosition(end);
      return p;
    };
    const kept = events(1);
    const rKept = okResult(await commitWhenDurable(s.append("t", { kind: "any" }, kept)));
    const committed = s.commitPosition;
    const cut = events(2);
    const cutAppend = s.append("t", { kind: "any" }, cut);
    const rejected = cutAppend.catch((err: unknown) => err);
    await new Promise<void>((resolve) => {
      const off = s.onDurable((d) => {
        if (d < s.endPosition) return;
        off();
        resolve();
      });
    });
    await s.truncate(committed);
    expect(await rejected).toBeInstanceOf(TruncatedError);

    // The same ids again: a new append, not the truncated one's result.
    const again = okResult(await commitWhenDurable(s.append("t", { kind: "any" }, cut)));
    expect(again.nextExpectedVersion).toBe(2);
    expect(await s.append("t", { kind: "any" }, kept)).toEqual(rKept);
    expect(await s.append("t", { kind: "any" }, cut)).toEqual(again);
    await close(s);

    const b = await openDisk({ idempotencyWindow: 0, autoCommit: false });
    expect(await b.append("t", { kind: "any" }, cut)).toEqual(again);
    expect(await revisionsOf(b, "t")).toEqual([0, 1, 2]);
  });

  it("disk: a retry of an append not yet committed waits for its commit only", async () => {
    const s = await openDisk({ idempotencyWindow: 0, autoCommit: false });
    const batch = events(2);
    const original = s.append("p", { kind: "any" }, batch);
    const originalEnd = s.endPosition;
    const retry = s.append("p", { kind: "any" }, batch);
    const later = s.append("p", { kind: "any" }, events(1));
    const laterOutcome = later.catch((err: unknown) => err);
    const end = s.endPosition;
    await new Promise<void>((resolve) => {
      if (s.durableEnd >= end) return resolve();
      const off = s.onDurable((d) => {
        if (d < end) return;
        off();
        resolve();
      });
    });
    s.setCommitPosition(originalEnd); // the later append stays pending
    const first = okResult(await original);
    expect(await retry).toEqual(first);
    expect(first.nextExpectedVersion).toBe(1);
    await close(s);
    expect(await laterOutcome).toMatchObject({ code: "STORE_CLOSED" });
  });

  it.each(["memory", "disk"])(
    "%s: no_stream and exact retries across soft deletes: the original result, nothing stored twice",
    async (kind) => {
      const open = async (): Promise<LogStore> => {
        if (kind === "disk") return openDisk({ idempotencyWindow: 0 });
        const m = createMemoryStore({ idempotencyWindow: 0 });
        stores.push(m);
        await m.open();
        return m;
      };
      let s = await open();
      // Written at revision 0, then the stream is soft-deleted: no_stream holds again.
      const created = events(2);
      const rCreated = okResult(await s.append("s", { kind: "no_stream" }, created));
      okResult(await s.delete("s", { kind: "any" }, false));
      // Recreated: revisions go on from 2, so this no_stream append wrote at 2 and 3.
      const recreated = events(2);
      const rRecreated = okResult(await s.append("s", { kind: "no_stream" }, recreated));
      expect(rRecreated.nextExpectedVersion).toBe(3);
      const extended = events(1);
      const rExtended = okResult(await s.append("s", { kind: "exact", revision: 3 }, extended));
      okResult(await s.append("s", { kind: "any" }, events(1)));
      okResult(await s.delete("s", { kind: "any" }, false));
      const total = s.stats().events;

      for (let round = 0; round < 2; round++) {
        expect(await s.append("s", { kind: "no_stream" }, created)).toEqual(rCreated);
        expect(await s.append("s", { kind: "no_stream" }, recreated)).toEqual(rRecreated);
        expect(await s.append("s", { kind: "exact", revision: 3 }, extended)).toEqual(rExtended);
        // A partial match is a wrong expected version, never a write.
        expect((await s.append("s", { kind: "no_stream" }, [recreated[0]!, newEvent()])).ok).toBe(
          false,
        );
        expect(s.stats().events).toBe(total);
        if (kind === "memory") break;
        await close(s);
        s = await open();
      }
      // The stream is still soft-deleted: a new no_stream append recreates it after revision 5.
      expect(
        okResult(await s.append("s", { kind: "no_stream" }, events(1))).nextExpectedVersion,
      ).toBe(6);
    },
  );

  it("memory: the index holds every id", async () => {
    const s = createMemoryStore({ idempotencyWindow: 0 });
    stores.push(s);
    await s.open();
    const batch = events(3);
    const r = okResult(await s.append("m", { kind: "any" }, batch));
    await appendOthers(s, 5000);
    expect(await s.append("m", { kind: "stream_exists" }, batch)).toEqual(r);
    expect(await s.append("m", { kind: "any" }, batch.slice(0, 2))).toEqual({
      ok: true,
      nextExpectedVersion: 1,
      position: expect.any(Number) as number,
    });
    expect(await s.append("m", { kind: "any" }, [batch[1] as NewEvent, newEvent()])).toEqual({
      ok: false,
      wrongExpectedVersion: { streamExists: true, actualRevision: 2 },
    });
    expect(s.stats().events).toBe(5003);
  });
});
