import { describe, expect, it } from "vitest";
import { Dispatcher, type DispatchSettings } from "./dispatch.js";
import { pinnedOwner } from "./strategies.js";
import { byConsumer, consumer, entries } from "./test-fixtures.js";

const settings =
  (s: Partial<DispatchSettings> = {}) =>
  () => ({
    consumerStrategy: "RoundRobin" as const,
    messageTimeoutMs: 1_000,
    ...s,
  });

describe("Dispatcher", () => {
  it("round-robins queued events within each consumer's buffer", () => {
    const d = new Dispatcher(settings());
    const a = consumer("a", 2);
    const b = consumer("b", 1);
    d.addConsumer(a);
    d.addConsumer(b);
    const es = entries(5);
    for (const e of es) d.enqueue(e);
    expect(byConsumer(d.dispatch(0))).toEqual({ a: [100, 300], b: [200] });
    expect(d.queue.map((e) => e.event.position)).toEqual([400, 500]);
    // No room: nothing more goes out.
    expect(d.dispatch(0).size).toBe(0);
    expect(es[0]!.state).toBe("inflight");
    expect(es[0]!.deadlineMs).toBe(1_000);
  });

  it("gives a leaving consumer's events back at the front of the queue, in read order", () => {
    const d = new Dispatcher(settings({ consumerStrategy: "DispatchToSingle" }));
    const a = consumer("a", 3);
    d.addConsumer(a);
    const es = entries(5);
    for (const e of es) d.enqueue(e);
    d.dispatch(0);
    expect(d.removeConsumer(a).map((e) => e.event.position)).toEqual([100, 200, 300]);
    expect(d.queue.map((e) => e.event.position)).toEqual([100, 200, 300, 400, 500]);
    expect(a.inflight.size).toBe(0);
    expect(es.every((e) => e.state === "queued" && e.retryCount === 0)).toBe(true);
  });

  it("reports events past their message timeout, and none without a timeout", () => {
    const d = new Dispatcher(settings());
    const a = consumer("a", 10);
    d.addConsumer(a);
    const es = entries(2);
    d.enqueue(es[0]!);
    d.dispatch(0);
    d.enqueue(es[1]!);
    d.dispatch(500);
    expect(d.expired(999)).toEqual([]);
    expect(d.expired(1_000)).toEqual([es[0]]);
    expect(d.expired(1_500)).toEqual([es[0], es[1]]);

    const never = new Dispatcher(settings({ messageTimeoutMs: 0 }));
    never.addConsumer(consumer("b", 1));
    never.enqueue(entries(1)[0]!);
    never.dispatch(0);
    expect(never.expired(Number.MAX_SAFE_INTEGER)).toEqual([]);
  });

  it("holds a delayed event until its due time, then queues it behind the others", () => {
    const d = new Dispatcher(settings());
    const a = consumer("a", 1);
    d.addConsumer(a);
    const es = entries(3);
    for (const e of es) d.enqueue(e);
    d.dispatch(0);
    // The consumer asks for a retry of its event with a delay; the delay is not durable yet.
    d.delay(es[0]!, Infinity);
    expect(es[0]!.state).toBe("delayed");
    expect(a.inflight.size).toBe(0);
    expect(d.nextDueMs()).toBeUndefined();
    expect(d.setDue(es[0]!, 500)).toBe(true);
    expect(d.nextDueMs()).toBe(500);
    // Others keep flowing meanwhile.
    expect(byConsumer(d.dispatch(10))).toEqual({ a: [200] });
    expect(d.releaseDue(499)).toEqual([]);
    a.inflight.clear();
    d.finish(es[1]!);
    expect(byConsumer(d.dispatch(20))).toEqual({ a: [300] });
    d.finish(es[2]!);
    expect(d.releaseDue(500)).toEqual([es[0]]);
    expect(byConsumer(d.dispatch(500))).toEqual({ a: [100] });
    expect(d.delayedCount).toBe(0);
  });

  it("Pinned keeps a stream at its owner and moves it only when nothing of it is out", () => {
    const d = new Dispatcher(settings({ consumerStrategy: "Pinned" }));
    const a = consumer("a", 10);
    d.addConsumer(a);
    const es = entries(4, "orders-1");
    for (const e of es.slice(0, 2)) d.enqueue(e);
    expect(byConsumer(d.dispatch(0))).toEqual({ a: [100, 200] });
    // A consumer that wins the stream joins: it waits while events of it are out at "a".
    let winner = consumer("x", 10);
    for (let i = 0; pinnedOwner("orders-1", [a, winner]) !== winner; i++)
      winner = consumer(`x${i}`, 10);
    d.addConsumer(winner);
    for (const e of es.slice(2)) d.enqueue(e);
    expect(d.dispatch(1).size).toBe(0);
    d.finish(es[0]!);
    expect(d.dispatch(2).size).toBe(0);
    d.finish(es[1]!);
    expect(byConsumer(d.dispatch(3))).toEqual({ [winner.id]: [300, 400] });
  });
});
