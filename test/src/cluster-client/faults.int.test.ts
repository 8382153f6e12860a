// The client against a real three-node cluster it reaches through fault proxies (gossip goes
// to the nodes, the native protocol through one proxy per node): lost replies, a partition
// between the client and the leader, every node down, and nothing left open after close().
import {
  ChorusClient,
  ClientClosedError,
  jsonEvent,
  TimeoutError,
  type EventData,
} from "@chorus/client";
import { waitFor } from "@chorus/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { idsOn } from "../cluster/helpers.js";
import { startProxiedCluster, type ProxiedCluster } from "./helpers.js";

let cluster: ProxiedCluster;
const clients: ChorusClient[] = [];

beforeAll(async () => {
  cluster = await startProxiedCluster(3);
  await cluster.leader();
});

afterEach(async () => {
  for (const proxy of cluster.proxies) proxy.heal();
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await cluster?.stop();
});

/** A client that notices a dead connection within half a second. */
function client(query = ""): ChorusClient {
  const c = new ChorusClient(
    cluster.connectionString(
      `&heartbeatInterval=150&heartbeatTimeout=500&reconnectionDelay=20&discoverDelay=50${query}`,
    ),
  );
  clients.push(c);
  return c;
}

/** Every node that runs serves exactly `ids` for `stream`. */
async function everywhere(stream: string, ids: string[]): Promise<void> {
  await waitFor(
    async () => {
      for (const node of cluster.nodes.filter((n) => n.running)) {
        const found = await idsOn(node, stream);
        if (found?.join() !== ids.join()) return false;
      }
      return true;
    },
    { timeoutMs: 15_000, message: `${stream} = ${ids.length} event(s) on every running node` },
  );
}

/** The process's active handles and requests, counted by kind. */
function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo())
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

function events(n: number, type = "E"): EventData[] {
  return Array.from({ length: n }, (_, i) => jsonEvent({ type, data: { i } }));
}

describe("an append whose reply is lost (forwarded, executed, the reply dropped)", () => {
  it.each([
    ["no_stream", "no_stream" as const, 0],
    ["an exact revision", 1n, 2],
  ])(
    "with expected version %s: the retry returns the original result, the stream holds it once",
    async (_name, expectedVersion, first) => {
      const stream = `lost-reply-${String(expectedVersion)}`;
      const c = client("&operationTimeout=20000");
      const before = first > 0 ? events(first) : [];
      if (before.length > 0) await c.appendToStream(stream, before);
      else await c.connect();
      const leader = await cluster.leader();
      const proxy = cluster.proxies[leader]!;

      const disconnected = new Promise<Error>((r) => c.once("disconnected", r));
      proxy.dropRepliesAfterForwarding();
      const [event] = events(1, "Once");
      const pending = c.appendToStream(stream, event!, { expectedVersion });
      const ids = [...before, event!].map((e) => e.id);
      // executed and committed by the cluster; the client heard nothing
      await everywhere(stream, ids);
      // without pongs the client gives up on the connection, then retries on a new one
      await disconnected;
      proxy.heal();

      const result = await pending;
      expect(result.nextExpectedVersion).toBe(BigInt(first));
      await everywhere(stream, ids);
    },
  );

  it("and the leader dies before the retry: the new leader answers with the original result", async () => {
    const stream = "lost-reply-failover";
    const c = client("&operationTimeout=30000");
    await c.appendToStream(stream, events(1));
    const leader = await cluster.leader();
    cluster.proxies[leader]!.dropRepliesAfterForwarding();
    const [event] = events(1, "Once");
    const pending = c.appendToStream(stream, event!, { expectedVersion: 0n });
    const ids = await waitFor(async () => {
      const found = await idsOn(cluster.nodes[leader]!, stream);
      return found?.length === 2 ? found : undefined;
    });
    await everywhere(stream, ids);
    await cluster.nodes[leader]!.kill();
    try {
      const result = await pending;
      expect(result.nextExpectedVersion).toBe(1n);
      await everywhere(stream, ids);
    } finally {
      cluster.proxies[leader]!.heal();
      await cluster.nodes[leader]!.restart();
    }
    await everywhere(stream, ids);
  });
});

