import { randomUUID } from "node:crypto";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { StoredEvent } from "../streams/types.js";
import { DiskLog } from "./disk-log.js";
import {
  INDEX_FILE,
  createDiskStore,
  createMemoryStore,
  type DiskStoreOptions,
  type LogStore,
} from "./index.js";
import { encodeEvent, uuidToKey } from "./record.js";
import { TruncatedError } from "./store.js";
import { LmdbKv } from "./index/lmdb-kv.js";
import { LogIndex } from "./index/log-index.js";
import { events, newEvent, okResult, tempDir, until } from "./test-helpers.js";

interface MakeOptions {
  autoCommit?: boolean;
  checkpointEveryMs?: number;
}

interface Factory {
  /** A fresh store (its own log) with these options. */
  make: (opts?: MakeOptions) => Promise<LogStore>;
  /** Closes and reopens the same log. */
  reopen: (store: LogStore) => Promise<LogStore>;
  /** Aborts (no index write, no durable checkpoint: like a crash) and reopens the same log. */
  crash: (store: LogStore) => Promise<LogStore>;
  cleanup: () => Promise<void>;
}

const QUIET_INDEX = { flushEntries: 1_000_000, flushEveryMs: 3_600_000 };

const variants: Array<[string, () => Factory]> = [
  [
    "memory",
    () => {
      const stores: LogStore[] = [];
      return {
        make: async (opts = {}) => {
          const s = createMemoryStore({ ...opts, indexFlush: QUIET_INDEX });
          await s.open();
          stores.push(s);
          return s;
        },
        reopen: async (s) => {
          await s.close();
          await s.open();
          return s;
        },
        crash: async (s) => {
          await s.abort();
          await s.open();
          return s;
        },
        cleanup: async () => {
          for (const s of stores) await s.close();
        },
      };
    },
  ],
  [
    "disk",
    () => {
      const stores: LogStore[] = [];
      const dirs: Array<{ dir: string; remove: () => Promise<void> }> = [];
      const dirOf = new Map<LogStore, { dir: string; opts: MakeOptions }>();
      const open = async (dir: string, opts: MakeOptions): Promise<LogStore> => {
        const s = createDiskStore({
          dir,
          segmentBytes: 8192,
          // The index is written at close only: a crash re-indexes from the log.
          indexFlush: QUIET_INDEX,
          ...opts,
        });
        await s.open();
        stores.push(s);
        dirOf.set(s, { dir, opts });
        return s;
      };
      const again = async (s: LogStore, stop: () => Promise<void>): Promise<LogStore> => {
        await stop();
        const d = dirOf.get(s);
        if (d === undefined) throw new Error("unknown store");
        return open(d.dir, d.opts);
      };
      return {
        make: async (opts = {}) => {
          const t = await tempDir();
          dirs.push(t);
          return open(t.dir, opts);
        },
        reopen: (s) => again(s, () => s.close()),
        crash: (s) => again(s, () => s.abort()),
        cleanup: async () => {
          for (const s of stores) await s.close();
          for (const d of dirs) await d.remove();
        },
      };
    },
  ],
];

const strip = (e: StoredEvent): unknown => ({ ...e, data: [...e.data], metadata: [...e.metadata] });

async function streamOf(store: LogStore, stream: string): Promise<unknown[]> {
  const r = await store.readStream(stream, {
    direction: "forwards",
    fromRevision: 0,
    maxCount: 10_000,
  });
  return r.events.map(strip);
}

async function allOf(store: LogStore): Promise<unknown[]> {
  const r = await store.readAll({ direction: "forwards", fromPosition: 0, maxCount: 10_000 });
  return r.events.map(strip);
}

