// Three voters and one read-only replica (a non-voting learner), as real chorus-server processes.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { chorus } from "@chorus/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawClient, append, jsonEvent as rawEvent } from "../server/helpers.js";
import { idsOn } from "./helpers.js";

const VOTERS = 3;
const REPLICA = VOTERS; // index of the replica in cluster.nodes

let cluster: TestCluster;
let client: ChorusClient;

beforeAll(async () => {
  cluster = await startCluster({ size: VOTERS, readOnlyReplicas: 1 });
  client = new ChorusClient(cluster.connectionString);
});

afterAll(async () => {
  await client?.close();
  await cluster?.stop();
});

function replica(): TestNode {
  return cluster.nodes[REPLICA] as TestNode;
}

async function waitForOn(node: TestNode, stream: string, expected: string[]): Promise<void> {
  await waitFor(
    async () => {
      const ids = await idsOn(node, stream);
      return ids !== undefined && JSON.stringify(ids) === JSON.stringify(expected);
    },
    { timeoutMs: 15_000, intervalMs: 50, message: `${stream} on ${node.httpEndpoint}` },
  );
}

async function appendMany(stream: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const event = jsonEvent({ type: "Counted", data: { i } });
    await client.appendToStream(stream, event);
    ids.push(event.id);
  }
  return ids;
}

interface GossipBody {
  members: { state: string; isReadOnlyReplica: boolean }[];
}

describe("three voters and a read-only replica", () => {
  it("elects a voter; the replica shows ReadOnlyReplica in /info and gossip", async () => {
    const leader = await cluster.leader({ timeoutMs: 15_000 });
    expect(leader).toBeLessThan(VOTERS);
    await waitFor(async () => (await cluster.stateOf(REPLICA)) === "ReadOnlyReplica", {
      timeoutMs: 15_000,
      message: "replica state ReadOnlyReplica",
    });
    const node = cluster.nodes[leader] as TestNode;
    await waitFor(
      async () => {
        const res = await fetch(`http://${node.httpEndpoint}/gossip`, {
          signal: AbortSignal.timeout(2_000),
        });
        const body = (await res.json()) as GossipBody;
        const replicas = body.members.filter((m) => m.isReadOnlyReplica);
        return replicas.length === 1 && replicas[0]?.state === "ReadOnlyReplica";
      },
      { timeoutMs: 10_000, message: "the leader's gossip shows the replica" },
    );
  });

  it("replicates the client's appends to the replica's committed log", async () => {
    const ids = await appendMany("replicated", 100);
    await waitForOn(replica(), "replicated", ids);
  });

  it("answers a native append on the replica with NOT_LEADER and the leader's endpoints", async () => {
    const leader = cluster.nodes[await cluster.leader()] as TestNode;
    const raw = await RawClient.connect(`ws://${replica().extTcp.host}:${replica().extTcp.port}/`);
    try {
      const reply = await append(raw, "not-on-a-replica", [rawEvent("T", {})]);
      expect(reply.body).toBe("notHandled");
      expect(reply.notHandled?.reason).toBe(chorus.NotHandled.Reason.NOT_LEADER);
      expect(reply.notHandled?.leaderTcp).toMatchObject(leader.extTcp);
      expect(reply.notHandled?.leaderHttp).toMatchObject(leader.extHttp);
    } finally {
      await raw.close();
    }
  });

  it("keeps taking writes with the replica down; the replica catches up when back", async () => {
    await cluster.kill(REPLICA);
    const ids = await appendMany("replica-down", 20);
    await cluster.restart(REPLICA);
    await waitForOn(replica(), "replica-down", ids);
  });

  it("stays writable with one voter down; the replica never leads", async () => {
    const leader = await cluster.leader();
    const victim = (leader + 1) % VOTERS;
    await cluster.kill(victim);
    const ids = await appendMany("one-voter-down", 20);
    await waitForOn(replica(), "one-voter-down", ids);
    // Now the leader too: two of three voters are gone, so nothing may be elected, and the
    // replica must not stand.
    await cluster.kill(leader);
    const until = performance.now() + 3_000;
    while (performance.now() < until) {
      expect(await cluster.stateOf(REPLICA)).not.toBe("Leader");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Back to two voters: writable again, and the replica follows.
    await cluster.restart(victim);
    const next = await cluster.leader({ timeoutMs: 15_000 });
    expect(next).toBeLessThan(VOTERS);
    const more = await appendMany("after-recovery", 5);
    await waitForOn(replica(), "after-recovery", more);
    await cluster.restart(leader);
  });
});
