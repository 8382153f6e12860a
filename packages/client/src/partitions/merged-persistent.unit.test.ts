// MergedPersistentSubscription's own logic (merging, routing acks, ending) over fake parts.
// The real thing against server processes: test/src/partitions/persistent-all.int.test.ts.
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { ChorusClient } from "../client.js";
import { InvalidArgumentError } from "../errors.js";
import type { PersistentEvent } from "../persistent/subscription.js";
import { MergedPersistentSubscription } from "./merged-persistent.js";

/**
 * A stand-in for one partition's PersistentSubscription: its events carry the partition's
 * name, as a group client of a partitioned client makes them.
 */
class FakePart extends EventEmitter {
  readonly acks: bigint[][] = [];
  readonly nacks: { action: string; positions: bigint[] }[] = [];
  unsubscribes = 0;
  /** What the next ack() returns (default: resolved). */
  ackResult: Promise<void> | undefined;
  readonly #queue: PersistentEvent[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #error: Error | undefined;
  #finish!: () => void;
  readonly finished = new Promise<void>((resolve) => (this.#finish = resolve));

  constructor(readonly partition: string) {
    super();
  }

  deliver(position: bigint): void {
    this.#queue.push({
      event: {
        streamId: `s-${position}`,
        type: "T",
        revision: 0n,
        position,
        id: `${position}`,
        data: {},
        metadata: undefined,
        contentType: "application/json",
        created: new Date(0),
        partition: this.partition,
      },
      retryCount: 0,
    } as unknown as PersistentEvent);
    this.#wake?.();
  }

  end(error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    if (error) this.emit("dropped", error);
    this.#wake?.();
    this.#finish();
  }

  ack(events: PersistentEvent | readonly PersistentEvent[]): Promise<void> {
    const list = Array.isArray(events) ? events : [events as PersistentEvent];
    this.acks.push(list.map((e: PersistentEvent) => e.event.position));
    return this.ackResult ?? Promise.resolve();
  }

  nack(action: string, _reason: string, events: readonly PersistentEvent[]): Promise<void> {
    this.nacks.push({ action, positions: events.map((e) => e.event.position) });
    return Promise.resolve();
  }

  unsubscribe(): Promise<void> {
    this.unsubscribes++;
    this.end();
    return this.finished;
  }

  [Symbol.asyncIterator](): AsyncIterator<PersistentEvent> {
    return {
      next: async () => {
        for (;;) {
          const e = this.#queue.shift();
          if (e) return { done: false, value: e };
          if (this.#error) throw this.#error;
          if (this.#ended) return { done: true, value: undefined };
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#wake = undefined;
        }
      },
    };
  }
}

function setup(): { sub: MergedPersistentSubscription; a: FakePart; b: FakePart } {
  const a = new FakePart("a");
  const b = new FakePart("b");
  const client = (part: FakePart) =>
    ({ persistentSubscriptions: { subscribe: () => part } }) as unknown as ChorusClient;
  const sub = new MergedPersistentSubscription(
    [
      { name: "a", client: client(a) },
      { name: "b", client: client(b) },
    ],
    "g",
  );
  return { sub, a, b };
}

async function take(it: AsyncIterator<PersistentEvent>, n: number): Promise<PersistentEvent[]> {
  const out: PersistentEvent[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) throw new Error("ended early");
    out.push(r.value);
  }
  return out;
}

describe("MergedPersistentSubscription", () => {
  it("merges the parts' events, each tagged with its partition", async () => {
    const { sub, a, b } = setup();
    a.deliver(1n);
    b.deliver(1n);
    a.deliver(2n);
    const got = await take(sub[Symbol.asyncIterator](), 3);
    expect(got.map((e) => `${e.event.partition}:${e.event.position}`).sort()).toEqual([
      "a:1",
      "a:2",
      "b:1",
    ]);
    await sub.unsubscribe();
  });

  it("splits an ack per partition and resolves once every partition confirmed", async () => {
    const { sub, a, b } = setup();
    a.deliver(1n);
    b.deliver(7n);
    a.deliver(2n);
    const got = await take(sub[Symbol.asyncIterator](), 3);
    let confirmB!: () => void;
    b.ackResult = new Promise<void>((resolve) => (confirmB = resolve));
    let settled = false;
    const acked = sub.ack(got).then(() => (settled = true));
    expect(a.acks).toEqual([[1n, 2n]]);
    expect(b.acks).toEqual([[7n]]);
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false); // b has not confirmed yet
    confirmB();
    await acked;
    expect(settled).toBe(true);
    // One event: straight to its part; nack too.
    b.ackResult = undefined;
    await sub.ack(got.find((e) => e.event.partition === "b")!);
    expect(b.acks).toEqual([[7n], [7n]]);
    await sub.nack("park", "bad", [got.find((e) => e.event.partition === "a")!]);
    expect(a.nacks).toEqual([{ action: "park", positions: [1n] }]);
    expect(b.nacks).toEqual([]);
    await sub.unsubscribe();
  });

  it("refuses an event naming no known partition, sending nothing", async () => {
    const { sub, a, b } = setup();
    a.deliver(1n);
    const [e] = await take(sub[Symbol.asyncIterator](), 1);
    const stray = { ...e!, event: { ...e!.event, partition: "c" } };
    await expect(sub.ack([e!, stray])).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(sub.ack({ ...e!, event: { ...e!.event, partition: undefined } })).rejects.toThrow(
      /names its partition/,
    );
    await expect(sub.ack(e!, { extra: 1 } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(a.acks).toEqual([]);
    expect(b.acks).toEqual([]);
    await sub.unsubscribe();
  });

  it("reports each part's rejoin with its partition, and confirmed once all joined", () => {
    const { sub, a, b } = setup();
    const seen: string[] = [];
    sub.on("confirmed", () => seen.push("confirmed"));
    sub.on("reconnecting", (_err, p) => seen.push(`reconnecting ${p}`));
    sub.on("resubscribed", (p) => seen.push(`resubscribed ${p}`));
    a.emit("confirmed");
    expect(seen).toEqual([]);
    b.emit("confirmed");
    b.emit("reconnecting", new Error("lost"));
    b.emit("resubscribed");
    expect(seen).toEqual(["confirmed", "reconnecting b", "resubscribed b"]);
    void sub.unsubscribe();
  });

  it("ends when a part drops: emits dropped, the iterator throws, the other part stops", async () => {
    const { sub, a, b } = setup();
    const dropped: Error[] = [];
    sub.on("dropped", (err) => dropped.push(err));
    const it = sub[Symbol.asyncIterator]();
    const next = it.next();
    const failure = new Error("group deleted");
    a.end(failure);
    await expect(next).rejects.toBe(failure);
    expect(dropped).toEqual([failure]);
    expect(b.unsubscribes).toBe(1);
    await sub.finished;
    expect(sub.isEnded).toBe(true);
  });

  it("unsubscribe stops every part once, even when the parts end meanwhile", async () => {
    const { sub, a, b } = setup();
    await sub.unsubscribe();
    await sub.unsubscribe();
    expect([a.unsubscribes, b.unsubscribes]).toEqual([1, 1]);
    expect(sub.isEnded).toBe(true);
    await expect(sub.ack([])).resolves.toBeUndefined();
  });
});
