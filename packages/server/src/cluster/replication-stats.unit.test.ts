import { describe, expect, it } from "vitest";
import { MAX_TIMED_SENDS, ReplicationStats, TIMELINE_POINTS } from "./replication-stats.js";

const A = "127.0.0.1:1001";
const B = "127.0.0.1:1002";

function stats(): { s: ReplicationStats; trips: number[] } {
  const trips: number[] = [];
  return { s: new ReplicationStats((seconds) => trips.push(seconds)), trips };
}

describe("ReplicationStats", () => {
  it("times each Append from its send until the follower reports it durable", () => {
    const { s, trips } = stats();
    s.startLeading(0, 1000);
    s.sent(A, 100, 1000);
    s.sent(A, 200, 1004);
    s.acked(A, 100, 1010); // covers the first only
    expect(trips).toEqual([0.01]);
    s.acked(A, 50, 1011); // behind what it said before: nothing new
    expect(trips).toEqual([0.01]);
    s.acked(A, 250, 1020);
    expect(trips).toEqual([0.01, 0.016]);
  });

  it("keeps the first send's time when records are sent again, and ignores other followers' acks", () => {
    const { s, trips } = stats();
    s.startLeading(0, 0);
    s.sent(A, 100, 0);
    s.sent(A, 100, 30); // resent after a back-up
    s.sent(A, 80, 31);
    s.acked(B, 100, 40);
    expect(trips).toEqual([]);
    s.acked(A, 100, 50);
    expect(trips).toEqual([0.05]);
  });

  it("times at most MAX_TIMED_SENDS unacknowledged Appends per follower", () => {
    const { s, trips } = stats();
    s.startLeading(0, 0);
    for (let i = 1; i <= MAX_TIMED_SENDS + 10; i++) s.sent(A, i, i);
    s.acked(A, MAX_TIMED_SENDS + 10, 5000);
    expect(trips.length).toBe(MAX_TIMED_SENDS);
  });

  it("measures nothing while not leading, and starts over in a new term", () => {
    const { s, trips } = stats();
    s.sent(A, 100, 0);
    s.acked(A, 100, 10);
    expect(trips).toEqual([]);
    expect(s.lag([A], 100, 10)).toEqual([]);
    s.startLeading(0, 0);
    s.sent(A, 100, 0);
    s.stopLeading();
    s.startLeading(100, 20);
    s.acked(A, 100, 30);
    expect(trips).toEqual([]);
  });

  it("reports each follower's lag in bytes and as the age of its oldest unacknowledged write", () => {
    const { s } = stats();
    s.startLeading(1000, 0);
    s.wrote(1100, 10);
    s.wrote(1200, 20);
    s.wrote(1300, 30);
    s.acked(A, 1300, 35);
    s.acked(B, 1100, 35);
    expect(s.lag([A, B], 1300, 50)).toEqual([
      { follower: A, bytes: 0, ms: 0 },
      // Bytes 1100..1200 were written at 20 ms.
      { follower: B, bytes: 200, ms: 30 },
    ]);
    s.acked(B, 1150, 60);
    expect(s.lag([B], 1300, 70)).toEqual([{ follower: B, bytes: 150, ms: 50 }]);
  });

  it("counts a follower not heard from in this term from position 0 and from the term's start", () => {
    const { s } = stats();
    s.startLeading(1000, 100);
    s.wrote(1100, 110);
    expect(s.lag([A], 1100, 400)).toEqual([{ follower: A, bytes: 1100, ms: 300 }]);
  });

  it("forgets followers no longer listed (a replica that left)", () => {
    const { s } = stats();
    s.startLeading(0, 0);
    s.wrote(10, 1);
    s.acked(A, 5, 2);
    s.acked(B, 10, 2);
    expect(s.lag([A, B], 10, 3).map((l) => l.follower)).toEqual([A, B]);
    expect(s.lag([B], 10, 3).map((l) => l.follower)).toEqual([B]);
    // A comes back: its old acknowledgement is gone, it counts from 0 again.
    expect(s.lag([A, B], 10, 3)[0]).toMatchObject({ follower: A, bytes: 10 });
  });

  it("writes within a millisecond share one point of the timeline", () => {
    const { s } = stats();
    s.startLeading(0, 0);
    s.wrote(10, 5);
    s.wrote(20, 5.5); // same point, written at 5 ms at the latest
    s.wrote(30, 7);
    s.acked(A, 15, 8);
    expect(s.lag([A], 30, 10)).toEqual([{ follower: A, bytes: 15, ms: 5 }]);
  });

  it("keeps the oldest unacknowledged write's age when the timeline fills up", () => {
    const { s } = stats();
    s.startLeading(0, 0);
    s.acked(A, 0, 0);
    s.acked(B, 0, 0);
    // A is stuck at 0; B keeps up. Far more writes than the timeline holds.
    const writes = TIMELINE_POINTS * 3;
    for (let i = 1; i <= writes; i++) {
      s.wrote(i * 10, 100 + i * 2);
      s.acked(B, i * 10, 100 + i * 2);
    }
    const now = 100 + writes * 2 + 1;
    const [a, b] = s.lag([A, B], writes * 10, now);
    // A's first missing byte was written at 102 ms: the age is exact (the oldest point kept).
    expect(a).toEqual({ follower: A, bytes: writes * 10, ms: now - 102 });
    expect(b).toEqual({ follower: B, bytes: 0, ms: 0 });
    // A acknowledges half: its age is that of a write at most a few merged points older.
    s.acked(A, (writes / 2) * 10, now);
    const [half] = s.lag([A], writes * 10, now);
    const exact = now - (100 + (writes / 2 + 1) * 2);
    expect(half!.ms).toBeGreaterThanOrEqual(exact);
    expect(half!.ms).toBeLessThanOrEqual(exact + 16);
  });

  it("drops timeline points every follower has acknowledged instead of merging them", () => {
    const { s } = stats();
    s.startLeading(0, 0);
    const writes = TIMELINE_POINTS * 2;
    for (let i = 1; i <= writes; i++) {
      s.wrote(i * 10, i * 2);
      s.acked(A, (i - 1) * 10, i * 2); // always one write behind
    }
    const now = writes * 2 + 1;
    expect(s.lag([A], writes * 10, now)).toEqual([{ follower: A, bytes: 10, ms: 1 }]);
  });
});
