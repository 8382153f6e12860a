// "An acknowledged event is never delivered again", checked on the group's pieces with the
// time passed in: the dispatcher (queue, buffers, timeouts, delayed retries), the acks log,
// the parked events' replay and the source's read cursor.
import { describe, expect, it } from "vitest";
import { AckLog } from "./acks.js";
import type { Consumer, Entry } from "./common.js";
import { Dispatcher } from "./dispatch.js";
import { parkedCopy, replayCandidates } from "./parking.js";
import { Source } from "./source.js";
import type { StoredEvent } from "../streams/types.js";
import { consumer, entries, storedEvent } from "./test-fixtures.js";

const TIMEOUT_MS = 1_000;

function setup(n = 4) {
  const d = new Dispatcher(() => ({
    consumerStrategy: "RoundRobin",
    messageTimeoutMs: TIMEOUT_MS,
  }));
  const acks = new AckLog();
  const es = entries(n);
  for (const e of es) d.enqueue(e);
  /** What the group does on an ack: the event is done; its record goes with the next flush. */
  const ack = (e: Entry, c: Consumer) => {
    d.finish(e);
    acks.add(e.event.position, e, c);
  };
  /** Every position handed out by dispatches at `nowMs` (after `before`). */
  const delivered: number[] = [];
  const dispatch = (nowMs: number) => {
    for (const list of d.dispatch(nowMs).values())
      for (const e of list) delivered.push(e.event.position);
  };
  return { d, acks, es, ack, delivered, dispatch };
}

describe("an acknowledged event is never delivered again", () => {
  it("ack, then a message timeout tick: only the others time out", () => {
    const { d, es, ack, delivered, dispatch } = setup(3);
    const a = consumer("a", 10);
    d.addConsumer(a);
    dispatch(0);
    ack(es[1]!, a);
    const expired = d.expired(TIMEOUT_MS * 5);
    expect(expired.map((e) => e.event.position)).toEqual([100, 300]);
    for (const e of expired) {
      e.retryCount++;
      d.requeue(e);
    }
    delivered.length = 0;
    dispatch(TIMEOUT_MS * 5);
    expect(delivered).toEqual([100, 300]);
    expect(d.expired(Number.MAX_SAFE_INTEGER).map((e) => e.event.position)).not.toContain(200);
  });

  it("ack, then the consumer leaves and joins again: the acked event is not given back", () => {
    const { d, es, ack, delivered, dispatch } = setup(4);
    const a = consumer("a", 10);
    d.addConsumer(a);
    dispatch(0);
    ack(es[0]!, a);
    ack(es[2]!, a);
    expect(d.removeConsumer(a).map((e) => e.event.position)).toEqual([200, 400]);
    delivered.length = 0;
    const again = consumer("a", 10);
    const other = consumer("b", 10);
    d.addConsumer(again);
    d.addConsumer(other);
    dispatch(10);
    expect([...delivered].sort()).toEqual([200, 400]);
  });

  it("ack of an event waiting out a delayed retry: it is not handed out when due", () => {
    const { d, es, ack, delivered, dispatch } = setup(2);
    const a = consumer("a", 10);
    d.addConsumer(a);
    dispatch(0);
    d.delay(es[0]!, Infinity);
    expect(d.setDue(es[0]!, 500)).toBe(true);
    ack(es[0]!, a);
    expect(d.delayedCount).toBe(0);
    // The delayed retry's record becomes durable after the ack: too late to bring it back.
    expect(d.setDue(es[0]!, 600)).toBe(false);
    expect(d.releaseDue(10_000)).toEqual([]);
    delivered.length = 0;
    dispatch(10_000);
    expect(delivered).toEqual([]);
  });

  it("ack made durable, then the group is rebuilt from the acks stream: the event is skipped when read", () => {
    const { d, acks, es, ack, dispatch } = setup(3);
    const a = consumer("a", 10);
    d.addConsumer(a);
    dispatch(0);
    // A delayed retry of 200 first, then its ack: the ack wins after a rebuild.
    d.delay(es[1]!, Infinity);
    acks.addDelay(es[1]!, { position: 200, dueMs: 5_000, retryCount: 1 }, 4_000, a);
    const first = acks.takeBatch();
    acks.written(first, 0, 0);
    ack(es[1]!, a);
    ack(es[2]!, a);
    const second = acks.takeBatch();
    acks.written(second, 1, 0);

    const rebuilt = new AckLog();
    const records = [AckLog.recordOf(first), AckLog.recordOf(second)];
    records.forEach((body, revision) =>
      rebuilt.loadRecord(revision, JSON.parse(JSON.stringify(body)), -1, 0),
    );
    const source = new Source("s");
    source.start(undefined, { from: 0 });
    const handedAgain: number[] = [];
    for (const e of es) {
      if (source.accept(e.event) === undefined) continue;
      if (rebuilt.takeDoneAhead(e.event.position)) continue;
      handedAgain.push(e.event.position);
    }
    expect(handedAgain).toEqual([100]);
    expect(rebuilt.takeDelay(200)).toBeUndefined();
    // Read again (a page that overlaps): the source does not take an event twice.
    expect(source.accept(es[0]!.event)).toBeUndefined();
  });

  it("ack of a replayed parked event, then replay again (also after a rebuild): not offered", () => {
    const original = storedEvent("s", 7, 700);
    const other = storedEvent("s", 8, 800);
    const copies: StoredEvent[] = [original, other].map((e, i) => ({
      ...storedEvent("$persistent-s::g-parked", i, 10_000 + i),
      ...parkedCopy(e, "poison"),
      revision: i,
      position: 10_000 + i,
      streamId: "$persistent-s::g-parked",
      createdMs: 0,
    }));
    const acks = new AckLog();
    const d = new Dispatcher(() => ({ consumerStrategy: "RoundRobin", messageTimeoutMs: 0 }));
    const a = consumer("a", 10);
    d.addConsumer(a);
    const held = new Map<number, Entry>();
    const known = (p: number) => held.has(p);
    const candidates = replayCandidates(copies, acks.replayedDone, known);
    expect(candidates.map((e) => e.position)).toEqual([700, 800]);
    const replayed = candidates.map((c) => {
      const { parkedRevision, ...e } = c;
      const entry: Entry = {
        ...entries(1)[0]!,
        event: e,
        replay: true,
        parkedRevision,
      };
      held.set(e.position, entry);
      return entry;
    });
    d.enqueueFirst(replayed);
    d.dispatch(0);
    // 700 is acknowledged; while its record is written it is still known: not offered.
    d.finish(replayed[0]!);
    acks.add(700, replayed[0], a);
    expect(replayCandidates(copies, acks.replayedDone, known).map((e) => e.position)).toEqual([]);
    const batch = acks.takeBatch();
    expect(AckLog.recordOf(batch)).toEqual({ positions: [700], replayed: [0] });
    expect(acks.written(batch, 0, 0)).toBe(1);
    held.delete(700);
    // Durable: a replay started now skips it; 800 is still out, so it is not offered either.
    expect(replayCandidates(copies, acks.replayedDone, known)).toEqual([]);
    held.delete(800);
    expect(replayCandidates(copies, acks.replayedDone, known).map((e) => e.position)).toEqual([
      800,
    ]);
    // A group rebuilt from the acks stream skips it too.
    const rebuilt = new AckLog();
    rebuilt.loadRecord(0, JSON.parse(JSON.stringify(AckLog.recordOf(batch))), 5_000, 0);
    expect(
      replayCandidates(copies, rebuilt.replayedDone, () => false).map((e) => e.position),
    ).toEqual([800]);
  });
});
