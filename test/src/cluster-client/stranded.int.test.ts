// A subscriber whose node is cut off from the rest of the cluster while the client can still
// reach it: three voters and a read-only replica on 127.0.0.1 to .4, with a fault proxy on
// every node-to-node link (the clients reach the nodes directly). The cut-off node stops
// serving (a leader steps down, a replica loses its leader), and a subscription on it must move
// to a node that serves, hand the application every event the majority commits meanwhile, and
// none twice.
import { randomUUID } from "node:crypto";
import { ChorusClient, jsonEvent, type NodePreference } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { threeVotersAndReplicaServing } from "./helpers.js";

let cluster: TestCluster;
const clients: ChorusClient[] = [];

beforeAll(async () => {
  cluster = await startCluster({ size: 3, readOnlyReplicas: 1, memDb: true, linkProxies: true });
  await servingAll();
});

afterEach(async () => {
  cluster.heal();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await servingAll();
});

afterAll(async () => {
  await cluster?.stop();
});

function servingAll(): Promise<void> {
  return threeVotersAndReplicaServing(cluster, 30_000);
}

/**
 * Five appends by `writer` while `cut` is cut off; waits until the reader has seen them after
 * `seen`'s first event, and checks that it saw exactly those, in order, once each.
 */
async function writtenWhileCut(
  writer: ChorusClient,
  stream: string,
  seen: readonly string[],
  cut: number,
): Promise<void> {
  const written = [seen[0]!];
  for (let i = 0; i < 5; i++) {
    const event = jsonEvent({ type: "During", data: { i } });
    await writer.appendToStream(stream, [event], { timeoutMs: 20_000 });
    written.push(event.id);
  }
  await waitFor(() => seen.length >= written.length, {
    timeoutMs: 20_000,
    message: `the reader that was on node ${cut} gets what the majority committed`,
  });
  expect(seen).toEqual(written);
}

function client(preference: NodePreference): ChorusClient {
  const c = new ChorusClient(
    `${cluster.connectionString}&nodePreference=${preference}&reconnectionDelay=20&discoverDelay=50`,
  );
  clients.push(c);
  return c;
}

function indexOfPort(port: number | undefined): number {
  return cluster.nodes.findIndex((n) => n.extTcp.port === port);
}

describe.each(["leader", "follower", "readOnlyReplica"] as const)(
  "a subscription (preference %s) on a node cut off from the others",
  (preference: NodePreference) => {
    it("moves to a node that serves and misses nothing the majority commits, with no event twice", async () => {
      const stream = `stranded-${preference}-${randomUUID()}`;
      const writer = client("leader");
      const subscriber = client(preference);
      await writer.appendToStream(stream, [jsonEvent({ type: "Before", data: {} })]);
      const sub = subscriber.subscribeToStream(stream);
      const seen: string[] = [];
      const reading = (async () => {
        for await (const e of sub) seen.push(e.event.id);
      })();
      await waitFor(() => seen.length === 1, { timeoutMs: 10_000, message: "the first event" });
      const served = indexOfPort(
        (preference === "leader" ? subscriber.node : subscriber.readNode)?.externalTcp?.port,
      );
      expect(served).toBeGreaterThanOrEqual(0);
      if (preference === "readOnlyReplica") expect(served).toBe(3);

      // Cut the subscriber's node off from every other node; the client still reaches it.
      cluster.partition(
        [served],
        [0, 1, 2, 3].filter((i) => i !== served),
      );
      await waitFor(
        async () =>
          !["Leader", "Follower", "ReadOnlyReplica"].includes(
            (await cluster.stateOf(served)) ?? "",
          ),
        { timeoutMs: 15_000, message: `node ${served} stops serving` },
      );
      await writtenWhileCut(writer, stream, seen, served);
      const now = preference === "leader" ? subscriber.node : subscriber.readNode;
      expect(indexOfPort(now?.externalTcp?.port)).not.toBe(served);
      await sub.unsubscribe();
      await reading;
    });
  },
);

describe("a persistent consumer on a leader cut off from the others", () => {
  it("is served by the new leader: every event the majority commits, none twice", async () => {
    const stream = `stranded-group-${randomUUID()}`;
    const writer = client("leader");
    const consumer = client("leader");
    await writer.appendToStream(stream, [jsonEvent({ type: "Before", data: {} })]);
    await writer.persistentSubscriptions.create(stream, "g");
    const sub = consumer.persistentSubscriptions.subscribe(stream, "g", { bufferSize: 10 });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of sub) {
        seen.push(e.event.id);
        await sub.ack(e);
      }
    })();
    await waitFor(() => seen.length === 1, { timeoutMs: 10_000, message: "the first event" });
    const leader = indexOfPort(consumer.node?.externalTcp?.port);
    expect(leader).toBe(await cluster.leader());

    cluster.partition(
      [leader],
      [0, 1, 2, 3].filter((i) => i !== leader),
    );
    await waitFor(async () => (await cluster.stateOf(leader)) !== "Leader", {
      timeoutMs: 15_000,
      message: `node ${leader} steps down`,
    });
    await writtenWhileCut(writer, stream, seen, leader);
    expect(indexOfPort(consumer.node?.externalTcp?.port)).not.toBe(leader);
    await sub.unsubscribe();
    await reading;
  });
});
