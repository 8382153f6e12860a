import pino from "pino";
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../storage/index.js";
import type { NewEvent, StoredEvent } from "../streams/types.js";
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
