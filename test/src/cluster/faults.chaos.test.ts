// A three-node cluster under process faults, with the write checker of quality.md:
// every acknowledged append is present exactly once on every voting node after healing,
// revisions are gapless, and a paused old leader acknowledges nothing after it resumes.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";

let cluster: TestCluster | undefined;
const clients: ChorusClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await cluster?.stop();
  cluster = undefined;
});

const CLIENT_OPTIONS =
  "&operationTimeout=30000&reconnectionDelay=20&discoverDelay=20&maxReconnections=10000" +
  "&maxDiscoverAttempts=1000&heartbeatInterval=200&heartbeatTimeout=500";

interface Writers {
  acknowledged: Map<string, number>; // event id -> writer
  unknown: Set<string>; // failed or timed out: may or may not be there
  stop(): Promise<void>;
}

/** `count` writers appending one event at a time to their own stream, until stopped. */
function startWriters(c: TestCluster, count: number): Writers {
  const acknowledged = new Map<string, number>();
  const unknown = new Set<string>();
  let stopping = false;
  const loops = Array.from({ length: count }, async (_, w) => {
    const client = new ChorusClient(`${c.connectionString}${CLIENT_OPTIONS}`);
    clients.push(client);
    while (!stopping) {
      const event = jsonEvent({ type: "W", data: { w } });
      try {
        await client.appendToStream(`writer-${w}`, event);
        acknowledged.set(event.id, w);
      } catch {
        unknown.add(event.id);
      }
    }
  });
  return {
    acknowledged,
    unknown,
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

/** Event ids and revisions of a stream as one node serves them (committed prefix). */
async function streamOn(
  node: TestNode,
  stream: string,
): Promise<{ ids: string[]; revisions: number[] }> {
  const ids: string[] = [];
  const revisions: number[] = [];
  for (let from = 0; ;) {
    const res = await fetch(
      `http://${node.httpEndpoint}/streams/${stream}?from=${from}&count=100`,
      {
        signal: AbortSignal.timeout(5_000),
      },
    );
    if (res.status === 404) return { ids, revisions };
    const body = (await res.json()) as { events: Array<{ eventId: string; revision: string }> };
    for (const e of body.events) {
      ids.push(e.eventId);
      revisions.push(Number(e.revision));
    }
    if (body.events.length < 100) return { ids, revisions };
    from += body.events.length;
  }
}

/** The write checker, run once every node is up and has caught up. */
async function checkWrites(c: TestCluster, writers: Writers, count: number): Promise<void> {
  for (let w = 0; w < count; w++) {
    const expected = [...writers.acknowledged].filter(([, v]) => v === w).map(([id]) => id);
    const views = await waitFor(
      async () => {
        const all = await Promise.all(c.nodes.map((n) => streamOn(n, `writer-${w}`)));
        const first = JSON.stringify(all[0]?.ids);
        return all.every((v) => JSON.stringify(v.ids) === first) ? all : undefined;
      },
      { timeoutMs: 20_000, message: `writer-${w} identical on every node` },
    );
    const { ids, revisions } = views[0]!;
    // Gapless revisions, each event once.
    expect(revisions).toEqual(revisions.map((_, i) => i));
    expect(new Set(ids).size).toBe(ids.length);
    // Nothing acknowledged is missing; anything extra must be an "unknown" outcome.
    const stored = new Set(ids);
    expect(expected.filter((id) => !stored.has(id))).toEqual([]);
    expect(ids.filter((id) => !writers.acknowledged.has(id) && !writers.unknown.has(id))).toEqual(
      [],
    );
  }
}

describe("three-node cluster under faults", () => {
  it("loses no acknowledged write when the leader is SIGKILLed under four writers", async () => {
    cluster = await startCluster({ size: 3 });
    const writers = startWriters(cluster, 4);
    await waitFor(() => writers.acknowledged.size >= 200, {
      timeoutMs: 20_000,
      message: "writes flowing",
    });
    const old = await cluster.leader();
    await cluster.kill(old);
    const before = writers.acknowledged.size;
    await waitFor(() => writers.acknowledged.size >= before + 200, {
      timeoutMs: 20_000,
      message: "writes resume",
    });
    await cluster.restart(old);
    await waitFor(async () => (await cluster!.stateOf(old)) === "Follower", {
      timeoutMs: 20_000,
      message: "old leader follows",
    });
    await writers.stop();
    await checkWrites(cluster, writers, 4);
  });

  it("a leader paused past the election timeout acknowledges nothing after it resumes", async () => {
    cluster = await startCluster({ size: 3 });
    const writers = startWriters(cluster, 2);
    await waitFor(() => writers.acknowledged.size >= 100, {
      timeoutMs: 20_000,
      message: "writes flowing",
    });
    const old = await cluster.leader();
    const oldNode = cluster.nodes[old]!;
    // A client pinned to the old leader, with an append in flight while it is paused.
    const pinned = new ChorusClient(
      `chorus://${oldNode.httpEndpoint}?tls=false&operationTimeout=15000`,
    );
    clients.push(pinned);
    await pinned.appendToStream("pinned", jsonEvent({ type: "P", data: { before: true } }));
    oldNode.pause();
    const stuck = jsonEvent({ type: "P", data: { during: true } });
    const outcome = pinned.appendToStream("pinned", stuck).then(
      () => "acknowledged" as const,
      () => "failed" as const,
    );
    const before = writers.acknowledged.size;
    // The others elect a new leader and the writers carry on without the paused node.
    await waitFor(() => writers.acknowledged.size >= before + 100, {
      timeoutMs: 20_000,
      message: "writes resume",
    });
    oldNode.resume();
    await waitFor(async () => (await cluster!.stateOf(old)) === "Follower", {
      timeoutMs: 20_000,
      message: "old leader steps down",
    });
    const result = await outcome;
    await writers.stop();
    await checkWrites(cluster, writers, 2);
    // Whatever the pinned client was told, the stream holds the event at most once, and
    // if it was acknowledged it is there on every node.
    const views = await Promise.all(cluster.nodes.map((n) => streamOn(n, "pinned")));
    const copies = views.map((v) => v.ids.filter((id) => id === stuck.id).length);
    for (const n of copies) expect(n).toBeLessThanOrEqual(1);
    if (result === "acknowledged") expect(copies).toEqual([1, 1, 1]);
  });
});
