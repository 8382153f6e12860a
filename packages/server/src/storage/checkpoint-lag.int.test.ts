// The checkpoint (durable end, commit position) is a lagging hint: written at most once per
// checkpointEveryMs after group commits, and brought up to date by a timer when writes stop.
import { afterEach, describe, expect, it } from "vitest";
import { MemoryLog } from "./memory-log.js";
import { LogStore } from "./store.js";
import { events, okResult, until } from "./test-helpers.js";

/** A memory log that keeps every checkpoint written. */
class RecordingLog extends MemoryLog {
  readonly written: Array<{ durable: number; commit: number }> = [];
  override async writeCheckpoint(checkpoint: { durable: number; commit: number }): Promise<void> {
    this.written.push({ ...checkpoint });
    await super.writeCheckpoint(checkpoint);
  }
}

const stores: LogStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

async function open(checkpointEveryMs: number): Promise<{ log: RecordingLog; store: LogStore }> {
  const log = new RecordingLog();
  const store = new LogStore(log, { checkpointEveryMs });
  stores.push(store);
  await store.open();
  log.written.length = 0;
  return { log, store };
}

async function appendOneByOne(store: LogStore, n: number): Promise<void> {
  for (let i = 0; i < n; i++) okResult(await store.append("s", { kind: "any" }, events(1, i)));
}

describe("the checkpoint", () => {
  it("is written once per interval, not once per group commit", async () => {
    const { log, store } = await open(60_000);
    await appendOneByOne(store, 20);
    // The first group commit writes it; the next 19 fall within the interval.
    expect(log.written).toHaveLength(1);
    expect(log.written[0]?.durable).toBeLessThan(store.durableEnd);
  });

  it("catches up by a timer once writes stop", async () => {
    const { log, store } = await open(50);
    const startedAt = performance.now();
    await appendOneByOne(store, 50);
    const writesWhileAppending = log.written.length;
    const elapsedMs = performance.now() - startedAt;
    expect(writesWhileAppending).toBeLessThanOrEqual(2 + Math.floor(elapsedMs / 50));
    await until(
      () => log.written.at(-1)?.durable === store.durableEnd,
      "the checkpoint at the durable end",
    );
    expect(log.written.at(-1)).toEqual({ durable: store.durableEnd, commit: store.durableEnd });
  });
});
