import pino from "pino";
import { describe, expect, it } from "vitest";
import { GatedReadsStore, ReadGate } from "../api/read-gate.js";
import { createMemoryStore } from "../storage/index.js";
import { ForwardingStore } from "../streams/forwarding-store.js";
import type { NewEvent, ReadAllOptions, StoredEvent } from "../streams/types.js";
import { Subscription, type SubscriptionSink } from "./subscription.js";

const event = (i: number): NewEvent => ({
  id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
  type: "E",
  isJson: true,
  data: Buffer.from("{}"),
  metadata: new Uint8Array(0),
});

class FakeSink implements SubscriptionSink {
  delivered: StoredEvent[] = [];
  caughtUpCount = 0;
  writable = true;
  resume: (() => void) | undefined;
  confirmed(): void {}
  events(events: StoredEvent[]): void {
    this.delivered.push(...events);
    // Pretend the transport buffer filled up after every batch.
    this.writable = false;
  }
  caughtUp(): void {
    this.caughtUpCount++;
  }
  dropped(): void {}
  canSend(): boolean {
    return this.writable;
  }
  whenWritable(resume: () => void): void {
    this.resume = resume;
  }
}

async function until(predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setImmediate(r));
  }
}

describe("Subscription backpressure", () => {
  it("stops reading while the transport is full and resumes when it drains", async () => {
    const store = createMemoryStore();
    await store.open();
    for (let i = 0; i < 10; i++) await store.append("s", { kind: "any" }, [event(i)]);
    const sink = new FakeSink();
    const sub = new Subscription({
      store,
      target: { kind: "stream", streamId: "s" },
      start: { kind: "start" },
      initialCredit: 100,
      sink,
      logger: pino({ level: "silent" }),
      pageSize: 3,
    });
    await sub.start();
    await until(() => sink.resume !== undefined);
    // One page of 3 was sent, then the full transport stopped the subscription.
    expect(sink.delivered.map((e) => e.revision)).toEqual([0, 1, 2]);
    for (let round = 0; round < 3; round++) {
      const resume = sink.resume;
      sink.resume = undefined;
      sink.writable = true;
      resume?.();
      await until(() => sink.resume !== undefined || sink.caughtUpCount > 0);
    }
    expect(sink.delivered.map((e) => e.revision)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    sink.writable = true;
    sink.resume?.();
    await until(() => sink.caughtUpCount === 1);
    sub.close();
    await store.close();
  });
});

describe("Subscription checkpoint interval", () => {
  class CheckpointSink extends FakeSink {
    checkpoints: number[] = [];
    /** Checkpoints sent beside events (not counted as event-less checkpoints). */
    override events(events: StoredEvent[], checkpointPosition?: number): void {
      this.delivered.push(...events);
      if (events.length === 0 && checkpointPosition !== undefined)
        this.checkpoints.push(checkpointPosition);
    }
  }

  it.each([
    // [non-matching events, matches after every, interval, least and most checkpoints]
    [1_000, 0, 100, 9, 10],
    [1_000, 0, 250, 4, 4],
    [1_000, 500, 100, 8, 10], // a match restarts the count
    [50, 0, 100, 0, 0],
  ])(
    "%d events, a match after every %d, interval %d: %d..%d checkpoints",
    async (noise, every, interval, least, most) => {
      const store = createMemoryStore();
      await store.open();
      for (let i = 0; i < noise; i++) {
        await store.append(`noise-${i % 7}`, { kind: "any" }, [event(i)]);
        if (every > 0 && (i + 1) % every === 0)
          await store.append("match", { kind: "any" }, [event(1_000_000 + i)]);
      }
      const sink = new CheckpointSink();
      const sub = new Subscription({
        store,
        target: {
          kind: "all",
          filter: (e) => e.streamId === "match",
          checkpointInterval: interval,
        },
        start: { kind: "start" },
        initialCredit: 100,
        sink,
        logger: pino({ level: "silent" }),
      });
      await sub.start();
      await until(() => sink.caughtUpCount === 1);
      sub.close();
      expect(sink.delivered.map((e) => e.streamId)).toEqual(
        Array.from({ length: every > 0 ? Math.floor(noise / every) : 0 }, () => "match"),
      );
      expect(sink.checkpoints.length).toBeGreaterThanOrEqual(least);
      expect(sink.checkpoints.length).toBeLessThanOrEqual(most);
      // Increasing, and each one a place a subscription can resume after.
      expect([...sink.checkpoints].sort((a, b) => a - b)).toEqual(sink.checkpoints);
      for (const cp of sink.checkpoints) {
        await expect(
          store.readAll({ direction: "forwards", fromPosition: cp + 1, maxCount: 1 }),
        ).resolves.toBeDefined();
      }
      await store.close();
    },
  );
});

describe("Subscription close", () => {
  it("drops its read that still waits for its turn at the node's read gate", async () => {
    const store = createMemoryStore();
    await store.open();
    for (let i = 0; i < 10; i++) await store.append("s", { kind: "any" }, [event(i)]);
    // One turn, held by another read until `release`; the inner store counts the reads run.
    let reads = 0;
    const counting = new (class extends ForwardingStore {
      override readAll(options: ReadAllOptions) {
        reads++;
        return this.inner.readAll(options);
      }
    })(store);
    const gate = new ReadGate(1);
    let release!: () => void;
    const held = gate.run(() => new Promise<void>((resolve) => (release = resolve)));
    const sink = new FakeSink();
    const sub = new Subscription({
      store: new GatedReadsStore(counting, gate),
      target: { kind: "all" },
      start: { kind: "start" },
      initialCredit: 100,
      sink,
      logger: pino({ level: "silent" }),
    });
    await sub.start();
    await until(() => gate.waiting === 1);
    sub.close();
    expect(gate.waiting).toBe(0);
    release();
    await held;
    await new Promise((r) => setImmediate(r));
    expect(reads).toBe(0);
    expect(sink.delivered).toEqual([]);
    expect(gate.running).toBe(0);
    await store.close();
  });
});
