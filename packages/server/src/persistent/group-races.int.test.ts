/**
 * A group's writes overlapping the events its consumers finish: the group's own streams are
 * appended to through gates the test opens, so an event is finished exactly while one of the
 * group's records is being written. Found by the persistent-subscription differential test
 * (test/src/server/persistent-differential.int.test.ts), which meets these overlaps only now
 * and then.
 */
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LogStore } from "../storage/index.js";
import { MemoryLog } from "../storage/memory-log.js";
import { dataOf, events } from "../storage/test-helpers.js";
import type { StreamStore, StoredEvent } from "../streams/types.js";
import { acksStream, checkpointStream, parkedStream, type ConsumerHandle } from "./common.js";
import { PersistentService } from "./service.js";

const logger = pino({ level: "silent" });
const key = { streamId: "s", group: "g" };
const EAGER_CHECKPOINTS = { checkpointAfterMs: 0, minCheckpointCount: 1, maxCheckpointCount: 1 };

/** Appends to one stream wait here while it is closed; counts what waits and what was written. */
class Gate {
  #open = true;
  #waiters: (() => void)[] = [];
  /** Appends waiting at the gate now. */
  waiting = 0;
  /** Appends that went through and were written, with their events' data. */
  readonly written: unknown[][] = [];

  close(): void {
    this.#open = false;
  }

  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }

  async pass(): Promise<void> {
    if (this.#open) return;
    this.waiting++;
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.waiting--;
  }
}

/** `inner` with the appends to the streams `gates` names taken through their gates. */
function gated(inner: LogStore, gates: ReadonlyMap<string, Gate>): StreamStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "append") {
        return async (...args: Parameters<LogStore["append"]>) => {
          const gate = gates.get(args[0]);
          await gate?.pass();
          const result = await target.append(...args);
          gate?.written.push(args[2].map((e) => dataOf(e)));
          return result;
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as () => unknown).bind(target) : value;
    },
  });
}

