// Catch-up, $all and per-connection subscription limits over the native protocol, against an
// in-process node on each backend.
import { chorus, type Frame } from "@chorus/protocol";
import type { ChorusNode } from "@chorus/server";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS, backendNodeOptions, closeBackends } from "../backends.js";
import { Code, RawClient, append, jsonEvent, nativeUrl, startNode, waitFor } from "./helpers.js";

const Start = chorus.SubscribeRequest.StartKind;
let node: ChorusNode;
let c: RawClient;

afterAll(closeBackends);

function subscribe(req: chorus.ISubscribeRequest): number {
  const id = c.nextId();
  c.send({ correlationId: id, subscribe: req });
  return id;
}

function delivered(id: number): chorus.IRecordedEvent[] {
  return c
    .framesFor(id)
    .flatMap((f) =>
      (f.subscriptionEvents?.events ?? []).map((e) => e.event as chorus.IRecordedEvent),
    );
}

function kinds(id: number): string[] {
  return c.framesFor(id).map((f) => String(f.body));
}

async function appendN(stream: string, n: number, type = "E"): Promise<Frame> {
  const f = await append(
    c,
    stream,
    Array.from({ length: n }, (_, i) => jsonEvent(type, { i })),
  );
  expect(f.appendResult?.success).toBeTruthy();
  return f;
}

/** A round trip through the server: everything it was going to send before now has arrived. */
async function roundTrip(stream: string): Promise<void> {
  await c.request({ ping: {} });
  await c.request({ readStream: { streamId: stream, maxCount: 4096 } });
  await c.request({ ping: {} });
}