describe("a partition between the client and the leader", () => {
  it("writes wait (or time out within operationTimeout + 10%) while reads go on from a follower; writes resume after healing, once each", async () => {
    const c = client("&nodePreference=follower");
    const stream = "partitioned";
    await c.appendToStream(stream, events(1));
    await c.connect();
    expect(c.readNode?.state).toBe("Follower");
    const leader = await cluster.leader();
    const proxy = cluster.proxies[leader]!;

    proxy.blackhole();
    const lost = new Promise<Error>((r) => c.once("disconnected", r));
    const [first, second] = events(2, "During");
    const waiting = c.appendToStream(stream, first!, { timeoutMs: 30_000 });
    const started = performance.now();
    const timedOut = await c
      .appendToStream(stream, second!, { timeoutMs: 1_500 })
      .catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(timedOut).toBeInstanceOf(TimeoutError);
    expect(elapsed).toBeGreaterThanOrEqual(1_490);
    expect(elapsed).toBeLessThanOrEqual(1_650);
    expect((await lost).message).toMatch(/heartbeat timeout/);

    // the follower still serves reads
    const read: string[] = [];
    for await (const e of c.readStream(stream)) read.push(e.event.type);
    expect(read[0]).toBe("E");

    proxy.heal();
    const result = await waiting;
    expect(result.nextExpectedVersion).toBeGreaterThanOrEqual(1n);
    // The timed-out append is "unknown", not "failed": its bytes may still reach the
    // leader after the heal. Whatever happened, no event is there twice.
    const stored = await waitFor(async () => {
      const ids = await idsOn(cluster.nodes[leader]!, stream);
      return ids?.includes(first!.id) ? ids : undefined;
    });
    expect(new Set(stored).size).toBe(stored.length);
    expect(stored.filter((id) => id === first!.id)).toHaveLength(1);
  });
});

describe("every node down, then back", () => {
  it("an operation fails with TimeoutError within operationTimeout + 10% while nothing answers", async () => {
    const c = client("&maxReconnections=-1");
    await c.appendToStream("all-down", events(1));
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    try {
      for (const timeoutMs of [1_000, 2_500]) {
        const started = performance.now();
        const err = await c
          .appendToStream("all-down", events(1), { timeoutMs })
          .catch((e: unknown) => e);
        const elapsed = performance.now() - started;
        expect(err).toBeInstanceOf(TimeoutError);
        expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 10);
        expect(elapsed).toBeLessThanOrEqual(timeoutMs * 1.1);
      }
    } finally {
      await Promise.all(cluster.nodes.map((n) => n.restart()));
    }
    await cluster.leader();
  });

  it("an operation made while every node is down waits and succeeds once they are back", async () => {
    const c = client("&maxReconnections=-1&queueTimeout=60000&operationTimeout=60000");
    const stream = "all-down-then-back";
    const [before] = events(1);
    await c.appendToStream(stream, before!);
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    const [event] = events(1, "Waited");
    const pending = c.appendToStream(stream, event!, { expectedVersion: 0n });
    // the client notices and keeps trying while the nodes are gone
    await waitFor(() => c.status === "reconnecting", { message: "the client reconnecting" });
    await Promise.all(cluster.nodes.map((n) => n.restart()));
    const result = await pending;
    expect(result.nextExpectedVersion).toBe(1n);
    await everywhere(stream, [before!.id, event!.id]);
  });
});

describe("close()", () => {
  it("leaves no socket, timer or pending promise behind, with both connections open and work in flight", async () => {
    const baseline = resources();
    const c = new ChorusClient(
      cluster.connectionString(
        "&nodePreference=follower&heartbeatInterval=100&heartbeatTimeout=300",
      ),
    );
    await c.connect();
    const leader = cluster.proxies.findIndex((p) => p.endpoint.port === c.node?.externalTcp?.port);
    expect(c.node?.state).toBe("Leader");
    await waitFor(() => c.readNode?.state === "Follower", { message: "reads on a follower" });
    await c.appendToStream("close-me", events(3));
    const sub = c.subscribeToStream("close-me");
    const seen: unknown[] = [];
    const consuming = (async () => {
      for await (const e of sub) seen.push(e.event.data);
    })();
    await waitFor(() => seen.length === 3);
    // a write the client cannot send before close(): the leader is out of reach
    cluster.proxies[leader]!.blackhole();
    const stuck = c.appendToStream("close-me", events(1), { timeoutMs: 60_000 });
    stuck.catch(() => undefined);
    await waitFor(() => c.status !== "connected", { message: "the client noticing" });

    const closing = performance.now();
    await c.close();
    expect(performance.now() - closing).toBeLessThan(2_000);
    await expect(stuck).rejects.toBeInstanceOf(ClientClosedError);
    await consuming; // the subscription ended and its loop finished
    // The proxies live in this process too: once healed, they see the client's sockets
    // gone (a blackhole hides even the end of a connection) and close their own ends.
    cluster.proxies[leader]!.heal();
    await waitFor(() => cluster.proxies.every((p) => p.connections === 0), {
      message: "the proxies' ends of the client's connections closed",
    });
    // Whatever is left was there before the client was made (the test's own fetches may
    // have let some of their keep-alive sockets go meanwhile).
    const left = resources();
    for (const [kind, count] of left) expect(count).toBeLessThanOrEqual(baseline.get(kind) ?? 0);
  });
});
