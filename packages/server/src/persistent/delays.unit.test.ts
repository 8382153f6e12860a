import { describe, expect, it } from "vitest";
import { DelayQueue, DueTimer, type TimerFunctions } from "./delays.js";

/** Timers driven by hand: `advance(ms)` fires what is due, in order. */
function fakeTimers(): TimerFunctions & {
  now: () => number;
  advance: (ms: number) => void;
  pending: () => number;
} {
  let now = 1_000;
  let seq = 0;
  const timers = new Map<number, { at: number; callback: () => void }>();
  return {
    now: () => now,
    setTimeout: (callback, ms) => {
      const id = ++seq;
      timers.set(id, { at: now + ms, callback });
      return id;
    },
    clearTimeout: (handle) => {
      timers.delete(handle as number);
    },
    advance: (ms) => {
      const until = now + ms;
      for (;;) {
        let next: [number, { at: number; callback: () => void }] | undefined;
        for (const t of timers) if (t[1].at <= until && (!next || t[1].at < next[1].at)) next = t;
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].callback();
      }
      now = until;
    },
    pending: () => timers.size,
  };
}

const item = (name: string) => ({ name, dueMs: 0 });

describe("DelayQueue", () => {
  it("gives items back in due order, only once due, ties in the order added", () => {
    const q = new DelayQueue<{ name: string; dueMs: number }>();
    const a = item("a");
    const b = item("b");
    const c = item("c");
    const d = item("d");
    q.add(a, 300);
    q.add(b, 100);
    q.add(c, 300);
    q.add(d, 200);
    expect(q.nextDueMs()).toBe(100);
    expect(q.takeDue(99)).toEqual([]);
    expect(q.takeDue(200).map((x) => x.name)).toEqual(["b", "d"]);
    expect(q.takeDue(300).map((x) => x.name)).toEqual(["a", "c"]);
    expect(q.size).toBe(0);
    expect(q.nextDueMs()).toBeUndefined();
  });

  it("holds an item added with no due time (Infinity) until it is rescheduled", () => {
    const q = new DelayQueue<{ name: string; dueMs: number }>();
    const a = item("a");
    q.add(a, Infinity);
    expect(q.nextDueMs()).toBeUndefined();
    expect(q.takeDue(Number.MAX_SAFE_INTEGER)).toEqual([]);
    expect(q.reschedule(a, 50)).toBe(true);
    expect(q.nextDueMs()).toBe(50);
    expect(q.takeDue(50)).toEqual([a]);
    expect(q.reschedule(a, 60)).toBe(false);
  });

  it("an item removed is never due", () => {
    const q = new DelayQueue<{ name: string; dueMs: number }>();
    const a = item("a");
    const b = item("b");
    q.add(a, 10);
    q.add(b, 20);
    expect(q.remove(a)).toBe(true);
    expect(q.remove(a)).toBe(false);
    expect(q.takeDue(100)).toEqual([b]);
  });
});

describe("DueTimer", () => {
  it("keeps one timer, for the earliest due time asked for", () => {
    const t = fakeTimers();
    const fired: number[] = [];
    const timer = new DueTimer(t.now, () => fired.push(t.now()), t);
    timer.arm(t.now() + 500);
    timer.arm(t.now() + 800); // later: the timer stays
    expect(t.pending()).toBe(1);
    expect(timer.atMs).toBe(1_500);
    timer.arm(t.now() + 200); // earlier: replaces it
    expect(t.pending()).toBe(1);
    expect(timer.atMs).toBe(1_200);
    t.advance(199);
    expect(fired).toEqual([]);
    t.advance(1);
    expect(fired).toEqual([1_200]);
    expect(t.pending()).toBe(0);
    expect(timer.atMs).toBeUndefined();
  });

  it("never fires before the due time, even for a fraction of a millisecond ahead", () => {
    const t = fakeTimers();
    const fired: number[] = [];
    const timer = new DueTimer(t.now, () => fired.push(t.now()), t);
    timer.arm(t.now() + 0.3);
    t.advance(0);
    expect(fired).toEqual([]);
    t.advance(1);
    expect(fired).toEqual([1_001]);
  });

  it("does nothing without a due time, and nothing once closed", () => {
    const t = fakeTimers();
    let fired = 0;
    const timer = new DueTimer(t.now, () => fired++, t);
    timer.arm(undefined);
    expect(t.pending()).toBe(0);
    timer.arm(t.now() + 10);
    timer.close();
    expect(t.pending()).toBe(0);
    timer.arm(t.now() + 10);
    t.advance(100);
    expect(fired).toBe(0);
    expect(t.pending()).toBe(0);
  });
});
