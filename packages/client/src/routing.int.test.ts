// Read routing by node preference and the client-wide retry budget, against in-test nodes.
import { chorus } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import { ChorusClient } from "./client.js";
import { NotHandledError } from "./errors.js";
import { jsonEvent } from "./operations/events.js";
import { FakeNode, FakeStore } from "./test-support/fake-node.js";
import { fast, inTestNodes, waitFor } from "./test-support/fixtures.js";
import type { MemberInfo, NodePreference } from "./types.js";

const { node, client } = inTestNodes();

/** A leader, a follower and a read-only replica over one store, each gossiping all three. */
async function cluster() {
  const store = new FakeStore();
  const leader = await node({ store, instanceId: "leader" });
  const follower = await node({ store, instanceId: "follower", state: "Follower" });
  const replica = await node({ store, instanceId: "replica", state: "ReadOnlyReplica" });
  const members = () => [
    leader.memberInfo(),
    follower.memberInfo(),
    replica.memberInfo({ isReadOnlyReplica: true }),
  ];
  for (const n of [leader, follower, replica]) n.gossip = members;
  return {
    store,
    leader,
    follower,
    replica,
    seeds: [leader, follower, replica].map((n) => n.httpEndpoint),
  };
}

/** The kinds of request a node received (pings and credit grants aside). */
const kinds = (n: FakeNode) =>
  new Set(n.received.filter((f) => !f.ping && !f.subscriptionCredit).map((f) => f.body));

describe("read routing by node preference", () => {
  it.each([
    ["follower", "follower"],
    ["readOnlyReplica", "replica"],
  ] as const)(
    "%s: reads and subscriptions go to the %s, writes to the leader",
    async (preference, readerName) => {
      const nodes = await cluster();
      const reader = nodes[readerName];
      const c = client(fast().withGossipSeeds(nodes.seeds).withNodePreference(preference).build());
      const connected: MemberInfo[] = [];
      c.on("connected", (m) => connected.push(m));

      await c.appendToStream("routed", jsonEvent({ type: "A", data: 1 }));
      await c.setStreamMetadata("routed", { maxCount: 5 });
      const read = [];
      for await (const e of c.readStream("routed")) read.push(e.event.data);
      expect(read).toEqual([1]);
      for await (const e of c.readAll({ maxCount: 1 })) read.push(e.event.data);
      const sub = c.subscribeToStream("routed");
      for await (const e of sub) {
        read.push(e.event.data);
        break;
      }
      await c.deleteStream("routed");

      expect(read).toEqual([1, 1, 1]);
      expect(kinds(nodes.leader)).toEqual(new Set(["append", "deleteStream"]));
      expect(kinds(reader)).toEqual(new Set(["readStream", "readAll", "subscribe", "unsubscribe"]));
      expect(c.node?.instanceId).toBe("leader");
      expect(c.readNode?.instanceId).toBe(reader.instanceId);
      expect(connected.map((m) => m.instanceId).sort()).toEqual(
        ["leader", reader.instanceId].sort(),
      );
    },
  );

  it("a read with requireLeader: true goes to the leader whatever the preference", async () => {
    const nodes = await cluster();
    const c = client(fast().withGossipSeeds(nodes.seeds).withNodePreference("follower").build());
    await c.appendToStream("strict", jsonEvent({ type: "A", data: 1 }));
    for await (const e of c.readStream("strict", { requireLeader: true })) void e;
    expect(kinds(nodes.leader)).toEqual(new Set(["append", "readStream"]));
    expect(nodes.follower.clients).toBe(0); // the reads connection was never needed
  });

  it.each(["leader", "random"] as NodePreference[])(
    "%s: one connection serves everything when it lands on the leader",
    async (preference) => {
      const store = new FakeStore();
      const leader = await node({ store, instanceId: "leader" });
      const c = client(
        fast().withSingleNode(leader.httpEndpoint).withNodePreference(preference).build(),
      );
      await c.connect();
      await c.appendToStream("one", jsonEvent({ type: "A", data: 1 }));
      for await (const e of c.readStream("one")) void e;
      expect(c.readNode?.instanceId).toBe("leader");
      expect(leader.clients).toBe(preference === "leader" ? 1 : 2);
    },
  );

  it("reads stay on the follower while the leader connection is lost and comes back", async () => {
    const nodes = await cluster();
    const c = client(fast().withGossipSeeds(nodes.seeds).withNodePreference("follower").build());
    await c.connect();
    expect([c.node?.instanceId, c.readNode?.instanceId]).toEqual(["leader", "follower"]);
    await c.appendToStream("s", jsonEvent({ type: "A", data: 1 }));
    const lost = new Promise<Error>((r) => c.once("disconnected", r));
    nodes.leader.dropConnections();
    await lost;
    for await (const e of c.readStream("s")) void e;
    expect(c.readNode?.instanceId).toBe("follower");
    await c.appendToStream("s", jsonEvent({ type: "A", data: 2 }));
    expect(nodes.store.stream("s")).toHaveLength(2);
  });

  it("moves off a fallback once a node of the preference can serve", async () => {
    const nodes = await cluster();
    nodes.follower.state = "CatchingUp";
    nodes.replica.state = "PreReadOnlyReplica";
    const c = client(fast().withGossipSeeds(nodes.seeds).withNodePreference("follower").build());
    await c.appendToStream("f", jsonEvent({ type: "A", data: 1 }));
    for await (const e of c.readStream("f")) void e;
    expect(c.readNode?.instanceId).toBe("leader"); // nobody else can serve yet
    nodes.follower.state = "Follower";
    await waitFor(() => c.readNode?.instanceId === "follower");
    for await (const e of c.readStream("f")) void e;
    expect(kinds(nodes.follower)).toEqual(new Set(["readStream"]));
  });

  it("moves off a node of the preference that stops serving, and back once it serves again", async () => {
    const nodes = await cluster();
    const c = client(
      fast().withGossipSeeds(nodes.seeds).withNodePreference("readOnlyReplica").build(),
    );
    await c.connect();
    expect(c.readNode?.instanceId).toBe("replica");
    // It is asked with pings on the connection itself, not with gossip requests.
    const [gossipReads, pings] = [nodes.replica.gossipReads, nodes.replica.pings];
    await waitFor(() => nodes.replica.pings >= pings + 2, 10_000);
    expect(nodes.replica.gossipReads).toBe(gossipReads);
    // Cut off from the leader while the client still reaches it: it answers so.
    nodes.replica.state = "PreReadOnlyReplica";
    await waitFor(() => c.readNode?.instanceId === "follower", 10_000);
    nodes.replica.state = "ReadOnlyReplica";
    await waitFor(() => c.readNode?.instanceId === "replica", 10_000);
    for await (const e of c.readAll({ maxCount: 1 })) void e;
    expect(kinds(nodes.replica)).toEqual(new Set(["readAll"]));
  });

  it("stays on a node that stops serving while no other node serves", async () => {
    const nodes = await cluster();
    const c = client(fast().withGossipSeeds(nodes.seeds).withNodePreference("follower").build());
    await c.connect();
    expect(c.readNode?.instanceId).toBe("follower");
    for (const n of [nodes.leader, nodes.follower]) n.state = "Unknown";
    nodes.replica.state = "PreReadOnlyReplica";
    // Asked twice, then a gossip round over all three found nobody to move to, twice over.
    const asked = nodes.replica.gossipReads;
    await waitFor(() => nodes.replica.gossipReads >= asked + 2, 15_000);
    expect(c.readNode?.instanceId).toBe("follower");
    expect([nodes.leader.clients, nodes.follower.clients, nodes.replica.clients]).toEqual([
      1, 1, 0,
    ]);
  });

  it("close() closes both connections", async () => {
    const nodes = await cluster();
    const c = new ChorusClient(
      fast().withGossipSeeds(nodes.seeds).withNodePreference("follower").build(),
    );
    await c.connect();
    expect([nodes.leader.clients, nodes.follower.clients]).toEqual([1, 1]);
    await c.close();
    expect(c.status).toBe("closed");
    expect(c.readNode).toBeUndefined();
  });
});

