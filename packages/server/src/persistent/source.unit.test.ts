import { describe, expect, it } from "vitest";
import { CheckpointClock, checkpointCandidate } from "./checkpoint.js";
import { DEFAULT_GROUP_SETTINGS } from "./settings.js";
import { groupFilter, isGroupStateStream, Source } from "./source.js";
import { entries, storedEvent } from "./test-fixtures.js";
import type { ReadAllOptions, StoredEvent, StreamStore } from "../streams/types.js";

/** A store whose readAll scans `log` (positions 10, 20, ...) with the options given. */
function logStore(log: StoredEvent[]): StreamStore {
  const readAll = (o: ReadAllOptions) => {
    const events: StoredEvent[] = [];
    let scanned = 0;
    let next = o.fromPosition as number;
    for (const e of log) {
      if (e.position < next) continue;
      if (events.length >= o.maxCount || scanned >= (o.maxScan ?? Infinity)) break;
      scanned++;
      next = e.position + 10;
      if (!o.filter || o.filter(e)) events.push(e);
    }
    const end = log.length === 0 ? 0 : log[log.length - 1]!.position + 10;
    return Promise.resolve({ events, nextPosition: next, endOfStream: next >= end, scanned });
  };
  return { readAll } as unknown as StreamStore;
}

const ev = (streamId: string, position: number, type = "Test"): StoredEvent => ({
  ...storedEvent(streamId, 0, position),
  type,
});

describe("a $all group's filter", () => {
  it("is the read filter, without the groups' own streams even with includeSystem", () => {
    let skipped = 0;
    const f = groupFilter({ includeSystem: true }, () => skipped++);
    expect(f(ev("$persistent-config", 1))).toBe(false);
    expect(f(ev("$persistent-$all::g-acks", 2))).toBe(false);
    expect(f(ev("$$$persistent-$all::g-acks", 3))).toBe(false);
    expect(f(ev("$stats", 4))).toBe(true);
    expect(f(ev("order-1", 5))).toBe(true);
    expect(skipped).toBe(0); // system streams left out do not count
    expect(isGroupStateStream("persistent-x")).toBe(false);
  });

  it("counts the events of non-system streams it leaves out", () => {
    let skipped = 0;
    const f = groupFilter({ streamNamePrefix: ["order-"] }, () => skipped++);
    expect([ev("order-1", 1), ev("cart-1", 2), ev("$x", 3), ev("cart-2", 4)].map(f)).toEqual([
      true,
      false,
      false,
      false,
    ]);
    expect(skipped).toBe(2);
  });

  it("applies type regexes and leaves system streams out by default", () => {
    const f = groupFilter({ eventTypeRegex: "^Order(Placed|Paid)$" }, () => undefined);
    expect(f(ev("a", 1, "OrderPlaced"))).toBe(true);
    expect(f(ev("a", 2, "OrderShipped"))).toBe(false);
    expect(f(ev("$a", 3, "OrderPaid"))).toBe(false);
  });
});

describe("reading $all past events the filter leaves out", () => {
  // Positions 10..200: cart events, and one order event at 150.
  const log = Array.from({ length: 20 }, (_, i) =>
    ev(i === 14 ? "order-1" : `cart-${i}`, (i + 1) * 10),
  );

  it("moves the last read point to the scan's end when nothing matched", async () => {
    const source = new Source("$all", { streamNamePrefix: ["order-"] });
    source.start(undefined, { from: 0 });
    const read = await source.read(logStore(log.slice(0, 10)), 10);
    expect(read).toMatchObject({ events: [], next: 110, end: true, skipped: 10 });
    source.advance(read.next);
    expect(source.lastRead).toEqual({ point: 109, position: 109, next: 110 });
    expect(source.from).toBe(110);
  });

  it("takes the match, then counts the rest as read; a restart resumes at the scan's end", async () => {
    const source = new Source("$all", { streamNamePrefix: ["order-"] });
    source.start(undefined, { from: 0 });
    const store = logStore(log);
    const read = await source.read(store, 10);
    expect(read.events.map((e) => e.position)).toEqual([150]);
    expect(read.skipped).toBe(19);
    expect(read.end).toBe(true);
    const taken = source.accept(read.events[0]!);
    expect(taken).toEqual({ point: 150, prev: { point: -1, position: -1 } });
    source.advance(read.next);
    expect(source.lastRead).toEqual({ point: 209, position: 209, next: 210 });
    expect(source.passed(200)).toBe(true);
    expect(source.ahead(210)).toBe(true);

    const again = new Source("$all", { streamNamePrefix: ["order-"] });
    again.start(source.lastRead, { from: 0 });
    expect(again.from).toBe(210);
    expect(again.lastRead).toEqual({ point: 209, position: 209, next: 210 });
  });

  it("a stream group's read point never has a scan's end", () => {
    const source = new Source("s");
    source.start(undefined, { from: 0 });
    source.advance(5);
    expect(source.lastRead).toEqual({ point: -1, position: -1 });
  });
});

describe("checkpoints over scanned events", () => {
  it("the candidate keeps the scan's end of the event read before the first one not done", () => {
    const [first] = entries(1);
    const e = { ...first!, prevPoint: 99, prevPosition: 99, prevNext: 100 };
    expect(checkpointCandidate(e, { point: 500, position: 500 })).toEqual({
      point: 99,
      position: 99,
      next: 100,
    });
    expect(checkpointCandidate(undefined, { point: 209, position: 209, next: 210 })).toEqual({
      point: 209,
      position: 209,
      next: 210,
    });
  });

  it("is written for skipped events like for done ones, and not for system records alone", () => {
    const clock = new CheckpointClock();
    const s = DEFAULT_GROUP_SETTINGS;
    const candidate = { point: 20_009, position: 20_009, next: 20_010 };
    // Only system records read past: nothing done, no checkpoint and no timer.
    expect(clock.decide(candidate, s, 0, false)).toBe("none");
    clock.doneSince += 20_000; // skipped events
    expect(clock.decide(candidate, s, 0, false)).toBe("write");
    clock.written(candidate, 20_000, 0);
    expect(clock.decide(candidate, s, 10_000, true)).toBe("none");
  });
});
