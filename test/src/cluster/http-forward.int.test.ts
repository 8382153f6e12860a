// An HTTP write that a follower forwards to a leader which then stops answering (paused:
// its connections stay open, nothing comes back): the follower answers as soon as another
// node leads, not when the forward's 30 s idle timeout ends, and says the outcome is unknown;
// the write retried with the same event id lands once.
import { startCluster, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { idsOn } from "./helpers.js";

/** Wide enough that the write reaches the paused leader before the others replace it. */
const ELECTION_TIMEOUT_MS = 1_500;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ size: 3, timings: { electionTimeoutMs: ELECTION_TIMEOUT_MS } });
});

afterAll(async () => {
  await cluster?.stop();
});

function post(node: TestNode, stream: string, eventId: string): Promise<Response> {
  return fetch(`http://${node.httpEndpoint}/streams/${stream}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify([{ eventId, eventType: "T", data: { n: 1 } }]),
    signal: AbortSignal.timeout(60_000),
  });
}

describe("an HTTP write forwarded to a leader that stops answering", () => {
  it("is answered once another node leads, as an unknown outcome; its retry lands once", async () => {
    const oldLeader = await cluster.leader({ timeoutMs: 15_000 });
    const followerIndex = cluster.nodes.findIndex((_, i) => i !== oldLeader);
    const follower = cluster.nodes[followerIndex] as TestNode;
    const leaderNode = cluster.nodes[oldLeader] as TestNode;
    // The forward path works before the fault.
    const warm = await post(follower, "forwarded", crypto.randomUUID());
    expect(warm.status).toBe(201);

    const eventId = crypto.randomUUID();
    leaderNode.pause();
    let resumed = false;
    try {
      const started = performance.now();
      const res = await post(follower, "forwarded", eventId);
      const elapsedMs = performance.now() - started;
      const body = (await res.json()) as { error: string; message: string };
      expect(res.status).toBe(503);
      expect(body.error).toBe("NOT_LEADER");
      expect(body.message).toMatch(/outcome is unknown/);
      expect(body.message).toMatch(/retried with the same event ids/);
      // Answered when the leader changed (a few election timeouts), well before the forward's
      // own 30 s idle timeout.
      expect(elapsedMs).toBeLessThan(15_000);

      // The retry goes to the new leader and lands.
      await waitFor(
        async () => {
          const retry = await post(follower, "forwarded", eventId);
          return retry.status === 201;
        },
        { timeoutMs: 15_000, intervalMs: 200, message: "the retried write lands" },
      );
      leaderNode.resume();
      resumed = true;
      // Once the old leader is back and has caught up, every node holds the event exactly once.
      await waitFor(
        async () => {
          for (const node of cluster.nodes) {
            const ids = await idsOn(node, "forwarded");
            if (ids === undefined || ids.filter((id) => id === eventId).length !== 1) return false;
            if (ids.length !== 2) return false;
          }
          return true;
        },
        { timeoutMs: 20_000, intervalMs: 100, message: "the event once on every node" },
      );
    } finally {
      if (!resumed) leaderNode.resume();
    }
  });
});
