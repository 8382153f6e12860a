import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StoreError, type ExpectedVersion, type StoredEvent } from "../streams/types.js";
import { eventBytes } from "../streams/page-bytes.js";
import { createDiskStore, createMemoryStore, type LogStore } from "./index.js";
import { appendN, dataOf, events, newEvent, okResult, tempDir } from "./test-helpers.js";

interface Harness {
  store: LogStore;
  clock: { now: number };
  cleanup: () => Promise<void>;
}

const variants: Array<[string, () => Promise<Harness>]> = [
  [
    "memory",
    async () => {
      const clock = { now: 1_700_000_000_000 };
      const store = createMemoryStore({ nowMs: () => clock.now });
      await store.open();
      return { store, clock, cleanup: () => store.close() };
    },
  ],
  [
    // One stream state in memory, the index written after every commit: every rule runs
    // against states read back from the index.
    "memory (tiny stream cache)",
    async () => {
      const clock = { now: 1_700_000_000_000 };
      const store = createMemoryStore({
        nowMs: () => clock.now,
        streamCache: 1,
        indexFlush: { flushEntries: 1, flushEveryMs: 0 },
      });
      await store.open();
      return { store, clock, cleanup: () => store.close() };
    },
  ],
  [
    "disk",
    async () => {
      const clock = { now: 1_700_000_000_000 };
      const tmp = await tempDir();
      const store = createDiskStore({
        dir: tmp.dir,
        segmentBytes: 64 * 1024,
        nowMs: () => clock.now,
        streamCache: 2,
      });
      await store.open();
      return {
        store,
        clock,
        cleanup: async () => {
          await store.close();
          await tmp.remove();
        },
      };
    },
  ],
];

async function storeError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof StoreError) return err.code;
    throw err;
  }
  return "no error";
}

