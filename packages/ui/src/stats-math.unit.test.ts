import { describe, expect, it } from "vitest";
import type { NodeStats } from "./api.js";
import { interval, quantileOf } from "./stats-math.js";

function sample(time: string, eventsWritten: number, buckets: number[], count: number): NodeStats {
  return {
    instanceId: "a",
    state: "Leader",
    time,
    uptimeMs: 0,
    store: { events: 0, streams: 0, logBytes: 0, commitPosition: "0" },
    totals: {
      appends: eventsWritten,
      appendsSucceeded: eventsWritten,
      eventsWritten,
      reads: 0,
      deletes: 0,
      requestErrors: 0,
      httpRequests: 0,
      connectionsActive: 0,
      subscriptionsActive: 0,
    },
    appendLatency: {
      count,
      sumMs: 0,
      bucketsMs: [1, 2, 5].map((le, i) => ({ le, count: buckets[i] ?? 0 })),
      p50Ms: null,
      p90Ms: null,
      p99Ms: null,
    },
  };
}

describe("quantileOf", () => {
  it("interpolates within the bucket the rank falls in", () => {
    // 10 observations: 4 up to 1 ms, 4 more up to 2 ms, 2 more up to 5 ms.
    expect(quantileOf([1, 2, 5], [4, 8, 10], 10, 0.5)).toBeCloseTo(1.25);
    expect(quantileOf([1, 2, 5], [4, 8, 10], 10, 0.2)).toBeCloseTo(0.5);
    expect(quantileOf([1, 2, 5], [4, 8, 10], 10, 1)).toBeCloseTo(5);
  });

  it("gives the largest bound for the overflow and null without observations", () => {
    expect(quantileOf([1, 2, 5], [0, 0, 1], 3, 0.99)).toBe(5);
    expect(quantileOf([1, 2, 5], [0, 0, 0], 0, 0.5)).toBeNull();
  });
});

describe("interval", () => {
  it("gives rates per second and the quantiles of the interval only", () => {
    const a = sample("2026-01-01T00:00:00.000Z", 100, [100, 100, 100], 100);
    const b = sample("2026-01-01T00:00:02.000Z", 120, [100, 110, 120], 120);
    const i = interval(a, b);
    expect(i?.eventsPerSec).toBe(10);
    // The 20 new observations: 10 in (1, 2], 10 in (2, 5]; none below 1 ms.
    expect(i?.p50Ms).toBeCloseTo(2);
    expect(i?.p99Ms).toBeCloseTo(4.94);
  });

  it("gives nothing across a restart or for samples out of order", () => {
    const a = sample("2026-01-01T00:00:02.000Z", 1, [], 0);
    const b = sample("2026-01-01T00:00:01.000Z", 2, [], 0);
    expect(interval(a, b)).toBeNull();
    expect(interval(b, { ...a, instanceId: "b" })).toBeNull();
  });
});