describe("the client's retry budget", () => {
  /** A node that answers every append NOT_READY, counting them. */
  async function notReady(): Promise<{ node: FakeNode; appends: () => number }> {
    const n = await node({
      intercept: (frame, _ws, send) => {
        if (!frame.append) return false;
        send({
          correlationId: frame.correlationId,
          notHandled: { reason: chorus.NotHandled.Reason.NOT_READY },
        });
        return true;
      },
    });
    return { node: n, appends: () => n.received.filter((f) => f.append).length };
  }

  it("fails an operation at once, with its real error, when the budget allows no retry", async () => {
    const { node: n, appends } = await notReady();
    const c = client(
      fast()
        .withSingleNode(n.httpEndpoint)
        .withRetryBudget({ ratio: 0, minRetriesPerSecond: 0 })
        .build(),
    );
    const err = await c
      .appendToStream("b", jsonEvent({ type: "A", data: 1 }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotHandledError);
    expect((err as NotHandledError).reason).toBe("NOT_READY");
    expect(appends()).toBe(1);
  });

  it("bounds the retries of every operation together, not of each one", async () => {
    const { node: n, appends } = await notReady();
    // a reserve of 3 retries in the window, and 1 retry per 2 operations
    const c = client(
      fast()
        .withSingleNode(n.httpEndpoint)
        .withReconnectionDelay(1)
        .withRetryBudget({ ratio: 0.5, minRetriesPerSecond: 0.3, windowMs: 10_000 })
        .build(),
    );
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => c.appendToStream("b", jsonEvent({ type: "A", data: i }))),
    );
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    // 8 first attempts + 3 (reserve) + 4 (8 × 0.5) retries, where each alone would retry 10 times
    expect(appends()).toBe(8 + 3 + 4);
  });

  it("withoutRetryBudget(): only limitRetriesForOperationTo limits the retries", async () => {
    const { node: n, appends } = await notReady();
    const c = client(
      fast()
        .withSingleNode(n.httpEndpoint)
        .withReconnectionDelay(1)
        .limitRetriesForOperationTo(3)
        .withoutRetryBudget()
        .build(),
    );
    await Promise.allSettled(
      Array.from({ length: 5 }, () => c.appendToStream("b", jsonEvent({ type: "A", data: 0 }))),
    );
    expect(appends()).toBe(5 * 4);
  });
});
