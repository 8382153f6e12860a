// Catch-up subscriptions that resume on a follower that has not reached their position yet:
// the follower waits until it has, then goes on with no gap and no repeat (instead of
// dropping the subscription with INVALID_ARGUMENT). Three real nodes with fault proxies on
// their links; the subscriptions talk to the lagging follower directly.
import { randomUUID } from "node:crypto";
import { ChorusClient, jsonEvent } from "@chorus/client";
import { chorus } from "@chorus/protocol";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawClient } from "../server/helpers.js";

const Start = chorus.SubscribeRequest.StartKind;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ size: 3, memDb: true, linkProxies: true });
});

afterAll(async () => {
  await cluster?.stop();
});

function eventsOf(c: RawClient, id: number): chorus.IRecordedEvent[] {
  return c
    .framesFor(id)
    .flatMap((f) => (f.subscriptionEvents?.events ?? []).map((e) => e.event ?? {}));
}

describe("resuming on a lagging follower", () => {
  it("waits for the follower to reach the resume point of a $all and a stream subscription, then continues", async () => {
    const leader = await cluster.leader();
    const follower = [0, 1, 2].find((i) => i !== leader) as number;
    const other = [0, 1, 2].find((i) => i !== leader && i !== follower) as number;
    const writer = new ChorusClient(cluster.nodes[leader]!.connectionString);
    const stream = `resume-${randomUUID()}`;
    let raw: RawClient | undefined;
    try {
      await writer.appendToStream(stream, jsonEvent({ type: "Before", data: { n: 0 } }));
      // The follower falls behind: it hears nothing of the next appends.
      cluster.partition([follower], [leader, other]);
      const written = await writer.appendToStream(
        stream,
        Array.from({ length: 5 }, (_, i) => jsonEvent({ type: "During", data: { n: i + 1 } })),
      );
      // What a client has seen on the leader: up to the last event's position and revision.
      const seenPosition = Number(written.position);
      const seenRevision = Number(written.nextExpectedVersion);

      const f = cluster.nodes[follower]!;
      raw = await RawClient.connect(`ws://${f.extTcp.host}:${f.extTcp.port}/`);
      const all = await raw.request({
        subscribe: {
          all: true,
          start: Start.AFTER,
          afterPosition: seenPosition,
          credit: 1_000,
          filter: { streamNamePrefix: [stream] },
        },
      });
      expect(all.subscriptionConfirmed).toBeTruthy();
      const allId = Number(all.correlationId);
      const one = await raw.request({
        subscribe: {
          streamId: stream,
          start: Start.AFTER,
          afterRevision: seenRevision,
          credit: 1_000,
        },
      });
      expect(one.subscriptionConfirmed).toBeTruthy();
      const oneId = Number(one.correlationId);
      await raw.request({ ping: {} });
      // Neither is dropped, and the stream subscription does not claim to be caught up with a
      // point this follower has not reached.
      for (const id of [allId, oneId]) {
        expect(raw.framesFor(id).map((fr) => fr.body)).not.toContain("subscriptionDropped");
      }
      expect(raw.framesFor(oneId).map((fr) => fr.body)).not.toContain("subscriptionCaughtUp");

      // A new event, then the follower catches up: both get exactly the new one.
      await writer.appendToStream(stream, jsonEvent({ type: "After", data: { n: 6 } }));
      cluster.heal();
      await waitFor(() => eventsOf(raw!, allId).length >= 1 && eventsOf(raw!, oneId).length >= 1, {
        timeoutMs: 15_000,
      });
      await waitFor(() => raw!.framesFor(oneId).some((fr) => fr.body === "subscriptionCaughtUp"), {
        timeoutMs: 5_000,
      });
      await raw.request({ ping: {} });
      expect(eventsOf(raw, allId).map((e) => e.type)).toEqual(["After"]);
      expect(eventsOf(raw, oneId).map((e) => [e.type, Number(e.revision)])).toEqual([
        ["After", seenRevision + 1],
      ]);
      for (const id of [allId, oneId]) {
        expect(raw.framesFor(id).map((fr) => fr.body)).not.toContain("subscriptionDropped");
      }
    } finally {
      cluster.heal();
      await raw?.close();
      await writer.close();
    }
  });

  it("still refuses a $all position beyond the end of the leader's log", async () => {
    const leader = await cluster.leader();
    const l = cluster.nodes[leader]!;
    const raw = await RawClient.connect(`ws://${l.extTcp.host}:${l.extTcp.port}/`);
    try {
      const reply = await raw.request({
        subscribe: { all: true, start: Start.AFTER, afterPosition: 1e12, credit: 10 },
      });
      const id = Number(reply.correlationId);
      await waitFor(() => raw.framesFor(id).some((fr) => fr.subscriptionDropped), {
        timeoutMs: 5_000,
      });
      const dropped = raw.framesFor(id).find((fr) => fr.subscriptionDropped)?.subscriptionDropped;
      expect(dropped?.reason?.code).toBe(chorus.ErrorResponse.Code.INVALID_ARGUMENT);
      expect(dropped?.reason?.message).toMatch(
        /position 1000000000000 is beyond the end of this log/,
      );
    } finally {
      await raw.close();
    }
  });
});
