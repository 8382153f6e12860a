// A persistent subscription group over large events: its buffer sizes count events (500 by
// default), and 500 events of 1 MiB would be 500 MiB held by one group. The group reads ahead
// at most about 32 MiB, whatever those counts say, and still hands every event out. A real
// node process on disk; the group's holdings as its /metrics show them.
import { ChorusClient, jsonEvent, type PersistentEvent } from "@chorus/client";
import { startNode, waitFor } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { closedAfterEach } from "../server/helpers.js";
import { nextEvent } from "../iterate.js";
import { metric } from "../server/unread-output.js";

const MIB = 1024 * 1024;
/** Events of ~1 MiB each: five times what the group may hold. */
const EVENTS = 160;

const started = closedAfterEach();

describe("a persistent subscription group over large events", () => {
  it("reads ahead at most about 32 MiB, and hands every event out", async () => {
    const n = (started.node = await startNode());
    const c = (started.client = new ChorusClient(`${n.connectionString}&operationTimeout=30000`));
    const pad = "p".repeat(MIB - 1_000);
    for (let i = 0; i < EVENTS; i++)
      await c.appendToStream("large", jsonEvent({ type: "Large", data: { i, pad } }));
    const ps = c.persistentSubscriptions;
    await ps.create("large", "g", { startFrom: "start" });
    const held = (what: "events" | "bytes") =>
      metric(n, `chorus_persistent_buffered_${what}{stream="large",group="g"}`);

    // A consumer that takes one event at a time and acknowledges nothing yet: the group reads
    // ahead of it as far as it may.
    const sub = ps.subscribe("large", "g", { bufferSize: 1 });
    const it = sub[Symbol.asyncIterator]();
    const first = await nextEvent(it, 30_000);
    await waitFor(async () => (await held("bytes")) >= 32 * MIB, {
      timeoutMs: 30_000,
      message: "the group reads ahead to its bound",
    });
    // Reading on from there would take it past 40 MiB within milliseconds (the rest is in
    // the page cache); it must not, within 2 s.
    const passed = await waitFor(async () => (await held("bytes")) > 40 * MIB, {
      timeoutMs: 2_000,
    }).then(
      () => true,
      () => false,
    );
    expect(passed).toBe(false);
    expect(await held("events")).toBeLessThanOrEqual(40);

    // Acknowledged one by one, every event comes, each once, in order; the group reads on
    // as it drains.
    const seen: number[] = [];
    let e: PersistentEvent = first;
    for (;;) {
      seen.push((e.event.data as { i: number }).i);
      await sub.ack(e);
      if (seen.length === EVENTS) break;
      e = await nextEvent(it, 30_000);
    }
    expect(seen).toEqual(Array.from({ length: EVENTS }, (_, i) => i));
    await sub.unsubscribe();
  }, 180_000);
});