describe.each(variants)("%s store", (_name, make) => {
  let h: Harness;
  let store: LogStore;
  beforeEach(async () => {
    h = await make();
    store = h.store;
  });
  afterEach(async () => {
    await h.cleanup();
  });

  async function readAllOf(stream: string): Promise<StoredEvent[]> {
    return (
      await store.readStream(stream, { direction: "forwards", fromRevision: 0, maxCount: 10_000 })
    ).events;
  }

  describe("expected version", () => {
    type Setup = "none" | "exists" | "soft_deleted";
    const cases: Array<
      [Setup, ExpectedVersion, "ok" | { streamExists: boolean; actualRevision: number }, number]
    > = [
      ["none", { kind: "any" }, "ok", 0],
      ["none", { kind: "no_stream" }, "ok", 0],
      ["none", { kind: "stream_exists" }, { streamExists: false, actualRevision: -1 }, -1],
      ["none", { kind: "exact", revision: 0 }, { streamExists: false, actualRevision: -1 }, -1],
      ["exists", { kind: "any" }, "ok", 2],
      ["exists", { kind: "no_stream" }, { streamExists: true, actualRevision: 1 }, 1],
      ["exists", { kind: "stream_exists" }, "ok", 2],
      ["exists", { kind: "exact", revision: 1 }, "ok", 2],
      ["exists", { kind: "exact", revision: 0 }, { streamExists: true, actualRevision: 1 }, 1],
      ["exists", { kind: "exact", revision: 5 }, { streamExists: true, actualRevision: 1 }, 1],
      ["soft_deleted", { kind: "any" }, "ok", 2],
      ["soft_deleted", { kind: "no_stream" }, "ok", 2],
      ["soft_deleted", { kind: "stream_exists" }, { streamExists: false, actualRevision: 1 }, -1],
      ["soft_deleted", { kind: "exact", revision: 1 }, "ok", 2],
    ];
    it.each(cases)("%s stream, expected %j -> %j", async (setup, expected, outcome, lastAfter) => {
      if (setup !== "none") okResult(await store.append("s", { kind: "any" }, events(2)));
      if (setup === "soft_deleted") okResult(await store.delete("s", { kind: "any" }, false));
      const r = await store.append("s", expected, [newEvent()]);
      if (outcome === "ok") {
        expect(r.ok).toBe(true);
        expect(okResult(r).nextExpectedVersion).toBe(lastAfter);
      } else {
        expect(r).toEqual({ ok: false, wrongExpectedVersion: outcome });
      }
      if (lastAfter >= 0) {
        const read = await store.readStream("s", {
          direction: "backwards",
          fromRevision: "end",
          maxCount: 1,
        });
        expect(read.lastRevision).toBe(lastAfter);
      } else {
        expect(
          await storeError(
            store.readStream("s", { direction: "forwards", fromRevision: 0, maxCount: 1 }),
          ),
        ).toBe("STREAM_NOT_FOUND");
      }
    });

    it("checks against appends still queued (not yet durable)", async () => {
      const a = store.append("q", { kind: "no_stream" }, [newEvent()]);
      const b = store.append("q", { kind: "no_stream" }, [newEvent()]);
      const c = store.append("q", { kind: "exact", revision: 0 }, [newEvent()]);
      const [ra, rb, rc] = await Promise.all([a, b, c]);
      expect(ra.ok).toBe(true);
      expect(rb).toEqual({
        ok: false,
        wrongExpectedVersion: { streamExists: true, actualRevision: 0 },
      });
      expect(okResult(rc).nextExpectedVersion).toBe(1);
    });

    it("rejects invalid input with INVALID_ARGUMENT", async () => {
      expect(await storeError(store.append("", { kind: "any" }, [newEvent()]))).toBe(
        "INVALID_ARGUMENT",
      );
      expect(await storeError(store.append("$all", { kind: "any" }, [newEvent()]))).toBe(
        "INVALID_ARGUMENT",
      );
      expect(
        await storeError(store.append("s", { kind: "any" }, [{ ...newEvent(), id: "nope" }])),
      ).toBe("INVALID_ARGUMENT");
      expect(
        await storeError(store.append("s", { kind: "exact", revision: -1 }, [newEvent()])),
      ).toBe("INVALID_ARGUMENT");
      const badMeta = { ...newEvent(), type: "$metadata", data: Buffer.from("[1,2]") };
      expect(await storeError(store.append("$$s", { kind: "any" }, [badMeta]))).toBe(
        "INVALID_ARGUMENT",
      );
      expect(store.stats().events).toBe(0);
    });
  });

  describe("idempotency", () => {
    it.each<[string, ExpectedVersion]>([
      ["exact", { kind: "exact", revision: 1 }],
      ["no_stream", { kind: "no_stream" }],
      ["any", { kind: "any" }],
      ["stream_exists", { kind: "stream_exists" }],
    ])("a retry with expected %s returns the original result", async (_k, expected) => {
      if (expected.kind !== "no_stream")
        okResult(await store.append("i", { kind: "any" }, events(2)));
      const batch = events(3);
      const first = okResult(await store.append("i", expected, batch));
      okResult(await store.append("i", { kind: "any" }, events(1))); // something after it
      const again = await store.append("i", expected, batch);
      expect(again).toEqual(first);
      expect(store.stats().events).toBe(expected.kind === "no_stream" ? 4 : 6);
    });

    it("a retry of a still-queued append resolves with the same result", async () => {
      okResult(await store.append("i", { kind: "any" }, events(1)));
      const batch = events(2);
      const [a, b] = await Promise.all([
        store.append("i", { kind: "exact", revision: 0 }, batch),
        store.append("i", { kind: "exact", revision: 0 }, batch),
      ]);
      expect(b).toEqual(a);
      expect(okResult(a).nextExpectedVersion).toBe(2);
      expect((await readAllOf("i")).length).toBe(3);
    });

    it("a partial match is a wrong expected version", async () => {
      const batch = events(2);
      okResult(await store.append("p", { kind: "any" }, batch));
      const mixed = [batch[0]!, newEvent()];
      expect(await store.append("p", { kind: "any" }, mixed)).toEqual({
        ok: false,
        wrongExpectedVersion: { streamExists: true, actualRevision: 1 },
      });
      expect(
        await store.append("p", { kind: "exact", revision: 0 }, [batch[1]!, newEvent()]),
      ).toEqual({
        ok: false,
        wrongExpectedVersion: { streamExists: true, actualRevision: 1 },
      });
      expect((await readAllOf("p")).length).toBe(2);
    });

    it("exact retries beyond the window are answered from the log", async () => {
      const tmpStore = h.store;
      const small = _name === "memory" ? createMemoryStore({ idempotencyWindow: 2 }) : null;
      const s = small ?? tmpStore;
      if (small !== null) await small.open();
      try {
        const batch = events(3);
        const first = okResult(await s.append("w", { kind: "no_stream" }, batch));
        for (let i = 0; i < 5; i++) okResult(await s.append("other", { kind: "any" }, events(1)));
        expect(await s.append("w", { kind: "no_stream" }, batch)).toEqual(first);
        expect(await s.append("w", { kind: "exact", revision: 0 }, batch.slice(1))).toEqual(first);
        expect(
          (await s.append("w", { kind: "exact", revision: 0 }, [newEvent(), newEvent()])).ok,
        ).toBe(false);
      } finally {
        if (small !== null) await small.close();
      }
    });
  });

  describe("readStream", () => {
    it("pages forwards and backwards over a long stream", async () => {
      okResult(await store.append("long", { kind: "no_stream" }, events(50)));
      for (let i = 0; i < 3; i++)
        okResult(await store.append("long", { kind: "any" }, events(50, 50 + i * 50)));
      okResult(await store.append("noise", { kind: "any" }, events(10)));
      const seen: number[] = [];
      let from: number | "end" = 0;
      for (;;) {
        const page = await store.readStream("long", {
          direction: "forwards",
          fromRevision: from,
          maxCount: 37,
        });
        seen.push(...page.events.map((e) => e.revision));
        expect(page.lastRevision).toBe(199);
        if (page.endOfStream) break;
        from = page.nextRevision;
      }
      expect(seen).toEqual(Array.from({ length: 200 }, (_, i) => i));
      const back: number[] = [];
      from = "end";
      for (;;) {
        const page = await store.readStream("long", {
          direction: "backwards",
          fromRevision: from,
          maxCount: 33,
        });
        back.push(...page.events.map((e) => e.revision));
        for (const e of page.events) expect(dataOf(e)).toEqual({ n: e.revision });
        if (page.endOfStream) {
          expect(page.nextRevision).toBe(-1);
          break;
        }
        from = page.nextRevision;
      }
      expect(back).toEqual(Array.from({ length: 200 }, (_, i) => 199 - i));
    });

    it.each<[string, "forwards" | "backwards", number | "end", number, number[], number, boolean]>([
      ["forwards from 0", "forwards", 0, 3, [0, 1, 2], 3, false],
      ["forwards to the end", "forwards", 3, 10, [3, 4], 5, true],
      ["forwards from end", "forwards", "end", 10, [], 5, true],
      ["forwards beyond the end", "forwards", 9, 10, [], 9, true],
      ["backwards from end", "backwards", "end", 2, [4, 3], 2, false],
      ["backwards to the start", "backwards", 1, 5, [1, 0], -1, true],
      ["backwards from beyond", "backwards", 99, 1, [4], 3, false],
    ])(
      "%s",
      async (_t, direction, fromRevision, maxCount, revisions, nextRevision, endOfStream) => {
        okResult(await store.append("r", { kind: "any" }, events(5)));
        const r = await store.readStream("r", { direction, fromRevision, maxCount });
        expect(r.events.map((e) => e.revision)).toEqual(revisions);
        expect(r.nextRevision).toBe(nextRevision);
        expect(r.endOfStream).toBe(endOfStream);
        expect(r.lastRevision).toBe(4);
      },
    );

    it("returns what was written", async () => {
      const e = { ...newEvent({ hello: "wörld" }, "Greeting"), metadata: Buffer.from("meta") };
      const r = okResult(
        await store.append("x", { kind: "any" }, [
          e,
          { ...newEvent(), isJson: false, data: Buffer.from([0, 1, 2]) },
        ]),
      );
      const [a, b] = await readAllOf("x");
      expect(a).toMatchObject({
        streamId: "x",
        revision: 0,
        id: e.id,
        type: "Greeting",
        isJson: true,
        createdMs: h.clock.now,
      });
      expect(Buffer.from(a!.metadata).toString()).toBe("meta");
      expect(dataOf(a!)).toEqual({ hello: "wörld" });
      expect(b!.isJson).toBe(false);
      expect([...b!.data]).toEqual([0, 1, 2]);
      expect(b!.position).toBe(r.position);
      expect(a!.position).toBeLessThan(b!.position);
    });

    it("reads streams dense, sparse and mixed over many segments, in pages of any size", async () => {
      // ~5 MB over 64 KiB segments: "dense" is written in runs of 40 events, "sparse" one
      // event after each ~30 KB of others, "mixed" every other append. Stream reads read the
      // log in blocks that grow while the walk stays dense and shrink after a jump.
      const pad = (i: number) => "p".repeat((i * 1237) % 3_000);
      let i = 0;
      const put = async (stream: string, count: number) => {
        const batch = Array.from({ length: count }, () => newEvent({ i: i++, pad: pad(i) }));
        okResult(await store.append(stream, { kind: "any" }, batch));
      };
      for (let round = 0; round < 50; round++) {
        await put("dense", 40);
        for (let k = 0; k < 10; k++) {
          await put("mixed", 1);
          await put("filler", 2);
        }
        await put("sparse", 1);
      }
      const all: StoredEvent[] = [];
      for (let from = 0; ;) {
        const page = await store.readAll({
          direction: "forwards",
          fromPosition: from,
          maxCount: 4_096,
        });
        all.push(...page.events);
        if (page.endOfStream) break;
        from = page.nextPosition;
      }
      expect(all.length).toBe(i);
      const summary = (e: StoredEvent) =>
        `${e.streamId}@${e.revision}:${e.position}:${JSON.stringify(dataOf(e))}`;
      for (const stream of ["dense", "sparse", "mixed"]) {
        const expected = all.filter((e) => e.streamId === stream).map(summary);
        for (const maxBytes of [8_000, 300_000, undefined]) {
          for (const direction of ["forwards", "backwards"] as const) {
            const got: string[] = [];
            let from: number | "end" = direction === "forwards" ? 0 : "end";
            for (let reads = 0; reads < 1_000; reads++) {
              const page = await store.readStream(stream, {
                direction,
                fromRevision: from,
                maxCount: 4_096,
                ...(maxBytes !== undefined && { maxBytes }),
              });
              got.push(...page.events.map(summary));
              if (page.endOfStream) break;
              from = page.nextRevision;
            }
            expect(got).toEqual(direction === "forwards" ? expected : [...expected].reverse());
          }
        }
      }
    });

    it("throws STREAM_NOT_FOUND for an unknown stream", async () => {
      expect(
        await storeError(
          store.readStream("nope", { direction: "forwards", fromRevision: 0, maxCount: 1 }),
        ),
      ).toBe("STREAM_NOT_FOUND");
    });
  });

  describe("pages bounded by bytes (maxBytes)", () => {
    const MAX = 8_000;
    /** Event i: data of 20 to ~3,000 bytes, so that pages end at varied places. */
    const sized = (i: number) => newEvent({ i, pad: "p".repeat((i * 1237) % 3_000) });
    const bytesOf = (page: readonly StoredEvent[]) =>
      page.reduce((sum, e) => sum + eventBytes(e), 0);

    /**
     * Pages hold at most MAX bytes of events (or one event), and end only where the next
     * event would not fit; together they are `expected`, each once, in order.
     */
    function checkPages(pages: StoredEvent[][], expected: readonly StoredEvent[]): void {
      expect(pages.flat().map((e) => e.position)).toEqual(expected.map((e) => e.position));
      pages.forEach((page, k) => {
        expect(page.length).toBeGreaterThan(0);
        if (page.length > 1) expect(bytesOf(page)).toBeLessThanOrEqual(MAX);
        const next = pages[k + 1]?.[0];
        if (next !== undefined) expect(bytesOf(page) + eventBytes(next)).toBeGreaterThan(MAX);
      });
    }

    /** 60 events, every third in stream "other", the rest in "sized"; all of them, forwards. */
    async function fill(): Promise<StoredEvent[]> {
      for (let i = 0; i < 60; i++)
        okResult(await store.append(i % 3 === 0 ? "other" : "sized", { kind: "any" }, [sized(i)]));
      const all = await store.readAll({
        direction: "forwards",
        fromPosition: 0,
        maxCount: 1_000,
        maxBytes: 1_000_000,
      });
      expect(all.events.length).toBe(60);
      return all.events;
    }

    async function streamPages(direction: "forwards" | "backwards"): Promise<StoredEvent[][]> {
      const pages: StoredEvent[][] = [];
      let from: number | "end" = direction === "forwards" ? 0 : "end";
      for (let reads = 0; reads < 100; reads++) {
        const page = await store.readStream("sized", {
          direction,
          fromRevision: from,
          maxCount: 4_096,
          maxBytes: MAX,
        });
        pages.push(page.events);
        if (page.endOfStream) return pages;
        from = page.nextRevision;
      }
      throw new Error("the stream's pages did not end");
    }

    async function allPages(
      direction: "forwards" | "backwards",
      filter?: (e: StoredEvent) => boolean,
    ): Promise<StoredEvent[][]> {
      const pages: StoredEvent[][] = [];
      let from: number | "end" = direction === "forwards" ? 0 : "end";
      for (let reads = 0; reads < 100; reads++) {
        const page = await store.readAll({
          direction,
          fromPosition: from,
          maxCount: 4_096,
          maxBytes: MAX,
          ...(filter && { filter }),
        });
        pages.push(page.events);
        if (page.endOfStream) return pages;
        from = page.nextPosition;
      }
      throw new Error("the pages of $all did not end");
    }

    it("pages a stream forwards and backwards, each page as full as fits", async () => {
      const sizedEvents = (await fill()).filter((e) => e.streamId === "sized");
      const forwards = await streamPages("forwards");
      expect(forwards.length).toBeGreaterThan(3);
      checkPages(forwards, sizedEvents);
      checkPages(await streamPages("backwards"), [...sizedEvents].reverse());
    });

    it("pages $all forwards and backwards, with and without a filter", async () => {
      const all = await fill();
      const forwards = await allPages("forwards");
      expect(forwards.length).toBeGreaterThan(3);
      checkPages(forwards, all);
      checkPages(await allPages("backwards"), [...all].reverse());
      const sized = (e: StoredEvent) => e.streamId === "sized";
      checkPages(await allPages("forwards", sized), all.filter(sized));
      checkPages(await allPages("backwards", sized), all.filter(sized).reverse());
    });

    it("holds one event larger than maxBytes alone, and goes on after it", async () => {
      okResult(
        await store.append("huge", { kind: "any" }, [
          newEvent({ pad: "h".repeat(3 * MAX) }),
          newEvent({ pad: "h".repeat(3 * MAX) }),
          newEvent({ small: true }),
        ]),
      );
      const first = await store.readStream("huge", {
        direction: "forwards",
        fromRevision: 0,
        maxCount: 10,
        maxBytes: MAX,
      });
      expect(first.events.map((e) => e.revision)).toEqual([0]);
      expect(first.endOfStream).toBe(false);
      expect(first.nextRevision).toBe(1);
      const rest = await store.readStream("huge", {
        direction: "forwards",
        fromRevision: 1,
        maxCount: 10,
        maxBytes: MAX,
      });
      expect(rest.events.map((e) => e.revision)).toEqual([1]);
      expect(rest.nextRevision).toBe(2);
      const back = await store.readAll({
        direction: "backwards",
        fromPosition: "end",
        maxCount: 10,
        maxBytes: MAX,
      });
      // The small event, then not the large one before it.
      expect(back.events.map((e) => e.revision)).toEqual([2]);
      expect(back.endOfStream).toBe(false);
      const before = await store.readAll({
        direction: "backwards",
        fromPosition: back.nextPosition,
        maxCount: 10,
        maxBytes: MAX,
      });
      expect(before.events.map((e) => e.revision)).toEqual([1]);
    });

    it("refuses a maxBytes that is not a positive integer", async () => {
      okResult(await store.append("s", { kind: "any" }, events(1)));
      for (const maxBytes of [0, -1, 1.5, Number.NaN]) {
        expect(
          await storeError(
            store.readStream("s", {
              direction: "forwards",
              fromRevision: 0,
              maxCount: 1,
              maxBytes,
            }),
          ),
        ).toBe("INVALID_ARGUMENT");
        expect(
          await storeError(
            store.readAll({ direction: "forwards", fromPosition: 0, maxCount: 1, maxBytes }),
          ),
        ).toBe("INVALID_ARGUMENT");
      }
    });
  });

  describe("readAll", () => {
    it("gives the event loop turns while a filtered scan matches nothing, forwards and backwards", async () => {
      // 20,000 events, read from memory in the memory stores (and mostly from the disk log's
      // tail kept in memory): without turns, the scan would run as one chain of microtasks,
      // and no timer or socket of the process would run until it ended.
      for (let b = 0; b < 100; b++)
        okResult(await store.append(`scan-${b % 10}`, { kind: "any" }, events(200)));
      let turns = 0;
      let counting = true;
      const tick = (): void => {
        turns++;
        if (counting) setImmediate(tick);
      };
      setImmediate(tick);
      try {
        for (const direction of ["forwards", "backwards"] as const) {
          const before = turns;
          const page = await store.readAll({
            direction,
            fromPosition: direction === "forwards" ? 0 : "end",
            maxCount: 10,
            maxScan: 100_000,
            filter: () => false,
          });
          expect(page.events).toEqual([]);
          if (direction === "forwards") expect(page.scanned).toBe(20_000);
          expect(turns - before).toBeGreaterThan(0);
        }
      } finally {
        counting = false;
      }
    });

    it("reads forwards and backwards with paging and a filter", async () => {
      for (let i = 0; i < 10; i++)
        okResult(
          await store.append(i % 2 === 0 ? "even" : "odd", { kind: "any" }, [newEvent({ i })]),
        );
      const fwd: StoredEvent[] = [];
      let from: number | "end" = 0;
      for (;;) {
        const page = await store.readAll({
          direction: "forwards",
          fromPosition: from,
          maxCount: 3,
        });
        fwd.push(...page.events);
        if (page.endOfStream) {
          expect(page.nextPosition).toBe(store.commitPosition);
          break;
        }
        from = page.nextPosition;
      }
      expect(fwd.map((e) => dataOf(e))).toEqual(Array.from({ length: 10 }, (_, i) => ({ i })));
      const back: StoredEvent[] = [];
      from = "end";
      for (;;) {
        const page = await store.readAll({
          direction: "backwards",
          fromPosition: from,
          maxCount: 4,
        });
        back.push(...page.events);
        if (page.endOfStream) break;
        from = page.nextPosition;
      }
      expect(back.map((e) => e.position)).toEqual(fwd.map((e) => e.position).reverse());

      const odd = await store.readAll({
        direction: "forwards",
        fromPosition: 0,
        maxCount: 100,
        filter: (e) => e.streamId === "odd",
      });
      expect(odd.events.map((e) => dataOf(e))).toEqual([
        { i: 1 },
        { i: 3 },
        { i: 5 },
        { i: 7 },
        { i: 9 },
      ]);
      const oddBack = await store.readAll({
        direction: "backwards",
        fromPosition: "end",
        maxCount: 2,
        filter: (e) => e.streamId === "odd",
      });
      expect(oddBack.events.map((e) => dataOf(e))).toEqual([{ i: 9 }, { i: 7 }]);
      expect(oddBack.endOfStream).toBe(false);

      const limited = await store.readAll({
        direction: "forwards",
        fromPosition: 0,
        maxCount: 100,
        maxScan: 4,
        filter: (e) => e.streamId === "odd",
      });
      expect(limited.events.length).toBe(2);
      expect(limited.endOfStream).toBe(false);
      expect(limited.nextPosition).toBe(fwd[4]!.position);
    });

    it("reads backwards from the end of a record larger than a read block", async () => {
      // 300 KB records: more than the 256 KiB block a backward scan reads first.
      okResult(await store.append("s", { kind: "any" }, events(2)));
      okResult(
        await store.append("big", { kind: "any" }, [newEvent({ pad: "b".repeat(300_000) })]),
      );
      const afterFirstBig = store.commitPosition;
      okResult(
        await store.append("big", { kind: "any" }, [newEvent({ pad: "c".repeat(300_000) })]),
      );
      // One event per page from the end (the newest record is a large one): the first page and
      // the second each start right after a large record.
      const seen: string[] = [];
      let from: number | "end" = "end";
      for (let pages = 0; pages < 10; pages++) {
        const page = await store.readAll({
          direction: "backwards",
          fromPosition: from,
          maxCount: 1,
        });
        seen.push(...page.events.map((e) => `${e.streamId}@${e.revision}`));
        if (page.endOfStream) break;
        from = page.nextPosition;
      }
      expect(seen).toEqual(["big@1", "big@0", "s@1", "s@0"]);
      const rest = await store.readAll({
        direction: "backwards",
        fromPosition: afterFirstBig,
        maxCount: 10,
      });
      expect(rest.events.map((e) => `${e.streamId}@${e.revision}`)).toEqual([
        "big@0",
        "s@1",
        "s@0",
      ]);
      // A position inside a large record is still the caller's mistake.
      expect(
        await storeError(
          store.readAll({
            direction: "backwards",
            fromPosition: afterFirstBig - 150_000,
            maxCount: 1,
          }),
        ),
      ).toBe("INVALID_ARGUMENT");
    });

    it("rejects a position inside a record", async () => {
      okResult(await store.append("s", { kind: "any" }, events(2)));
      expect(
        await storeError(store.readAll({ direction: "forwards", fromPosition: 3, maxCount: 1 })),
      ).toBe("INVALID_ARGUMENT");
      expect(
        await storeError(
          store.readAll({
            direction: "forwards",
            fromPosition: store.commitPosition + 1,
            maxCount: 1,
          }),
        ),
      ).toBe("INVALID_ARGUMENT");
      // Backwards, inside the first record (shorter than a record's trailer) or a later one:
      // the caller's position, not damage (this was CORRUPTED, logged as an internal error).
      for (const fromPosition of [3, store.commitPosition - 3]) {
        expect(
          await storeError(store.readAll({ direction: "backwards", fromPosition, maxCount: 1 })),
        ).toBe("INVALID_ARGUMENT");
      }
    });
  });

  describe("metadata and deletes", () => {
    async function setMeta(stream: string, meta: object): Promise<void> {
      okResult(
        await store.append(`$$${stream}`, { kind: "any" }, [{ ...newEvent(meta, "$metadata") }]),
      );
    }

    it("applies maxCount, truncateBefore and maxAgeSec to stream and $all reads", async () => {
      okResult(await store.append("m", { kind: "any" }, events(10)));
      expect(await store.getMetadata("m")).toBeNull();
      await setMeta("m", { maxCount: 3, custom: "x" });
      expect(await store.getMetadata("m")).toEqual({ maxCount: 3, custom: "x" });
      expect((await readAllOf("m")).map((e) => e.revision)).toEqual([7, 8, 9]);
      const all = await store.readAll({
        direction: "forwards",
        fromPosition: 0,
        maxCount: 100,
        filter: (e) => e.streamId === "m",
      });
      expect(all.events.map((e) => e.revision)).toEqual([7, 8, 9]);

      await setMeta("m", { truncateBefore: 8 });
      expect((await readAllOf("m")).map((e) => e.revision)).toEqual([8, 9]);
      const back = await store.readStream("m", {
        direction: "backwards",
        fromRevision: "end",
        maxCount: 10,
      });
      expect(back.events.map((e) => e.revision)).toEqual([9, 8]);
      expect(back.endOfStream).toBe(true);

      await setMeta("m", { maxAgeSec: 60 });
      h.clock.now += 30_000;
      okResult(await store.append("m", { kind: "any" }, events(1)));
      expect((await readAllOf("m")).length).toBe(11);
      h.clock.now += 45_000; // the first ten are now 75 s old, the last 45 s
      expect((await readAllOf("m")).map((e) => e.revision)).toEqual([10]);
      const allAged = await store.readAll({
        direction: "backwards",
        fromPosition: "end",
        maxCount: 100,
        filter: (e) => e.streamId === "m",
      });
      expect(allAged.events.map((e) => e.revision)).toEqual([10]);
      const metaEvents = await readAllOf("$$m");
      expect(metaEvents.length).toBe(3);
    });

    it("soft delete hides the stream until it is appended to again", async () => {
      okResult(await store.append("sd", { kind: "any" }, events(3)));
      await setMeta("sd", { custom: 1 });
      const del = okResult(await store.delete("sd", { kind: "exact", revision: 2 }, false));
      expect(del.nextExpectedVersion).toBe(2);
      expect(
        await storeError(
          store.readStream("sd", { direction: "forwards", fromRevision: 0, maxCount: 10 }),
        ),
      ).toBe("STREAM_NOT_FOUND");
      expect(await store.getMetadata("sd")).toMatchObject({ custom: 1, truncateBefore: 3 });
      const all = await store.readAll({
        direction: "forwards",
        fromPosition: 0,
        maxCount: 100,
        filter: (e) => e.streamId === "sd",
      });
      expect(all.events).toEqual([]);
      const again = okResult(await store.append("sd", { kind: "no_stream" }, events(2)));
      expect(again.nextExpectedVersion).toBe(4);
      const r = await store.readStream("sd", {
        direction: "forwards",
        fromRevision: 0,
        maxCount: 10,
      });
      expect(r.events.map((e) => e.revision)).toEqual([3, 4]);
      expect(await store.delete("sd", { kind: "exact", revision: 1 }, false)).toEqual({
        ok: false,
        wrongExpectedVersion: { streamExists: true, actualRevision: 4 },
      });
    });

    it("hard delete is forever", async () => {
      okResult(await store.append("hd", { kind: "any" }, events(2)));
      okResult(await store.append("keep", { kind: "any" }, events(1)));
      const del = okResult(await store.delete("hd", { kind: "any" }, true));
      expect(del.position).toBeGreaterThan(0);
      const read = { direction: "forwards", fromRevision: 0, maxCount: 10 } as const;
      expect(await storeError(store.readStream("hd", read))).toBe("STREAM_DELETED");
      expect(await storeError(store.append("hd", { kind: "any" }, [newEvent()]))).toBe(
        "STREAM_DELETED",
      );
      expect(
        await storeError(store.append("$$hd", { kind: "any" }, [newEvent({}, "$metadata")])),
      ).toBe("STREAM_DELETED");
      expect(await storeError(store.delete("hd", { kind: "any" }, false))).toBe("STREAM_DELETED");
      expect(await storeError(store.delete("never", { kind: "stream_exists" }, true))).toBe(
        "no error",
      );
      const all = await store.readAll({ direction: "forwards", fromPosition: 0, maxCount: 100 });
      expect(all.events.map((e) => e.streamId)).toEqual(["keep"]);
    });
  });

  describe("commit", () => {
    it("notifies onCommit after the commit position moved, and counts", async () => {
      const seen: Array<[number, number]> = [];
      const off = store.onCommit((p) => seen.push([p, store.commitPosition]));
      const r = okResult(await store.append("c", { kind: "any" }, events(2)));
      expect(seen.length).toBe(1);
      expect(seen[0]![0]).toBe(store.commitPosition);
      expect(seen[0]![1]).toBe(store.commitPosition);
      expect(store.commitPosition).toBeGreaterThan(r.position);
      off();
      okResult(await store.append("c", { kind: "any" }, events(1)));
      expect(seen.length).toBe(1);
      expect(store.stats()).toMatchObject({
        events: 3,
        streams: 1,
        commitPosition: store.commitPosition,
      });
    });

    it("shares syncs between concurrent appends (group commit)", async () => {
      const n = 300;
      const before = store.stats().syncs;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          store.append(`g-${i % 7}`, { kind: "any" }, [newEvent({ i })]),
        ),
      );
      expect(results.every((r) => r.ok)).toBe(true);
      const syncs = store.stats().syncs - before;
      expect(syncs).toBeGreaterThan(0);
      expect(syncs).toBeLessThan(n / 5);
      expect(store.stats().events).toBe(n);
    });

    it("refuses work after close", async () => {
      await appendN(store, "z", 2);
      await store.close();
      expect(await storeError(store.append("z", { kind: "any" }, [newEvent()]))).toBe(
        "STORE_CLOSED",
      );
      expect(
        await storeError(
          store.readStream("z", { direction: "forwards", fromRevision: 0, maxCount: 1 }),
        ),
      ).toBe("STORE_CLOSED");
      await store.open();
      expect((await readAllOf("z")).length).toBe(2);
    });
  });
});