/** Copies the leader's log to the follower in readRaw chunks of `chunk` bytes. */
async function replicate(leader: LogStore, follower: LogStore, chunk = 300): Promise<void> {
  while (follower.endPosition < leader.endPosition) {
    const { bytes } = leader.readRaw(follower.endPosition, chunk);
    await follower.appendRaw(follower.endPosition, bytes);
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

describe.each(variants)("%s store: replication support", (_name, variant) => {
  let f: Factory;
  afterEach(async () => {
    await f.cleanup();
  });

  it("writes EPOCH records invisible to readers; epochs survive restart and the index", async () => {
    f = variant();
    let s = await f.make();
    okResult(await s.append("a", { kind: "any" }, events(2)));
    const id1 = randomUUID();
    const e1 = await s.appendEpoch({ epochNumber: 1, epochId: id1, leaderInstanceId: "n1" });
    okResult(await s.append("a", { kind: "any" }, events(3)));
    const id2 = randomUUID();
    const e2 = await s.appendEpoch({ epochNumber: 3, epochId: id2, leaderInstanceId: "n2" });
    for (let i = 0; i < 40; i++) okResult(await s.append("b", { kind: "any" }, events(2)));
    expect(() =>
      s.appendEpoch({ epochNumber: 3, epochId: randomUUID(), leaderInstanceId: "x" }),
    ).toThrow(/above the last epoch/);
    const expected = [
      { epochNumber: 1, epochId: id1, position: e1.position },
      { epochNumber: 3, epochId: id2, position: e2.position },
    ];
    expect(s.epochs()).toEqual(expected);
    expect(s.epochAt(0)).toBe(0);
    expect(s.epochAt(e1.position - 1)).toBe(0);
    expect(s.epochAt(e1.position)).toBe(1);
    expect(s.epochAt(e2.position - 1)).toBe(1);
    expect(s.epochAt(s.endPosition)).toBe(3);
    expect((await allOf(s)).length).toBe(85);
    expect(s.stats().events).toBe(85);
    s = await f.reopen(s);
    expect(s.epochs()).toEqual(expected);
    expect((await allOf(s)).length).toBe(85);
  });

  it("readRaw gives the same batches from writes still in memory as from the log", async () => {
    f = variant();
    const s = await f.make();
    okResult(await s.append("a", { kind: "any" }, events(2)));
    const from = s.endPosition;
    // Not awaited: queued or in flight while readRaw answers from memory.
    const writes = [1, 3, 1, 2, 5, 1].map((n, i) => s.append(`m${i}`, { kind: "any" }, events(n)));
    const limits = [1, 200, 700, 1500, 1 << 20];
    const during = limits.map((max) => s.readRaw(from, max));
    const midway = during[4]?.batchEnds[2] as number;
    const duringMid = s.readRaw(midway, 900);
    for (const w of writes) okResult(await w);
    await settle();
    const after = limits.map((max) => s.readRaw(from, max));
    expect(during[4]?.batchEnds.length).toBe(6);
    expect(during[0]?.batchEnds.length).toBe(1);
    for (let i = 0; i < limits.length; i++) {
      expect(during[i]?.batchEnds).toEqual(after[i]?.batchEnds);
      expect(during[i]?.end).toBe(after[i]?.end);
      expect(Buffer.compare(during[i]?.bytes as Buffer, after[i]?.bytes as Buffer)).toBe(0);
    }
    const afterMid = s.readRaw(midway, 900);
    expect(duringMid.batchEnds).toEqual(afterMid.batchEnds);
    expect(Buffer.compare(duringMid.bytes, afterMid.bytes)).toBe(0);
  });

  it("appendRaw of readRaw bytes gives an identical follower, idempotency included", async () => {
    f = variant();
    const leader = await f.make();
    const follower = await f.make();
    const ids = [randomUUID(), randomUUID()];
    okResult(
      await leader.append("s", { kind: "no_stream" }, [
        newEvent({ a: 1 }, "T", ids[0]),
        newEvent({ a: 2 }, "T", ids[1]),
      ]),
    );
    await leader.appendEpoch({ epochNumber: 2, epochId: randomUUID(), leaderInstanceId: "n1" });
    for (let i = 0; i < 10; i++)
      okResult(await leader.append(`s${i % 3}`, { kind: "any" }, events(i + 1)));
    okResult(
      await leader.append("$$s1", { kind: "any" }, [newEvent({ maxCount: 2 }, "$metadata")]),
    );
    okResult(await leader.delete("s2", { kind: "any" }, true));
    okResult(await leader.delete("s0", { kind: "any" }, false));
    await replicate(leader, follower);
    expect(follower.endPosition).toBe(leader.endPosition);
    expect(follower.durableEnd).toBe(leader.endPosition);
    expect(await allOf(follower)).toEqual(await allOf(leader));
    for (const st of ["s", "s1", "$$s1"])
      expect(await streamOf(follower, st)).toEqual(await streamOf(leader, st));
    await expect(
      follower.readStream("s2", { direction: "forwards", fromRevision: 0, maxCount: 1 }),
    ).rejects.toMatchObject({ code: "STREAM_DELETED" });
    await expect(
      follower.readStream("s0", { direction: "forwards", fromRevision: 0, maxCount: 1 }),
    ).rejects.toMatchObject({ code: "STREAM_NOT_FOUND" });
    expect(follower.epochs()).toEqual(leader.epochs());
    expect(follower.stats().events).toBe(leader.stats().events);
    // Same idempotency answers: a retry of the first append, with any and exact.
    const retry = [newEvent({ a: 1 }, "T", ids[0]), newEvent({ a: 2 }, "T", ids[1])];
    for (const st of [leader, follower]) {
      expect(await st.append("s", { kind: "any" }, retry)).toEqual({
        ok: true,
        nextExpectedVersion: 1,
        position: expect.any(Number),
      });
      expect(await st.append("s", { kind: "no_stream" }, retry)).toMatchObject({
        ok: true,
        nextExpectedVersion: 1,
      });
      expect(st.stats().events).toBe(leader.stats().events);
    }
    // The follower continues the streams with the right revisions.
    expect(
      okResult(await follower.append("s1", { kind: "any" }, events(1))).nextExpectedVersion,
    ).toBe(
      (
        await follower.readStream("s1", {
          direction: "backwards",
          fromRevision: "end",
          maxCount: 1,
        })
      ).lastRevision,
    );
  });

  it("appendRaw rejects torn, corrupt and misaligned input and changes nothing", async () => {
    f = variant();
    const leader = await f.make();
    const follower = await f.make();
    okResult(await leader.append("s", { kind: "any" }, events(3)));
    okResult(await leader.append("s", { kind: "any" }, events(2)));
    const { bytes } = leader.readRaw(0, 1 << 20);
    const before = {
      end: follower.endPosition,
      stats: follower.stats(),
      epochs: follower.epochs(),
    };
    const flipped = Buffer.from(bytes);
    flipped[40] = (flipped[40] as number) ^ 0xff;
    const firstLen = bytes.readUInt32LE(0);
    const bad: Array<[string, () => Promise<void>, RegExp]> = [
      ["torn", () => follower.appendRaw(0, bytes.subarray(0, bytes.length - 3)), /torn/],
      ["crc", () => follower.appendRaw(0, flipped), /bad_crc/],
      [
        "misaligned start",
        () => follower.appendRaw(0, bytes.subarray(firstLen)),
        /continues that stream/,
      ],
      ["not at the end", () => follower.appendRaw(5, bytes), /this log ends at 0/],
      [
        "open batch",
        () => follower.appendRaw(0, bytes.subarray(0, firstLen)),
        /inside an atomic batch/,
      ],
      ["garbage", () => follower.appendRaw(0, Buffer.alloc(64, 7)), /damaged/],
    ];
    for (const [, run, msg] of bad) expect(run).toThrow(msg);
    expect(follower.endPosition).toBe(before.end);
    expect(follower.stats()).toEqual(before.stats);
    expect(follower.epochs()).toEqual(before.epochs);
    await follower.appendRaw(0, bytes);
    expect(await streamOf(follower, "s")).toEqual(await streamOf(leader, "s"));
    // A hand-made event with a wrong revision is refused too.
    const wrong = encodeEvent({
      batchEnd: true,
      streamId: "s",
      revision: 9,
      prevPosition: -1,
      idKey: uuidToKey(randomUUID()),
      type: "T",
      isJson: false,
      createdMs: 1,
      data: new Uint8Array(0),
      metadata: new Uint8Array(0),
    });
    expect(() => follower.appendRaw(follower.endPosition, wrong)).toThrow(/revision 5/);
  });

  it("readRaw returns whole batches from a boundary; isRecordBoundary knows them", async () => {
    f = variant();
    const s = await f.make();
    const r1 = okResult(await s.append("s", { kind: "any" }, events(3)));
    const end1 = s.endPosition;
    okResult(await s.append("s", { kind: "any" }, events(1)));
    expect(r1.position).toBeGreaterThan(0);
    expect(s.isRecordBoundary(0)).toBe(true);
    expect(s.isRecordBoundary(end1)).toBe(true);
    expect(s.isRecordBoundary(r1.position)).toBe(false); // inside the first batch
    expect(s.isRecordBoundary(s.endPosition + 1)).toBe(false);
    const one = s.readRaw(0, 1);
    expect(one.end).toBe(end1);
    expect(one.batchEnds).toEqual([end1]);
    expect(s.readRaw(0, 1 << 20).end).toBe(s.endPosition);
    expect(() => s.readRaw(r1.position, 100)).toThrow(/not a record boundary/);
    expect(s.lastBoundaryAtOrBefore(end1 + 3)).toBe(end1);
  });

  it("autoCommit false: readers and append promises wait for setCommitPosition", async () => {
    f = variant();
    const s = await f.make({ autoCommit: false });
    const durable: number[] = [];
    s.onDurable((p) => durable.push(p));
    let done = false;
    const p = s.append("s", { kind: "any" }, events(2)).then((r) => {
      done = true;
      return r;
    });
    const end = s.endPosition;
    while (s.durableEnd < end) await settle();
    await settle();
    expect(durable).toContain(end);
    expect(done).toBe(false);
    expect((await allOf(s)).length).toBe(0);
    await expect(
      s.readStream("s", { direction: "forwards", fromRevision: 0, maxCount: 9 }),
    ).rejects.toMatchObject({ code: "STREAM_NOT_FOUND" });
    expect(() => s.setCommitPosition(end - 1)).toThrow(/boundary/);
    expect(() => s.setCommitPosition(end + 1)).toThrow(/durable/);
    s.setCommitPosition(end);
    expect(okResult(await p).nextExpectedVersion).toBe(1);
    expect((await streamOf(s, "s")).length).toBe(2);
  });

  it("abandonUncommitted rejects the waiting writers but keeps the records for a later commit", async () => {
    f = variant();
    const s = await f.make({ autoCommit: false });
    const p = s.append("s", { kind: "any" }, events(2));
    const end = s.endPosition;
    while (s.durableEnd < end) await settle();
    s.abandonUncommitted(new Error("stepped down"));
    await expect(p).rejects.toThrow("stepped down");
    // A later leader commits the records after all: readers see them, nothing throws.
    s.setCommitPosition(end);
    expect((await streamOf(s, "s")).length).toBe(2);
  });

  it("truncate above commit rebuilds the index; below commit is refused", async () => {
    f = variant();
    const s = await f.make({ autoCommit: false });
    const commitNow = async (): Promise<void> => {
      while (s.durableEnd < s.endPosition) await settle();
      s.setCommitPosition(s.durableEnd);
    };
    const a = s.append("s", { kind: "any" }, events(3));
    await commitNow();
    okResult(await a);
    for (let i = 0; i < 30; i++) {
      const w = s.append(`x${i}`, { kind: "any" }, events(2));
      await commitNow();
      okResult(await w);
    }
    const ep = s.appendEpoch({ epochNumber: 1, epochId: randomUUID(), leaderInstanceId: "n" });
    await commitNow();
    await ep;
    const committed = s.commitPosition;
    const cutId = randomUUID();
    const kept = s.append("s", { kind: "any" }, events(1)); // revision 3, survives
    const keptEnd = s.endPosition;
    const cut1 = s.append("s", { kind: "any" }, [newEvent({ cut: 1 }, "T", cutId)]); // revision 4, cut
    const cut2 = s.append("t", { kind: "any" }, events(2)); // cut
    const e2 = s.appendEpoch({ epochNumber: 2, epochId: randomUUID(), leaderInstanceId: "n" });
    const outcomes = [cut1, cut2, e2].map((p) =>
      p.then(
        () => "ok",
        (err: unknown) => err,
      ),
    );
    await settle();
    await expect(s.truncate(committed - 1)).rejects.toThrow(/below the commit position/);
    await s.truncate(keptEnd);
    for (const o of await Promise.all(outcomes)) expect(o).toBeInstanceOf(TruncatedError);
    expect(s.endPosition).toBe(keptEnd);
    expect(s.epochs().map((e) => e.epochNumber)).toEqual([1]);
    await commitNow();
    okResult(await kept);
    expect((await streamOf(s, "s")).length).toBe(4);
    await expect(
      s.readStream("t", { direction: "forwards", fromRevision: 0, maxCount: 9 }),
    ).rejects.toMatchObject({ code: "STREAM_NOT_FOUND" });
    // The cut id is gone from the window: the same append is written again, as revision 4.
    const again = s.append("s", { kind: "any" }, [newEvent({ cut: 1 }, "T", cutId)]);
    await commitNow();
    expect(okResult(await again).nextExpectedVersion).toBe(4);
    const t = s.append("t", { kind: "no_stream" }, events(1));
    await commitNow();
    expect(okResult(await t).nextExpectedVersion).toBe(0);
    // And the rebuilt state survives a restart.
    const s2 = await f.reopen(s);
    expect((await streamOf(s2, "s")).length).toBe(5);
    expect(s2.epochs().map((e) => e.epochNumber)).toEqual([1]);
  });

  it("reads during a truncation see the committed view, unchanged", async () => {
    f = variant();
    const s = await f.make({ autoCommit: false });
    const commitNow = async (): Promise<void> => {
      while (s.durableEnd < s.endPosition) await settle();
      s.setCommitPosition(s.durableEnd);
    };
    for (let i = 0; i < 20; i++) void s.append(`c${i % 4}`, { kind: "any" }, events(3));
    void s.append("gone", { kind: "any" }, events(2));
    void s.delete("gone", { kind: "any" }, true);
    await commitNow();
    const committed = s.commitPosition;
    const before = { c1: await streamOf(s, "c1"), all: await allOf(s) };
    // A long uncommitted tail: more of the same streams, a new one, and a tombstone.
    const tail: Array<Promise<unknown>> = [];
    for (let i = 0; i < 200; i++)
      tail.push(s.append(i % 2 === 0 ? "c1" : "new", { kind: "any" }, events(2)));
    tail.push(s.delete("c2", { kind: "any" }, true));
    for (const p of tail) p.catch(() => undefined);
    await durable(s);
    const truncated = s.truncate(committed);
    let done = false;
    void truncated.finally(() => (done = true));
    // A read starts at every turn of the event loop while the truncation runs (a read takes
    // its view of the stream when it starts).
    const reads: Array<Promise<unknown>> = [];
    while (!done) {
      reads.push(
        streamOf(s, "c1"),
        streamOf(s, "c2").then((e) => e.length),
        allOf(s),
        readS(s, "gone").catch((err: { code?: string }) => err.code),
      );
      await new Promise((r) => setImmediate(r));
    }
    await truncated;
    expect(reads.length).toBeGreaterThanOrEqual(4);
    const outcomes = await Promise.all(reads.map((p) => p.catch((err: unknown) => err)));
    for (let i = 0; i < outcomes.length; i += 4) {
      expect(outcomes[i]).toEqual(before.c1);
      expect(outcomes[i + 1]).toBe(15);
      expect(outcomes[i + 2]).toEqual(before.all);
      expect(outcomes[i + 3]).toBe("STREAM_DELETED");
    }
    expect(s.endPosition).toBe(committed);
    // The write view went back too: c1 continues at 15, c2 is not deleted, "new" is unknown.
    const next = s.append("c1", { kind: "exact", revision: 14 }, events(1));
    const c2 = s.append("c2", { kind: "exact", revision: 14 }, events(1));
    const fresh = s.append("new", { kind: "no_stream" }, events(1));
    await commitNow();
    expect(okResult(await next).nextExpectedVersion).toBe(15);
    expect(okResult(await c2).nextExpectedVersion).toBe(15);
    expect(okResult(await fresh).nextExpectedVersion).toBe(0);
  });

  it("hard state round-trips and survives a reopen", async () => {
    f = variant();
    let s = await f.make();
    expect(await s.readHardState()).toBeNull();
    await s.writeHardState({ epoch: 4, votedFor: "n2" });
    expect(await s.readHardState()).toEqual({ epoch: 4, votedFor: "n2" });
    await s.writeHardState({ epoch: 5, votedFor: undefined });
    s = await f.reopen(s);
    expect(await s.readHardState()).toEqual({ epoch: 5, votedFor: undefined });
  });
});

// ------------------------------------------------------------------ restart with autoCommit false

interface Source {
  leader: LogStore;
  /** The commit point used by the tests: a batch end in the middle of the leader's log. */
  mid: number;
  /** Id of an event below `mid` (a@2) and of one above it (a@3). */
  committedId: string;
  tailId: string;
}

/** A leader log: streams a, b, x0..x3 and an epoch below `mid`; a@3, c, $$c, an epoch and b@3 above. */
async function buildSource(f: Factory, fill = 20): Promise<Source> {
  const leader = await f.make();
  const committedId = randomUUID();
  const tailId = randomUUID();
  okResult(await leader.append("a", { kind: "no_stream" }, events(2)));
  await leader.appendEpoch({ epochNumber: 1, epochId: randomUUID(), leaderInstanceId: "n1" });
  okResult(await leader.append("b", { kind: "any" }, events(3)));
  okResult(await leader.append("a", { kind: "any" }, [newEvent({ c: 1 }, "T", committedId)]));
  for (let i = 0; i < fill; i++)
    okResult(await leader.append(`x${i % 4}`, { kind: "any" }, events(2)));
  const mid = leader.endPosition;
  okResult(await leader.append("a", { kind: "any" }, [newEvent({ t: 1 }, "T", tailId)]));
  okResult(await leader.append("c", { kind: "any" }, events(2)));
  okResult(await leader.append("$$c", { kind: "any" }, [newEvent({ maxCount: 1 }, "$metadata")]));
  await leader.appendEpoch({ epochNumber: 2, epochId: randomUUID(), leaderInstanceId: "n2" });
  okResult(await leader.append("b", { kind: "any" }, events(1)));
  return { leader, mid, committedId, tailId };
}

/** appendRaw of the leader's batches, one at a time, up to `until`; the promises never reject. */
function ship(
  leader: LogStore,
  follower: LogStore,
  until = leader.endPosition,
): Array<Promise<unknown>> {
  const acks: Array<Promise<unknown>> = [];
  while (follower.endPosition < until) {
    const { bytes } = leader.readRaw(follower.endPosition, 1);
    acks.push(follower.appendRaw(follower.endPosition, bytes).catch((err: unknown) => err));
  }
  return acks;
}

async function durable(s: LogStore): Promise<void> {
  while (s.durableEnd < s.endPosition) await settle();
}

/** Something still pending after a few turns of the event loop? */
async function isPending(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return !done;
}

const notFound = { code: "STREAM_NOT_FOUND" };
const readS = (s: LogStore, stream: string): Promise<unknown> =>
  s.readStream(stream, { direction: "forwards", fromRevision: 0, maxCount: 1 });

/** Readers see exactly the leader's log below `commit`; the whole log is there, pending above. */
async function expectCommittedPrefix(s: LogStore, src: Source, commit: number): Promise<void> {
  const full = (await allOf(src.leader)) as Array<{ position: number }>;
  const prefix = full.filter((e) => e.position < commit);
  expect(s.commitPosition).toBe(commit);
  expect(s.durableEnd).toBe(src.leader.endPosition);
  expect(s.endPosition).toBe(src.leader.endPosition);
  expect(await allOf(s)).toEqual(prefix);
  expect(s.stats()).toMatchObject({ events: prefix.length, commitPosition: commit });
  expect(s.readRaw(0, 1 << 20).bytes.equals(src.leader.readRaw(0, 1 << 20).bytes)).toBe(true);
  expect(s.epochs()).toEqual(src.leader.epochs()); // the write view: pending epochs included
}

describe.each(variants)("%s store: restart with autoCommit false", (_name, variant) => {
  let f: Factory;
  afterEach(async () => {
    await f.cleanup();
  });

  it("reopens with the committed prefix visible and the tail pending until committed", async () => {
    f = variant();
    const src = await buildSource(f);
    let s = await f.make({ autoCommit: false });
    const acks = ship(src.leader, s);
    await durable(s);
    s.setCommitPosition(src.mid);
    s = await f.reopen(s);
    // Appends committed before the close resolved; the uncommitted ones rejected at close.
    const outcomes = await Promise.all(acks);
    expect(outcomes.filter((o) => o === undefined).length).toBe(
      acks.length - 5, // a@3, c, $$c, epoch 2, b@3
    );
    for (const o of outcomes.filter((x) => x !== undefined))
      expect(o).toMatchObject({ code: "STORE_CLOSED" });

    await expectCommittedPrefix(s, src, src.mid);
    expect(await streamOf(s, "a")).toEqual((await streamOf(src.leader, "a")).slice(0, 3));
    expect((await streamOf(s, "b")).length).toBe(3);
    expect(await s.getMetadata("c")).toBeNull(); // $$c is pending
    await expect(readS(s, "c")).rejects.toMatchObject(notFound);
    // Expected versions see the pending tail (the write view)...
    expect(await s.append("a", { kind: "exact", revision: 7 }, events(1))).toEqual({
      ok: false,
      wrongExpectedVersion: { streamExists: true, actualRevision: 3 },
    });
    expect(await s.append("c", { kind: "exact", revision: 7 }, events(1))).toMatchObject({
      wrongExpectedVersion: { actualRevision: 1 },
    });
    // ...a retry of a committed append answers at once, one of a pending append waits.
    expect(
      await s.append("a", { kind: "any" }, [newEvent({ c: 1 }, "T", src.committedId)]),
    ).toMatchObject({ ok: true, nextExpectedVersion: 2 });
    const retry = s.append("a", { kind: "any" }, [newEvent({ t: 1 }, "T", src.tailId)]);
    expect(await isPending(retry)).toBe(true);
    expect(s.endPosition).toBe(src.leader.endPosition); // nothing was written

    s.setCommitPosition(s.durableEnd);
    expect(await retry).toMatchObject({ ok: true, nextExpectedVersion: 3 });
    expect(await allOf(s)).toEqual(await allOf(src.leader));
    expect((await streamOf(s, "c")).length).toBe(1); // $$c: maxCount 1
    expect(await s.getMetadata("c")).toEqual({ maxCount: 1 });
    for (const st of ["a", "b", "c", "$$c"])
      expect(await streamOf(s, st)).toEqual(await streamOf(src.leader, st));
    expect(s.stats().events).toBe(src.leader.stats().events);
    // The commit checkpoint written on close: everything committed after another reopen.
    s = await f.reopen(s);
    expect(s.commitPosition).toBe(src.leader.endPosition);
    expect(await allOf(s)).toEqual(await allOf(src.leader));
  });

  it("after a crash with the commit checkpoint written: exactly the committed prefix; the tail truncates", async () => {
    f = variant();
    const src = await buildSource(f);
    let s = await f.make({ autoCommit: false, checkpointEveryMs: 1 });
    void ship(src.leader, s);
    await durable(s);
    s.setCommitPosition(src.mid);
    await until(
      () => s.stats().checkpointedCommitPosition === src.mid,
      "the lazy commit checkpoint",
    );
    s = await f.crash(s);
    await expectCommittedPrefix(s, src, src.mid);

    const waiting = s.append("a", { kind: "any" }, [newEvent({ t: 1 }, "T", src.tailId)]);
    expect(await isPending(waiting)).toBe(true);
    await expect(s.truncate(src.mid - 1)).rejects.toThrow(/below the commit position/);
    await s.truncate(src.mid);
    await expect(waiting).rejects.toBeInstanceOf(TruncatedError);
    expect(s.endPosition).toBe(src.mid);
    expect(s.epochs().map((e) => e.epochNumber)).toEqual([1]);
    // The tail's ids and revisions are gone: the same append is written again, as a@3.
    const again = s.append("a", { kind: "any" }, [newEvent({ t: 1 }, "T", src.tailId)]);
    const c = s.append("c", { kind: "no_stream" }, events(1));
    await durable(s);
    s.setCommitPosition(s.durableEnd);
    expect(okResult(await again).nextExpectedVersion).toBe(3);
    expect(okResult(await c).nextExpectedVersion).toBe(0);
    expect((await streamOf(s, "b")).length).toBe(3);
    expect(s.stats().events).toBe(
      ((await allOf(src.leader)) as Array<{ position: number }>).filter((e) => e.position < src.mid)
        .length + 2,
    );
  });

  it("after a crash that lost the latest commit: an older prefix, never more", async () => {
    f = variant();
    const src = await buildSource(f);
    // No timer write within the test: only group commits carry the commit position.
    let s = await f.make({ autoCommit: false, checkpointEveryMs: 3_600_000 });
    void ship(src.leader, s);
    await durable(s);
    s.setCommitPosition(src.mid); // after the last sync: never checkpointed
    s = await f.crash(s);
    await expectCommittedPrefix(s, src, 0);
    await expect(readS(s, "a")).rejects.toMatchObject(notFound);
    // The older commit position is safe: the consensus layer commits the tail again.
    const retry = s.append("a", { kind: "any" }, [newEvent({ c: 1 }, "T", src.committedId)]);
    expect(await isPending(retry)).toBe(true);
    s.setCommitPosition(src.mid);
    expect(await retry).toMatchObject({ ok: true, nextExpectedVersion: 2 });
    await expectCommittedPrefix(s, src, src.mid);

    // Committing more and crashing at once: the commit seen after the restart lies between
    // what was checkpointed and what was committed.
    s.setCommitPosition(s.durableEnd);
    s = await f.crash(s);
    expect(s.commitPosition).toBeLessThanOrEqual(src.leader.endPosition);
    expect([0, src.mid, src.leader.endPosition]).toContain(s.commitPosition);
    await expectCommittedPrefix(s, src, s.commitPosition);
    s.setCommitPosition(s.durableEnd);
    expect(await allOf(s)).toEqual(await allOf(src.leader));
  });
});

describe("disk store: commit checkpoint and index with autoCommit false", () => {
  const stores: LogStore[] = [];
  let dir: string;
  let remove: () => Promise<void>;
  let f: Factory;
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.abort();
    await f.cleanup();
    await remove();
  });

  async function openAt(
    opts: MakeOptions & Pick<DiskStoreOptions, "indexFlush">,
  ): Promise<LogStore> {
    const s = createDiskStore({ dir, segmentBytes: 8192, ...opts });
    stores.push(s);
    await s.open();
    return s;
  }

  async function setup(): Promise<Source> {
    ({ dir, remove } = await tempDir());
    f = (variants[1] as [string, () => Factory])[1]();
    return buildSource(f, 40);
  }

  it("persists only the committed view in the index; its position is a commit floor", async () => {
    const src = await setup();
    expect(src.mid).toBeGreaterThan(4096);
    let s = await openAt({
      autoCommit: false,
      indexFlush: { flushEveryMs: 0 },
      checkpointEveryMs: 3_600_000,
    });
    void ship(src.leader, s, src.mid);
    void ship(src.leader, s, src.leader.endPosition - 100); // part of the tail, before the commit
    await durable(s);
    expect(s.endPosition).toBeLessThan(src.leader.endPosition);
    s.setCommitPosition(src.mid);
    await until(async () => s.stats().indexedPosition === src.mid, "the index at the commit");
    void ship(src.leader, s); // the rest of the tail, durable and never committed
    await durable(s);
    await s.abort();
    const index = new LogIndex(new LmdbKv(join(dir, INDEX_FILE)));
    await index.open();
    const full = (await allOf(src.leader)) as Array<{ position: number }>;
    const prefix = full.filter((e) => e.position < src.mid);
    expect(index.persistedUpTo).toBe(src.mid);
    expect(index.totals.events).toBe(prefix.length);
    expect(index.stream("a")?.last).toBe(2);
    expect(index.stream("c")).toBeUndefined();
    expect(index.stream("$$c")).toBeUndefined();
    expect(index.id(uuidToKey(src.tailId))).toBeUndefined();
    expect(index.id(uuidToKey(src.committedId))).toBeDefined();
    expect(index.epochs().map((e) => e.epochNumber)).toEqual([1]);
    await index.close();

    // Crash and lose the checkpoint file: the index's position is still committed.
    await unlink(join(dir, "checkpoint"));
    s = await openAt({ autoCommit: false });
    await expectCommittedPrefix(s, src, src.mid);
    expect(
      okResult(await s.append("a", { kind: "any" }, [newEvent({ c: 1 }, "T", src.committedId)]))
        .nextExpectedVersion,
    ).toBe(2);
    s.setCommitPosition(s.durableEnd);
    expect(await allOf(s)).toEqual(await allOf(src.leader));
  });

  it("single node (autoCommit true) reopens the whole log committed, whatever the commit checkpoint", async () => {
    const src = await setup();
    const s = await openAt({ autoCommit: false });
    void ship(src.leader, s);
    await durable(s);
    s.setCommitPosition(src.mid);
    await s.close();
    const single = await openAt({});
    expect(single.commitPosition).toBe(src.leader.endPosition);
    expect(await allOf(single)).toEqual(await allOf(src.leader));
  });

  it("refuses a commit checkpoint beyond the log or inside a batch as CORRUPTED", async () => {
    const src = await setup();
    const s = await openAt({ autoCommit: false });
    void ship(src.leader, s);
    await durable(s);
    const end = s.endPosition;
    await s.abort();
    const log = new DiskLog({ dir, segmentBytes: 8192 });
    for (const [commit, msg] of [
      [end + 100, /before the commit checkpoint/],
      [src.mid - 5, /not a batch boundary/],
    ] as const) {
      await log.open();
      await log.writeCheckpoint({ durable: end, commit }, true);
      await log.close();
      await expect(openAt({ autoCommit: false })).rejects.toMatchObject({
        code: "CORRUPTED",
        message: expect.stringMatching(msg),
      });
    }
  });
});
