import { describe, expect, it } from "vitest";
import { AckLog } from "./acks.js";
import { consumer, entries } from "./test-fixtures.js";

describe("AckLog", () => {
  it("writes done positions, delayed retries and replayed copies in one record; waiters per consumer", () => {
    const log = new AckLog();
    const [e0, e1] = entries(2);
    const a = consumer("a", 10);
    log.add(100, e0, a);
    log.addDelay(e1!, { position: 200, dueMs: 9_000, retryCount: 2 }, 5_000, a);
    expect(log.hasBatch).toBe(true);
    const batch = log.takeBatch();
    expect(log.hasBatch).toBe(false);
    expect(AckLog.recordOf(batch)).toEqual({
      positions: [100],
      delayed: [{ position: 200, dueMs: 9_000, retryCount: 2 }],
    });
    expect(batch.waiters.get(a)).toEqual([100, 200]);
  });

  it("keeps the record of a delayed retry until a checkpoint passes its event", () => {
    const log = new AckLog();
    const [e0, e1] = entries(2);
    const a = consumer("a", 10);
    log.add(100, e0, a);
    log.written(log.takeBatch(), 0, 0);
    log.addDelay(e1!, { position: 200, dueMs: 9_000, retryCount: 1 }, 1_000, a);
    log.written(log.takeBatch(), 1, 0);
    expect(log.acksFrom).toBe(0);
    log.passCheckpoint(100);
    expect(log.acksFrom).toBe(1);
    log.passCheckpoint(150);
    expect(log.acksFrom).toBe(1);
    log.passCheckpoint(200);
    expect(log.acksFrom).toBe(2);
  });

  it("a rebuilt log restores a delayed retry until its event is acknowledged, and ignores it behind the checkpoint", () => {
    const log = new AckLog();
    log.loadRecord(
      0,
      { positions: [], delayed: [{ position: 300, dueMs: 1, retryCount: 1 }] },
      100,
      0,
    );
    log.loadRecord(
      1,
      { positions: [], delayed: [{ position: 300, dueMs: 2, retryCount: 2 }] },
      100,
      0,
    );
    log.loadRecord(
      2,
      { positions: [], delayed: [{ position: 50, dueMs: 3, retryCount: 1 }] },
      100,
      0,
    );
    log.loadRecord(
      3,
      { positions: [], delayed: [{ position: 400, dueMs: 4, retryCount: 1 }] },
      100,
      0,
    );
    log.loadRecord(4, { positions: [400] }, 100, 0);
    log.loadRecord(5, { delayed: [{ position: "x" }, null] }, 100, 0);
    expect(log.takeDelay(50)).toBeUndefined();
    expect(log.takeDelay(400)).toBeUndefined();
    expect(log.takeDelay(300)).toEqual({ position: 300, dueMs: 2, retryCount: 2 });
    expect(log.takeDelay(300)).toBeUndefined();
    expect(log.isDoneAhead(400)).toBe(true);
  });

  it("forgets recorded delays of positions the read has passed", () => {
    const log = new AckLog();
    log.loadRecord(
      0,
      { positions: [], delayed: [{ position: 300, dueMs: 1, retryCount: 1 }] },
      -1,
      0,
    );
    log.forgetDelaysBefore(301);
    expect(log.takeDelay(300)).toBeUndefined();
  });
});
