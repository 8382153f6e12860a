import { describe, expect, it } from "vitest";
import { StepWatch } from "./step-watch.js";

describe("StepWatch", () => {
  it("says once when one step stays at the head, and when it ends", () => {
    const w = new StepWatch(1000);
    expect(w.check(0, 0, 0)).toBeUndefined(); // idle
    expect(w.check(10, 1, 0)).toBeUndefined(); // a step starts
    expect(w.check(900, 3, 0)).toBeUndefined(); // under the threshold, others queued behind
    expect(w.check(1010, 3, 0)).toEqual({ kind: "slow", runningMs: 1010 });
    expect(w.check(5000, 3, 0)).toBeUndefined(); // said once
    expect(w.check(6000, 2, 1)).toEqual({ kind: "finished", runningMs: 6000 });
    expect(w.check(6010, 2, 1)).toBeUndefined();
  });

  it("stays quiet while steps keep finishing, however long the chain is busy", () => {
    const w = new StepWatch(1000);
    for (let t = 0, done = 0; t < 10_000; t += 100, done++)
      expect(w.check(t, 5, done)).toBeUndefined();
  });

  it("times a step from the tick that first saw it, and an idle chain resets the clock", () => {
    const w = new StepWatch(1000);
    expect(w.check(0, 1, 0)).toBeUndefined();
    expect(w.check(500, 0, 1)).toBeUndefined(); // finished before the threshold
    expect(w.check(1200, 1, 1)).toBeUndefined(); // a new step, seen after an idle tick at 500
    expect(w.check(1499, 1, 1)).toBeUndefined();
    expect(w.check(1500, 1, 1)).toEqual({ kind: "slow", runningMs: 1000 });
  });
});
