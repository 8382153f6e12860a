/**
 * Two servers' persistent subscription services on one store, both serving at once: the
 * shared-database mode's handover, where the server that lost the lock has not noticed yet.
 * Neither may overlook a group the other created, changed or deleted.
 */
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LogStore } from "../storage/index.js";
import { MemoryLog } from "../storage/memory-log.js";
import { events, okResult } from "../storage/test-helpers.js";
import type { StoredEvent } from "../streams/types.js";
import type { DropCode } from "./common.js";
import { PersistentError } from "./errors.js";
import { CONFIG_STREAM, PersistentService } from "./service.js";

const logger = pino({ level: "silent" });

describe("persistent subscription services of two servers on one store", () => {
  let store: LogStore;
  let a: PersistentService;
  let b: PersistentService;

  beforeEach(async () => {
    store = new LogStore(new MemoryLog(), { autoCommit: true });
    await store.open();
    const deps = { store: () => store, cluster: () => undefined, logger };
    a = new PersistentService(deps);
    b = new PersistentService(deps);
  });

  afterEach(async () => {
    a.close();
    b.close();
    await store.close();
  });

  async function configTypes(): Promise<string[]> {
    const r = await store.readStream(CONFIG_STREAM, {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 100,
    });
    return r.events.map((e) => e.type);
  }

  function consumerSink(): {
    sink: Parameters<PersistentService["subscribe"]>[1];
    got: StoredEvent[];
    acked: number[];
    drops: DropCode[];
  } {
    const got: StoredEvent[] = [];
    const acked: number[] = [];
    const drops: DropCode[] = [];
    return {
      got,
      acked,
      drops,
      sink: {
        deliver: (evs) => got.push(...evs),
        acked: (positions) => acked.push(...positions),
        dropped: (code) => drops.push(code),
      },
    };
  }

  it("serves a consumer of a group the other server created after this one loaded its groups", async () => {
    expect(await b.list(undefined)).toEqual([]); // b loads: no groups yet
    okResult(await store.append("orders", { kind: "any" }, events(3)));
    await a.create({ streamId: "orders", group: "g" }, null); // from the start

    const info = await b.getInfo({ streamId: "orders", group: "g" });
    expect(info.group).toBe("g");
    const c = consumerSink();
    const handle = await b.subscribe({ streamId: "orders", group: "g" }, c.sink, {
      bufferSize: 10,
      name: "c1",
      connection: "test",
    });
    await expect.poll(() => c.got.length, { timeout: 5_000 }).toBe(3);
    expect(c.got.map((e) => e.revision)).toEqual([0, 1, 2]);
    handle.close();
  });

  it("answers GROUP_EXISTS for a group the other server created meanwhile, and appends nothing", async () => {
    expect(await b.list(undefined)).toEqual([]);
    await a.create({ streamId: "orders", group: "g" }, null);
    const err = await b.create({ streamId: "orders", group: "g" }, null).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PersistentError);
    expect((err as PersistentError).code).toBe("GROUP_EXISTS");
    expect(await configTypes()).toEqual(["GroupCreated"]);
  });

  it("sees a delete and an update by the other server before deciding its own change", async () => {
    await a.create({ streamId: "orders", group: "g" }, null);
    await a.create({ streamId: "orders", group: "h" }, null);
    expect((await b.list(undefined)).map((g) => g.group)).toEqual(["g", "h"]);

    await a.delete({ streamId: "orders", group: "g" });
    await a.update({ streamId: "orders", group: "h" }, { maxRetryCount: 3 });

    // b still believes g exists: its update must not resurrect it.
    const err = await b
      .update({ streamId: "orders", group: "g" }, { maxRetryCount: 7 })
      .catch((e: unknown) => e);
    expect((err as PersistentError).code).toBe("GROUP_NOT_FOUND");
    // b learnt a's update of h along the way.
    expect((await b.getInfo({ streamId: "orders", group: "h" })).settings.maxRetryCount).toBe(3);
    expect(await configTypes()).toEqual([
      "GroupCreated",
      "GroupCreated",
      "GroupDeleted",
      "GroupUpdated",
    ]);
    // A change b makes now lands on top of a's; a's next change, made on its older view, is
    // decided again on b's (a reads the config again when its append meets b's record).
    await b.update({ streamId: "orders", group: "h" }, { maxRetryCount: 9 });
    await a.update({ streamId: "orders", group: "h" }, { maxRetryCount: 5 });
    expect((await b.getInfo({ streamId: "orders", group: "h" })).settings.maxRetryCount).toBe(9);
    expect((await a.getInfo({ streamId: "orders", group: "h" })).settings.maxRetryCount).toBe(5);
    expect((await configTypes()).slice(3)).toEqual([
      "GroupUpdated",
      "GroupUpdated",
      "GroupUpdated",
    ]);
  });

  it("a group both run: the server with the older view is refused, and its consumer, subscribing again, gets only what nobody acknowledged", async () => {
    const key = { streamId: "orders", group: "g" };
    okResult(await store.append("orders", { kind: "any" }, events(10)));
    await a.create(key, null);
    const options = (name: string) => ({ bufferSize: 20, name, connection: "test" });
    const ca = consumerSink();
    const ha = await a.subscribe(key, ca.sink, options("ca"));
    const cb = consumerSink();
    const hb = await b.subscribe(key, cb.sink, options("cb")); // b loads the group too
    await expect.poll(() => ca.got.length, { timeout: 5_000 }).toBe(10);
    await expect.poll(() => cb.got.length, { timeout: 5_000 }).toBe(10);
    const positions = ca.got.map((e) => e.position);
    const [firstHalf, secondHalf] = [positions.slice(0, 5), positions.slice(5)];

    // a's consumer acknowledges the first half: a's acks record is written and confirmed.
    ha.ack(firstHalf);
    await expect.poll(() => ca.acked, { timeout: 5_000 }).toEqual(firstHalf);
    // b's consumer acknowledges the second half on b's view, which has not seen a's record:
    // b's write is refused, b's consumer is told to subscribe again, and nothing is confirmed.
    hb.ack(secondHalf);
    await expect.poll(() => cb.drops, { timeout: 5_000 }).toEqual(["UNKNOWN"]);
    expect(cb.acked).toEqual([]);
    const acks = await store.readStream("$persistent-orders::g-acks", {
      direction: "forwards",
      fromRevision: 0,
      maxCount: 10,
    });
    expect(acks.events.map((e) => JSON.parse(Buffer.from(e.data).toString()) as unknown)).toEqual([
      { positions: firstHalf },
    ]);

    // Subscribing again on b: the group was loaded again from what is stored.
    const again = consumerSink();
    const hb2 = await b.subscribe(key, again.sink, options("cb"));
    await expect.poll(() => again.got.length, { timeout: 5_000 }).toBe(5);
    expect(again.got.map((e) => e.position)).toEqual(secondHalf);
    hb2.ack(secondHalf);
    await expect.poll(() => again.acked, { timeout: 5_000 }).toEqual(secondHalf);
    ha.close();
    hb2.close();
  });

  it("answers GROUP_NOT_FOUND for a group nobody created", async () => {
    const err = await b.getInfo({ streamId: "orders", group: "nope" }).catch((e: unknown) => e);
    expect((err as PersistentError).code).toBe("GROUP_NOT_FOUND");
  });
});
