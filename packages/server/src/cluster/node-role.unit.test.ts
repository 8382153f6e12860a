import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryStore, type LogStore } from "../storage/index.js";
import { events, okResult } from "../storage/test-helpers.js";
import { StoreLogView, applyEffects } from "./consensus-log.js";
import { splitRecords } from "./node-role.js";
import { messageFromWire, messageToWire } from "./transport/messages.js";

describe("splitRecords", () => {
  let store: LogStore;
  let copy: LogStore;
  afterEach(async () => {
    await store.close();
    await copy.close();
  });

  it("splits raw bytes into one record per batch, with the epochs the log gives them", async () => {
    store = createMemoryStore();
    await store.open();
    okResult(await store.append("a", { kind: "any" }, events(2)));
    await store.appendEpoch({ epochNumber: 2, epochId: randomUUID(), leaderInstanceId: "n1" });
    okResult(await store.append("a", { kind: "any" }, events(1)));
    okResult(await store.append("b", { kind: "any" }, events(3)));

    const expected = new StoreLogView(store).read(0, 1 << 20);
    const { bytes } = store.readRaw(0, 1 << 20);
    const split = splitRecords(bytes, 0, 0);
    expect(split.map((r) => [r.position, r.length, r.epoch, r.kind])).toEqual(
      expected.map((r) => [r.position, r.length, r.epoch, r.kind]),
    );
    expect(split.map((r) => r.kind)).toEqual(["data", "epoch", "data", "data"]);

    // From the middle of the log, after a record of epoch 2.
    const second = expected[2];
    if (!second) throw new Error("missing record");
    const tail = splitRecords(store.readRaw(second.position, 1 << 20).bytes, second.position, 2);
    expect(tail.map((r) => [r.position, r.epoch])).toEqual(
      expected.slice(2).map((r) => [r.position, r.epoch]),
    );

    // Through the wire and into another store: the same log.
    const message = messageFromWire(
      {
        from: "x",
        ...messageToWire({
          type: "Append",
          epoch: 2,
          prev: { epoch: 0, position: 0 },
          records: expected,
          leaderCommit: 0,
        }),
      },
      splitRecords,
    );
    if (message?.type !== "Append") throw new Error("not an Append");
    copy = createMemoryStore({ autoCommit: false });
    await copy.open();
    await applyEffects(copy, [{ type: "append", records: message.records }]);
    expect(copy.endPosition).toBe(store.endPosition);
    expect(copy.lastEpoch).toBe(2);
  });

  it("refuses bytes that end inside a batch or are damaged", async () => {
    store = createMemoryStore();
    await store.open();
    copy = createMemoryStore();
    await copy.open();
    okResult(await store.append("a", { kind: "any" }, events(3)));
    const { bytes } = store.readRaw(0, 1 << 20);
    expect(() => splitRecords(bytes.subarray(0, bytes.length - 1), 0, 0)).toThrow(/damaged/);
    const broken = Buffer.from(bytes);
    broken[20] = (broken[20] ?? 0) ^ 0xff;
    expect(() => splitRecords(broken, 0, 0)).toThrow(/damaged/);
  });
});