describe.each(BACKENDS)("%s", (backend) => {
  beforeAll(async () => {
    node = await startNode(await backendNodeOptions(backend));
    c = await RawClient.connect(nativeUrl(node));
  });
  afterAll(async () => {
    await c?.close();
    await node?.close();
  });

  describe("catch-up and live subscriptions", () => {
    it("delivers history, reports caught-up once, then follows live appends without gaps or repeats", async () => {
      const stream = `sub-${randomUUID()}`;
      await appendN(stream, 5);
      const id = subscribe({ streamId: stream, start: Start.START, credit: 1000 });
      await waitFor(() => kinds(id).includes("subscriptionCaughtUp"), 5_000, "caught up");
      expect(kinds(id)[0]).toBe("subscriptionConfirmed");
      expect(delivered(id).map((e) => Number(e.revision))).toEqual([0, 1, 2, 3, 4]);
      await appendN(stream, 3);
      await appendN(stream, 2);
      await waitFor(() => delivered(id).length === 10, 5_000, "live events");
      expect(delivered(id).map((e) => Number(e.revision))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(kinds(id).filter((k) => k === "subscriptionCaughtUp")).toHaveLength(1);
      c.send({ correlationId: id, unsubscribe: {} });
      await appendN(stream, 1);
      await roundTrip(stream);
      expect(delivered(id)).toHaveLength(10);
    });

    it("starts AFTER a revision (exclusive) and at END", async () => {
      const stream = `after-${randomUUID()}`;
      await appendN(stream, 4);
      const after = subscribe({
        streamId: stream,
        start: Start.AFTER,
        afterRevision: 1,
        credit: 100,
      });
      const end = subscribe({ streamId: stream, start: Start.END, credit: 100 });
      await waitFor(
        () =>
          kinds(after).includes("subscriptionCaughtUp") &&
          kinds(end).includes("subscriptionCaughtUp"),
        5_000,
        "caught up",
      );
      await appendN(stream, 1);
      await waitFor(
        () => delivered(after).length === 3 && delivered(end).length === 1,
        5_000,
        "deliveries",
      );
      expect(delivered(after).map((e) => Number(e.revision))).toEqual([2, 3, 4]);
      expect(delivered(end).map((e) => Number(e.revision))).toEqual([4]);
    });

    it("subscribes to a stream that does not exist yet", async () => {
      const stream = `later-${randomUUID()}`;
      const id = subscribe({ streamId: stream, start: Start.START, credit: 100 });
      await waitFor(() => kinds(id).includes("subscriptionCaughtUp"), 5_000, "caught up");
      await appendN(stream, 2);
      await waitFor(() => delivered(id).length === 2, 5_000, "events");
      expect(delivered(id).map((e) => Number(e.revision))).toEqual([0, 1]);
    });

    it("never sends more events than the credit granted", async () => {
      const stream = `credit-${randomUUID()}`;
      await appendN(stream, 10);
      const id = subscribe({ streamId: stream, start: Start.START, credit: 2 });
      await waitFor(() => delivered(id).length === 2, 5_000, "two events");
      await roundTrip(stream);
      expect(delivered(id)).toHaveLength(2);
      c.send({ correlationId: id, subscriptionCredit: { credit: 5 } });
      await waitFor(() => delivered(id).length === 7, 5_000, "seven events");
      await roundTrip(stream);
      expect(delivered(id)).toHaveLength(7);
      expect(kinds(id)).not.toContain("subscriptionCaughtUp");
      c.send({ correlationId: id, subscriptionCredit: { credit: 100 } });
      await waitFor(() => kinds(id).includes("subscriptionCaughtUp"), 5_000, "caught up");
      expect(delivered(id).map((e) => Number(e.revision))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });

    it("drops a subscription with STREAM_DELETED when its stream is hard-deleted", async () => {
      const stream = `doomed-${randomUUID()}`;
      await appendN(stream, 1);
      const id = subscribe({ streamId: stream, start: Start.START, credit: 100 });
      await waitFor(() => kinds(id).includes("subscriptionCaughtUp"), 5_000, "caught up");
      const del = await c.request({ deleteStream: { streamId: stream, hard: true } });
      expect(del.deleteResult?.success).toBeTruthy();
      await waitFor(() => kinds(id).includes("subscriptionDropped"), 5_000, "dropped");
      const dropped = c.framesFor(id).find((f) => f.body === "subscriptionDropped");
      expect(dropped?.subscriptionDropped?.reason?.code).toBe(Code.STREAM_DELETED);
      expect(dropped?.subscriptionDropped?.reason?.streamId).toBe(stream);
    });

    it("rejects invalid subscriptions clearly", async () => {
      const bad = await c.request({ subscribe: { streamId: "", start: Start.START, credit: 1 } });
      expect(bad.error?.code).toBe(Code.INVALID_ARGUMENT);
      const kind = await c.request({
        subscribe: { streamId: "x", start: 9 as chorus.SubscribeRequest.StartKind, credit: 1 },
      });
      expect(kind.error?.message).toMatch(/unknown subscription start kind 9/);
    });
  });

  describe("$all subscriptions", () => {
    it("filters by stream prefix and event type, reports checkpoints, and resumes AFTER a position", async () => {
      const prefix = `flt${randomUUID().slice(0, 8)}-`;
      const id = subscribe({
        all: true,
        start: Start.START,
        credit: 1000,
        filter: { streamNamePrefix: [prefix] },
      });
      const typed = subscribe({
        all: true,
        start: Start.START,
        credit: 1000,
        filter: { eventTypePrefix: ["Wanted"] },
      });
      await appendN(`${prefix}a`, 2, "Wanted");
      await appendN(`other-${randomUUID()}`, 3, "Noise");
      await appendN(`${prefix}b`, 1, "Other");
      await waitFor(() => delivered(id).length === 3, 5_000, "filtered events");
      expect(delivered(id).map((e) => e.streamId)).toEqual([
        `${prefix}a`,
        `${prefix}a`,
        `${prefix}b`,
      ]);
      await waitFor(
        () => delivered(typed).some((e) => e.streamId === `${prefix}a`),
        5_000,
        "typed events",
      );
      expect(delivered(typed).every((e) => e.type?.startsWith("Wanted"))).toBe(true);

      const checkpoints = c
        .framesFor(id)
        .map((f) => Number(f.subscriptionEvents?.checkpointPosition ?? 0))
        .filter((p) => p > 0);
      expect(checkpoints.length).toBeGreaterThan(0);
      const positions = delivered(id).map((e) => Number(e.position));
      expect([...positions].sort((a, b) => a - b)).toEqual(positions);

      // Resume AFTER the first delivered position: the next two, nothing repeated.
      const resumed = subscribe({
        all: true,
        start: Start.AFTER,
        afterPosition: positions[0],
        credit: 1000,
        filter: { streamNamePrefix: [prefix] },
      });
      await waitFor(
        () => kinds(resumed).includes("subscriptionCaughtUp"),
        5_000,
        `resumed caught up ${JSON.stringify(c.framesFor(resumed))}`,
      );
      expect(delivered(resumed).map((e) => Number(e.position))).toEqual(positions.slice(1));
    });

    it("sends a checkpoint even when no event matches", async () => {
      const id = subscribe({
        all: true,
        start: Start.END,
        credit: 1000,
        filter: { streamNamePrefix: [`nothing-${randomUUID()}`] },
      });
      await waitFor(() => kinds(id).includes("subscriptionCaughtUp"), 5_000, "caught up");
      const before = c.framesFor(id).length;
      const f = await appendN(`noise-${randomUUID()}`, 1);
      await waitFor(() => c.framesFor(id).length > before, 5_000, "a checkpoint");
      const last = c.framesFor(id).at(-1);
      expect(last?.subscriptionEvents?.events ?? []).toHaveLength(0);
      const checkpoint = Number(last?.subscriptionEvents?.checkpointPosition);
      expect(checkpoint).toBeGreaterThanOrEqual(Number(f.appendResult?.success?.position));

      // Resuming AFTER the checkpoint delivers exactly what came after it.
      const prefix = `cp-${randomUUID()}`;
      await appendN(`${prefix}-x`, 2, "Late");
      const resumed = subscribe({
        all: true,
        start: Start.AFTER,
        afterPosition: checkpoint,
        credit: 1000,
        filter: { streamNamePrefix: [prefix] },
      });
      await waitFor(
        () => kinds(resumed).includes("subscriptionCaughtUp"),
        5_000,
        "resumed caught up",
      );
      expect(delivered(resumed).map((e) => Number(e.revision))).toEqual([0, 1]);

      // A position that is neither an event's nor a checkpoint drops the subscription clearly.
      const bogus = subscribe({
        all: true,
        start: Start.AFTER,
        afterPosition: 10 ** 12,
        credit: 10,
      });
      await waitFor(() => kinds(bogus).includes("subscriptionDropped"), 5_000, "dropped");
      expect(
        c.framesFor(bogus).find((x) => x.subscriptionDropped)?.subscriptionDropped?.reason?.code,
      ).toBe(Code.INVALID_ARGUMENT);
    });
  });

  describe("subscriptions per connection", () => {
    /** The server's default maxSubscriptionsPerConnection. */
    const MAX = 1024;

    it("counts persistent consumers with catch-up subscriptions, refuses beyond the limit, and releases a consumer's place when it ends", async () => {
      const raw = await RawClient.connect(nativeUrl(node));
      try {
        const stream = `limit-${randomUUID()}`;
        const created = await raw.request({
          persistentCreate: { streamId: stream, group: "g", settings: {} },
        });
        expect(created.persistentDone).toBeTruthy();
        const join = (): Promise<Frame> =>
          raw.request({ persistentSubscribe: { streamId: stream, group: "g", bufferSize: 10 } });

        // Two persistent consumers, then catch-up subscriptions up to the limit.
        const consumers = [await join(), await join()];
        for (const f of consumers) expect(f.persistentConfirmed).toBeTruthy();
        let lastCatchUp = 0;
        for (let i = 0; i < MAX - 2; i++) {
          lastCatchUp = raw.nextId();
          raw.send({
            correlationId: lastCatchUp,
            subscribe: { streamId: `${stream}-x`, start: Start.END, credit: 10 },
          });
        }
        await waitFor(
          () => raw.framesFor(lastCatchUp).some((f) => f.subscriptionConfirmed),
          10_000,
          "the last catch-up subscription",
        );

        // Full: a further persistent consumer and a further catch-up subscription are refused alike.
        const refusedPersistent = await join();
        expect(refusedPersistent.notHandled?.reason).toBe(chorus.NotHandled.Reason.TOO_BUSY);
        expect(refusedPersistent.notHandled?.message).toMatch(
          /at most 1024 subscriptions \(catch-up and persistent together\) per connection/,
        );
        const refusedCatchUp = await raw.request({
          subscribe: { streamId: stream, start: Start.END, credit: 10 },
        });
        expect(refusedCatchUp.notHandled?.reason).toBe(chorus.NotHandled.Reason.TOO_BUSY);
        const info = await raw.request({ persistentGetInfo: { streamId: stream, group: "g" } });
        expect(info.persistentInfoResult?.info?.consumers).toHaveLength(2);

        // A persistent consumer that leaves gives its place back (frames are handled in order).
        raw.send({ correlationId: Number(consumers[0]?.correlationId), unsubscribe: {} });
        const again = await join();
        expect(again.persistentConfirmed).toBeTruthy();
        expect((await join()).notHandled?.reason).toBe(chorus.NotHandled.Reason.TOO_BUSY);
      } finally {
        await raw.close();
      }
    });
  });
});
