import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryStore, type LogStore } from "../storage/index.js";
import { events, okResult } from "../storage/test-helpers.js";
import { StoreLogView, applyEffects, epochRecord } from "./consensus-log.js";
import { ORIGIN, type LogRecord } from "./core/types.js";

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

describe("StoreLogView", () => {
  let store: LogStore;
  afterEach(async () => {
    await store.close();
  });

  /** [data][E1][data data][E3][data]: returns the batch ends. */
  async function build(): Promise<number[]> {
    store = createMemoryStore();
    await store.open();
    const ends: number[] = [];
    okResult(await store.append("a", { kind: "any" }, events(2)));
    ends.push(store.endPosition);
    await store.appendEpoch({ epochNumber: 1, epochId: randomUUID(), leaderInstanceId: "n1" });
    ends.push(store.endPosition);
    okResult(await store.append("a", { kind: "any" }, events(1)));
    ends.push(store.endPosition);
    okResult(await store.append("b", { kind: "any" }, events(3)));
    ends.push(store.endPosition);
    await store.appendEpoch({ epochNumber: 3, epochId: randomUUID(), leaderInstanceId: "n2" });
    ends.push(store.endPosition);
    okResult(await store.append("a", { kind: "any" }, events(1)));
    ends.push(store.endPosition);
    return ends;
  }

  it("answers the core's questions on a store with a few epochs", async () => {
    const [d0, e1, d1, d2, e3, d3] = (await build()) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const view = new StoreLogView(store);
    expect(view.lastPoint()).toEqual({ epoch: 3, position: d3 });
    expect(view.durableEnd()).toBe(d3);
    expect(view.epochAt(0)).toBe(0);
    expect(view.epochAt(d0)).toBe(0);
    expect(view.epochAt(e1)).toBe(1);
    expect(view.epochAt(d2)).toBe(1);
    expect(view.epochAt(e3)).toBe(3);
    expect(view.epochAt(d0 + 1)).toBeUndefined();
    expect(view.lastPointAtOrBefore(0, d3)).toEqual({ epoch: 0, position: d0 });
    expect(view.lastPointAtOrBefore(1, d3)).toEqual({ epoch: 1, position: d2 });
    expect(view.lastPointAtOrBefore(2, d3)).toEqual({ epoch: 1, position: d2 });
    expect(view.lastPointAtOrBefore(3, d2 + 5)).toEqual({ epoch: 1, position: d2 });
    expect(view.lastPointAtOrBefore(9, d3 + 100)).toEqual({ epoch: 3, position: d3 });
    expect(view.lastPointAtOrBefore(0, d0 - 1)).toEqual(ORIGIN);
    const recs = view.read(d0, 1);
    expect(recs.map((r) => [r.kind, r.epoch, r.position, r.length])).toEqual([
      ["epoch", 1, d0, e1 - d0],
    ]);
    const all = view.read(0, 1 << 20);
    expect(all.map((r) => [r.kind, r.epoch, r.position + r.length])).toEqual([
      ["data", 0, d0],
      ["epoch", 1, e1],
      ["data", 1, d1],
      ["data", 1, d2],
      ["epoch", 3, e3],
      ["data", 3, d3],
    ]);
    expect(view.read(d0 + 1, 100)).toEqual([]);
  });

  it("applies append, commit, truncate and persist effects to a follower", async () => {
    await build();
    const leaderView = new StoreLogView(store);
    const records: readonly LogRecord<Buffer>[] = leaderView.read(0, 1 << 20);
    const follower = createMemoryStore({ autoCommit: false });
    await follower.open();
    try {
      const view = new StoreLogView(follower);
      const sent: string[] = [];
      await applyEffects(
        follower,
        [
          { type: "persist", state: { epoch: 3, votedFor: "n2" } },
          { type: "append", records },
          { type: "send", to: "n2", message: { type: "TimeoutNow", epoch: 3 } },
        ],
        { other: (e) => void sent.push(e.type) },
      );
      expect(sent).toEqual(["send"]);
      expect(view.lastPoint()).toEqual(leaderView.lastPoint());
      expect(await follower.readHardState()).toEqual({ epoch: 3, votedFor: "n2" });
      while (follower.durableEnd < follower.endPosition) await settle();
      const d2 = records[3] as LogRecord<Buffer>;
      await applyEffects(follower, [{ type: "commit", position: d2.position + d2.length }]);
      expect(follower.commitPosition).toBe(d2.position + d2.length);
      await applyEffects(follower, [{ type: "truncate", position: d2.position + d2.length }]);
      expect(view.lastPoint()).toEqual({ epoch: 1, position: d2.position + d2.length });
      // A new leader's EPOCH record, then data.
      const ep = epochRecord(4, "n3");
      const at = follower.endPosition;
      await applyEffects(follower, [
        {
          type: "append",
          records: [
            { epoch: 4, position: at, length: ep.length, kind: "epoch", payload: ep.payload },
          ],
        },
      ]);
      expect(view.lastPoint()).toEqual({ epoch: 4, position: at + ep.length });
      expect(follower.epochs().map((e) => e.epochNumber)).toEqual([1, 4]);
      await expect(
        applyEffects(follower, [
          {
            type: "append",
            records: [
              {
                epoch: 5,
                position: follower.endPosition,
                length: ep.length,
                kind: "epoch",
                payload: ep.payload,
              },
            ],
          },
        ]),
      ).rejects.toThrow(/claims epoch 5/);
    } finally {
      await follower.close();
    }
  });
});