/** Polls `ok` until it holds; fails after `timeoutMs` naming `what`. */
async function until(
  what: string,
  ok: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets every callback and promise the last step queued run. */
const settled = () => new Promise((resolve) => setImmediate(resolve));

describe("a persistent subscription group whose writes overlap its consumers' acks", () => {
  let inner: LogStore;
  let ps: PersistentService;
  const checkpoints = new Gate();
  const acks = new Gate();
  const parkedMetadata = new Gate();

  beforeEach(async () => {
    for (const gate of [checkpoints, acks, parkedMetadata]) {
      gate.open();
      gate.written.length = 0;
    }
    inner = new LogStore(new MemoryLog(), { autoCommit: true });
    await inner.open();
    const gates = new Map([
      [checkpointStream(key), checkpoints],
      [acksStream(key), acks],
      [`$$${parkedStream(key)}`, parkedMetadata],
    ]);
    const store = gated(inner, gates);
    ps = new PersistentService({ store: () => store, cluster: () => undefined, logger });
  });

  afterEach(async () => {
    for (const gate of [checkpoints, acks, parkedMetadata]) gate.open();
    ps.close();
    await inner.close();
  });

  function consume(
    bufferSize: number,
    onEvent: (e: StoredEvent, handle: () => ConsumerHandle) => void = () => undefined,
  ): Promise<{ got: StoredEvent[]; acked: number[]; handle: ConsumerHandle }> {
    const got: StoredEvent[] = [];
    const acked: number[] = [];
    let handle: ConsumerHandle | undefined;
    return ps
      .subscribe(
        key,
        {
          deliver: (evs) => {
            for (const e of evs) {
              got.push(e);
              onEvent(e, () => handle!);
            }
          },
          acked: (positions) => acked.push(...positions),
          dropped: () => undefined,
        },
        { bufferSize, name: "c", connection: "test" },
      )
      .then((h) => {
        handle = h;
        return { got, acked, handle: h };
      });
  }

  it("checkpoints an event finished while a checkpoint's carried acks record was written", async () => {
    await inner.append("s", { kind: "any" }, events(7));
    await ps.create(key, EAGER_CHECKPOINTS);
    const { got, handle } = await consume(20);
    await until("7 deliveries", () => got.length === 7);
    const pos = got.map((e) => e.position);

    // A checkpoint at event 0 held at its gate.
    checkpoints.close();
    handle.ack([pos[0]!]);
    await until("the checkpoint at 0 waits", () => checkpoints.waiting === 1);
    // Meanwhile 1 is done, 2 and 3 are parked and replayed, and the replay of 2 is done: the
    // acks record naming the replayed copy is what the next checkpoint carries past itself.
    handle.ack([pos[1]!]);
    handle.nack([pos[2]!, pos[3]!], "park", "test");
    await until("2 and 3 parked", async () => (await ps.getInfo(key)).parkedCount === 2);
    await ps.replayParked(key, 0);
    await until("2 and 3 replayed", () => got.length === 9);
    handle.ack([pos[2]!]);
    const replayedNamed = () =>
      acks.written.some((data) =>
        data.some((d) => ((d as { replayed?: unknown[] }).replayed ?? []).length > 0),
      );
    await until("the replay of 2 recorded", replayedNamed);

    // Event 4's ack record held: the checkpoint decided when the one at 0 is written stops
    // before 4, and carries the replayed record in an acks record of its own, queued behind
    // 4's. Event 4 is done while that carry record waits and is written.
    acks.close();
    handle.ack([pos[4]!]);
    await until("4's acks record waits", () => acks.waiting === 1);
    checkpoints.open();
    await until("the checkpoint at 0 written", () => checkpoints.written.length >= 1);
    await settled();
    acks.open();

    // Every event up to 4 is done (3 only as parked; its replay is not): the checkpoint comes
    // to 4. It stayed at 3, with 4 counted as passed by a checkpoint decided before 4 was done.
    await until(
      "the checkpoint at 4",
      async () => (await ps.getInfo(key)).lastCheckpoint === 4,
      3_000,
    ).catch(async (err: unknown) => {
      throw new Error(
        `${(err as Error).message}; lastCheckpoint ${(await ps.getInfo(key)).lastCheckpoint}`,
      );
    });
  });

  it("offers a replay's rounds in the order parked when an event is done while a round ends", async () => {
    await inner.append("s", { kind: "any" }, events(11));
    // Rounds of three parked events (historyBufferSize).
    await ps.create(key, { readBatchSize: 1, historyBufferSize: 3 });
    const first = await consume(20, (e, handle) => {
      if ((dataOf(e) as { n: number }).n <= 8)
        setImmediate(() => handle().nack([e.position], "park", "test"));
    });
    await until("11 deliveries", () => first.got.length === 11);
    await until("0-8 parked", async () => (await ps.getInfo(key)).parkedCount === 9);
    first.handle.close();

    // The end of each round (the parked stream's start, in its metadata) is held; a consumer
    // of one event at a time acknowledges each at once.
    parkedMetadata.close();
    await ps.replayParked(key, 0);
    const order: number[] = [];
    const second = await consume(1, (e, handle) => {
      order.push((dataOf(e) as { n: number }).n);
      setImmediate(() => handle().ack([e.position]));
    });
    // Round one (0, 1, 2) done: its end waits at the gate; 9 and 10 are handed out and done
    // meanwhile. Each of those must not end the round a second time.
    await until("the first round's end waits", () => parkedMetadata.waiting >= 1);
    const nine = first.got[9]!.position;
    const ten = first.got[10]!.position;
    await until("9 and 10 acknowledged", () => [nine, ten].every((p) => second.acked.includes(p)));
    await settled();
    expect(parkedMetadata.waiting, "ends of the first round being written").toBe(1);
    parkedMetadata.open();
    await until("every event", () => order.length >= 11);
    expect(order.filter((n) => n <= 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    await until("nothing parked", async () => (await ps.getInfo(key)).parkedCount === 0);
    second.handle.close();
  });
});
