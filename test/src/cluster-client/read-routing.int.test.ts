// Reads routed by node preference on a real cluster: three voters and a read-only replica.
// Each node's /metrics says which requests it served over the native protocol.
import { ChorusClient, jsonEvent, type MemberInfo, type NodePreference } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { servedBy, threeVotersAndReplicaServing, type Served } from "./helpers.js";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ size: 3, readOnlyReplicas: 1, memDb: true });
  await cluster.leader({ timeoutMs: 20_000 });
  await threeVotersAndReplicaServing(cluster, 20_000);
});

afterAll(async () => {
  await cluster?.stop();
});

async function served(): Promise<Served[]> {
  return Promise.all(cluster.nodes.map((n) => servedBy(n)));
}

function indexOf(member: MemberInfo | undefined): number {
  const index = cluster.nodes.findIndex((n) => n.extTcp.port === member?.externalTcp?.port);
  if (index < 0) throw new Error(`not a node of the cluster: ${JSON.stringify(member)}`);
  return index;
}

describe.each([
  ["follower", "Follower"],
  ["readOnlyReplica", "ReadOnlyReplica"],
] as const)("nodePreference %s", (preference: NodePreference, readerState) => {
  it(`reads, reads of $all and subscriptions are served by a ${readerState}; writes by the leader`, async () => {
    const leader = await cluster.leader();
    const client = new ChorusClient(`${cluster.connectionString}&nodePreference=${preference}`);
    const connected: string[] = [];
    client.on("connected", (node) => connected.push(node.state));
    try {
      const stream = `routed-${preference}`;
      const before = await served();

      const written = Array.from({ length: 5 }, (_, i) => jsonEvent({ type: "E", data: i }));
      await client.appendToStream(stream, written, { expectedVersion: "no_stream" });
      await client.setStreamMetadata(stream, { maxCount: 100 });
      // A follower or replica serves what has reached it: read until all five are there.
      const ids = await waitFor(
        async () => {
          const found: string[] = [];
          for await (const e of client.readStream(stream)) found.push(e.event.id);
          return found.length === 5 ? found : undefined;
        },
        { timeoutMs: 10_000, message: `five events of ${stream} on the ${readerState}` },
      );
      expect(ids).toEqual(written.map((e) => e.id));
      const fromAll: string[] = [];
      for await (const e of client.readAll({ filter: { streamNamePrefix: [stream] } }))
        fromAll.push(e.event.id);
      expect(fromAll).toEqual(ids);
      const sub = client.subscribeToStream(stream);
      const delivered: string[] = [];
      for await (const e of sub) {
        delivered.push(e.event.id);
        if (delivered.length === 5) break;
      }
      expect(delivered).toEqual(ids);

      const after = await served();
      const reader = indexOf(client.readNode);
      expect(client.readNode?.state).toBe(readerState);
      expect(indexOf(client.node)).toBe(leader);
      expect(reader).not.toBe(leader);
      if (preference === "readOnlyReplica") expect(reader).toBe(3);
      const delta = after.map((a, i) => ({
        reads: a.reads - before[i]!.reads,
        subscriptions: a.subscriptions - before[i]!.subscriptions,
        appends: a.appends - before[i]!.appends,
      }));
      // the reader served every read (at least one page per read, plus the retried ones)
      expect(delta[reader]!.reads).toBeGreaterThanOrEqual(2);
      expect(delta[reader]!.subscriptions).toBe(1);
      expect(delta[reader]!.appends).toBe(0);
      // the leader served the two writes and nothing else
      expect(delta[leader]).toEqual({ reads: 0, subscriptions: 0, appends: 2 });
      for (const [i, d] of delta.entries()) {
        if (i !== leader && i !== reader)
          expect(d).toEqual({ reads: 0, subscriptions: 0, appends: 0 });
      }
      expect([...connected].sort()).toEqual(["Leader", readerState].sort());
    } finally {
      await client.close();
    }
  });
});
