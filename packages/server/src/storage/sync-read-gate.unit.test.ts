import { describe, expect, it } from "vitest";
import {
  MAX_SYNC_READS_PAUSE_MS,
  SLOW_AGAIN_WITHIN_MS,
  SLOW_READS_WINDOW_MS,
  SLOW_SYNC_READ_MS,
  SYNC_READS_PAUSE_MS,
  SyncReadGate,
  VERY_SLOW_SYNC_READ_MS,
} from "./sync-read-gate.js";

/** A gate on a clock the test moves; `read(ms)` is a synchronous read that takes `ms`. */
function gate() {
  let now = 10_000;
  const g = new SyncReadGate({ now: () => now });
  return {
    g,
    read: (ms: number) => g.read(() => (now += ms)),
    wait: (ms: number) => (now += ms),
  };
}

describe("SyncReadGate", () => {
  it("stays open for reads from memory", () => {
    const { g, read } = gate();
    for (let i = 0; i < 1000; i++) read(0.005);
    expect(g.open).toBe(true);
    expect(g.pauses).toBe(0);
  });

  it("returns what the read returns, and times a read that throws", () => {
    const { g, wait } = gate();
    expect(g.read(() => 42)).toBe(42);
    expect(() =>
      g.read(() => {
        wait(VERY_SLOW_SYNC_READ_MS);
        throw new Error("EIO");
      }),
    ).toThrow("EIO");
    expect(g.open).toBe(false);
  });

  it("lets a lone slow read pass: one preempted read is no disk", () => {
    const { g, read, wait } = gate();
    read(SLOW_SYNC_READ_MS);
    expect(g.open).toBe(true);
    wait(SLOW_READS_WINDOW_MS + 1);
    read(SLOW_SYNC_READ_MS);
    expect(g.open).toBe(true);
    expect(g.pauses).toBe(0);
  });

  it("pauses on two slow reads close together, for SYNC_READS_PAUSE_MS", () => {
    const { g, read, wait } = gate();
    read(SLOW_SYNC_READ_MS);
    read(0.005);
    read(SLOW_SYNC_READ_MS);
    expect(g.open).toBe(false);
    expect(g.pauses).toBe(1);
    wait(SYNC_READS_PAUSE_MS - 1);
    expect(g.open).toBe(false);
    wait(1);
    expect(g.open).toBe(true);
    // The slow reads before the pause are forgotten: one more slow read alone passes.
    read(SLOW_SYNC_READ_MS);
    expect(g.open).toBe(true);
  });

  it("pauses on one very slow read", () => {
    const { g, read } = gate();
    read(VERY_SLOW_SYNC_READ_MS);
    expect(g.open).toBe(false);
    expect(g.pauses).toBe(1);
  });

  it("pauses twice as long each time the disk is slow again soon after, up to the longest pause", () => {
    const { g, read, wait } = gate();
    /** Reads until one is allowed (the pause ran out); how long that took. */
    const pausedFor = (): number => {
      let waited = 0;
      while (!g.open) {
        wait(100);
        waited += 100;
      }
      return waited;
    };
    const lengths: number[] = [];
    for (let i = 0; i < 9; i++) {
      read(VERY_SLOW_SYNC_READ_MS);
      lengths.push(pausedFor());
    }
    expect(lengths).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60].map((s) => s * 1_000));
    expect(MAX_SYNC_READS_PAUSE_MS).toBe(60_000);
    // Synchronous reads that went fine for SLOW_AGAIN_WITHIN_MS: the next pause is short again.
    for (let t = 0; t < SLOW_AGAIN_WITHIN_MS; t += 100) {
      read(0.005);
      wait(100);
    }
    read(VERY_SLOW_SYNC_READ_MS);
    expect(pausedFor()).toBe(SYNC_READS_PAUSE_MS);
  });

  it("does not count a read just under the slow bound", () => {
    const { g, read } = gate();
    for (let i = 0; i < 10; i++) read(SLOW_SYNC_READ_MS - 0.01);
    expect(g.open).toBe(true);
  });
});
