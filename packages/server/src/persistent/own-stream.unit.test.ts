import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LogStore } from "../storage/index.js";
import { MemoryLog } from "../storage/memory-log.js";
import { events, okResult } from "../storage/test-helpers.js";
import { streamEnd } from "./common.js";
import { GroupFencedError } from "./errors.js";
import { OwnStream } from "./own-stream.js";

describe("a group's own stream", () => {
  let store: LogStore;

  beforeEach(async () => {
    store = new LogStore(new MemoryLog(), { autoCommit: true });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
  });

  it("appends called together land one after the other, each told its revision in order", async () => {
    const own = new OwnStream("g-acks");
    const told: number[] = [];
    const results = await Promise.all(
      [0, 1, 2].map((i) => own.append(store, events(1, i), (r) => told.push(r))),
    );
    expect(results).toEqual([0, 1, 2]);
    expect(told).toEqual([0, 1, 2]);
    expect(own.last).toBe(2);
  });

  it("refuses to write past another writer's event, and the stream keeps only theirs", async () => {
    const own = new OwnStream("g-acks");
    own.loaded((await streamEnd(store, "g-acks")).last);
    okResult(await store.append("g-acks", { kind: "any" }, events(1, 100)));
    const err = await own.append(store, events(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GroupFencedError);
    expect(err).toMatchObject({ streamId: "g-acks", expected: -1, actual: 0 });
    const end = await streamEnd(store, "g-acks");
    expect(end.last).toBe(0);
    // Its view stays the stale one until it is loaded again; then it writes after theirs.
    await expect(own.append(store, events(1, 1))).rejects.toBeInstanceOf(GroupFencedError);
    own.loaded(end.last);
    await expect(own.append(store, events(1, 2))).resolves.toBe(1);
  });

  it("writes a soft-deleted stream again, where its revisions continue", async () => {
    okResult(await store.append("g-acks", { kind: "any" }, events(3, 100)));
    await store.delete("g-acks", { kind: "any" }, false);
    const own = new OwnStream("g-acks");
    own.loaded((await streamEnd(store, "g-acks")).last);
    expect(own.last).toBe(-1);
    await expect(own.append(store, events(1))).resolves.toBe(3);
  });
});
