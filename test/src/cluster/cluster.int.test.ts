// A three-node cluster of real chorus-server processes: election, replication, failover.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { chorus } from "@chorus/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawClient, append, jsonEvent as rawEvent } from "../server/helpers.js";
import { idsOn } from "./helpers.js";

let cluster: TestCluster;
let client: ChorusClient;

beforeAll(async () => {
  cluster = await startCluster({ size: 3 });
  client = new ChorusClient(cluster.connectionString);
});

afterAll(async () => {
  await client?.close();
  await cluster?.stop();
});

/** Waits until every listed node serves exactly `expected` for `stream`. */
async function waitForEverywhere(nodes: readonly TestNode[], stream: string, expected: string[]) {
  await waitFor(
    async () => {
      for (const node of nodes) {
        const ids = await idsOn(node, stream);
        if (ids === undefined || ids.length !== expected.length) return false;
        if (ids.some((id, i) => id !== expected[i])) return false;
      }
      return true;
    },
    {
      timeoutMs: 15_000,
      intervalMs: 50,
      message: `${stream} replicated to every node (expected ${JSON.stringify(expected)})`,
    },
  );
}

describe("three-node cluster", () => {
  it("elects one leader; the others follow", async () => {
    const leader = await cluster.leader({ timeoutMs: 15_000 });
    await waitFor(
      async () => {
        const states = await Promise.all(cluster.nodes.map((_, i) => cluster.stateOf(i)));
        return states.filter((s) => s === "Follower").length === 2 && states[leader] === "Leader";
      },
      { timeoutMs: 10_000, message: "two followers" },
    );
  });

  it("replicates the client's appends to every node's committed log", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const event = jsonEvent({ type: "Counted", data: { i } });
      await client.appendToStream("counter", event);
      ids.push(event.id);
    }
    await waitForEverywhere(cluster.nodes, "counter", ids);
  });

  it("forwards HTTP writes from a follower; answers native writes there with NOT_LEADER", async () => {
    const leader = await cluster.leader();
    const follower = cluster.nodes.find((_, i) => i !== leader) as TestNode;
    const direct = new ChorusClient(
      `chorus://${follower.httpEndpoint}?tls=false&nodePreference=follower`,
    );
    try {
      // An HTTP write sent to a follower is forwarded to the leader, once.
      const eventId = crypto.randomUUID();
      const post = (headers: Record<string, string> = {}) =>
        fetch(`http://${follower.httpEndpoint}/streams/http-via-follower`, {
          method: "POST",
          headers: { "Content-Type": "application/json", ...headers },
          body: JSON.stringify([{ eventId, eventType: "T", data: { n: 1 } }]),
        });
      const res = await post();
      const body = (await res.json()) as { nextExpectedVersion: string };
      expect(res.status).toBe(201);
      expect(body.nextExpectedVersion).toBe("0");
      await waitForEverywhere(cluster.nodes, "http-via-follower", [eventId]);
      // A request that was already forwarded once is not forwarded again.
      const again = await post({ "Chorus-Forwarded-By": "another-node" });
      expect(again.status).toBe(503);
      expect(((await again.json()) as { error: string }).error).toBe("NOT_LEADER");
      expect(again.headers.get("chorus-leader")).toBe(
        `${(cluster.nodes[leader] as TestNode).extHttp.host}:${(cluster.nodes[leader] as TestNode).extHttp.port}`,
      );
      // A follower serves reads of the committed prefix.
      expect((await idsOn(follower, "counter"))?.length).toBe(200);
      // A native append sent to the follower is answered NOT_LEADER with the leader's
      // external endpoints...
      const leaderNode = cluster.nodes[leader] as TestNode;
      const raw = await RawClient.connect(`ws://${follower.extTcp.host}:${follower.extTcp.port}/`);
      try {
        const reply = await append(raw, "not-here", [rawEvent("T", {})]);
        expect(reply.body).toBe("notHandled");
        expect(reply.notHandled?.reason).toBe(chorus.NotHandled.Reason.NOT_LEADER);
        expect(reply.notHandled?.leaderTcp).toMatchObject(leaderNode.extTcp);
        expect(reply.notHandled?.leaderHttp).toMatchObject(leaderNode.extHttp);
      } finally {
        await raw.close();
      }
      // ...so the client moves there and the write lands once, everywhere.
      const event = jsonEvent({ type: "ViaFollower", data: {} });
      await direct.appendToStream("via-follower", event);
      await waitForEverywhere(cluster.nodes, "via-follower", [event.id]);
    } finally {
      await direct.close();
    }
  });

  it("fails over when the leader is killed; no acknowledged write is lost", async () => {
    const acknowledged: string[] = [];
    for (let i = 0; i < 20; i++) {
      const event = jsonEvent({ type: "Before", data: { i } });
      await client.appendToStream("failover", event);
      acknowledged.push(event.id);
    }
    const old = await cluster.leader();
    await cluster.kill(old);
    const next = await cluster.leader({ timeoutMs: 15_000 });
    expect(next).not.toBe(old);
    for (let i = 0; i < 50; i++) {
      const event = jsonEvent({ type: "After", data: { i } });
      await client.appendToStream("failover", event);
      acknowledged.push(event.id);
    }
    const survivors = cluster.nodes.filter((_, i) => i !== old);
    await waitForEverywhere(survivors, "failover", acknowledged);
    const counter = await idsOn(cluster.nodes[next] as TestNode, "counter");
    expect(counter?.length).toBe(200);

    // The killed node comes back as a follower and catches up.
    await cluster.restart(old);
    await waitForEverywhere(cluster.nodes, "failover", acknowledged);
    await waitFor(async () => (await cluster.stateOf(old)) === "Follower", {
      timeoutMs: 10_000,
      message: "the restarted node follows",
    });
  });

  it("hands leadership over when the leader is stopped gracefully", async () => {
    const old = await cluster.leader();
    const survivors = cluster.nodes.filter((_, i) => i !== old);
    const acknowledged: string[] = [];
    const writing = (async () => {
      for (let i = 0; i < 100; i++) {
        const event = jsonEvent({ type: "During", data: { i } });
        await client.appendToStream("handover", event);
        acknowledged.push(event.id);
      }
    })();
    await waitFor(() => acknowledged.length >= 20, { message: "writes under way" });
    await (cluster.nodes[old] as TestNode).stop();
    const next = await cluster.leader({ timeoutMs: 5_000 });
    expect(next).not.toBe(old);
    await writing;
    await waitForEverywhere(survivors, "handover", acknowledged);
  });
});
