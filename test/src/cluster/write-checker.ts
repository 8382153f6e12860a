// The write checker of quality.md for the cluster chaos tests: writers that remember what was
// acknowledged, and checks run once the faults have healed: every acknowledged append is
// present exactly once on every node, revisions are gapless, at most one leader per epoch,
// and every node's log is a prefix of one log.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { chorus } from "@chorus/protocol";
import { getJson, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { expect } from "vitest";
import { RawClient } from "../server/helpers.js";
import { roleChanges } from "./helpers.js";

const CLIENT_OPTIONS =
  "&operationTimeout=30000&reconnectionDelay=20&discoverDelay=20&maxReconnections=10000" +
  "&maxDiscoverAttempts=1000&heartbeatInterval=200&heartbeatTimeout=500";

export interface Writers {
  readonly count: number;
  /** Event id -> writer, for every append the cluster acknowledged. */
  readonly acknowledged: Map<string, number>;
  /** Failed or timed out: may or may not be there. */
  readonly unknown: Set<string>;
  /** Stops the loops (each finishes its append in flight) and closes the clients. */
  stop(): Promise<void>;
}

/** `count` writers appending one event at a time to their own stream `writer-N`, until stopped. */
export function startWriters(cluster: TestCluster, count: number): Writers {
  const acknowledged = new Map<string, number>();
  const unknown = new Set<string>();
  const clients: ChorusClient[] = [];
  let stopping = false;
  const loops = Array.from({ length: count }, async (_, w) => {
    const client = new ChorusClient(`${cluster.connectionString}${CLIENT_OPTIONS}`);
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
  let stopped: Promise<void> | undefined;
  return {
    count,
    acknowledged,
    unknown,
    stop() {
      stopping = true;
      stopped ??= Promise.all(loops).then(async () => {
        await Promise.all(clients.map((c) => c.close()));
      });
      return stopped;
    },
  };
}

/** Waits until the writers have `more` acknowledgements beyond what they have now. */
export async function writesContinue(writers: Writers, more: number, what: string): Promise<void> {
  const target = writers.acknowledged.size + more;
  await waitFor(() => writers.acknowledged.size >= target, { timeoutMs: 20_000, message: what });
}

/** Event ids and revisions of a stream as one node serves them (committed prefix). */
export async function streamOn(
  node: TestNode,
  stream: string,
): Promise<{ ids: string[]; revisions: number[] }> {
  const ids: string[] = [];
  const revisions: number[] = [];
  for (let from = 0; ;) {
    const res = await getJson(
      `http://${node.httpEndpoint}/streams/${stream}?from=${from}&count=100`,
      5_000,
    );
    if (res.status === 404) return { ids, revisions };
    const body = res.body as { events: Array<{ eventId: string; revision: string }> };
    for (const e of body.events) {
      ids.push(e.eventId);
      revisions.push(Number(e.revision));
    }
    if (body.events.length < 100) return { ids, revisions };
    from += body.events.length;
  }
}

/**
 * Every acknowledged append of every writer is on every node exactly once, revisions are
 * gapless, and nothing is there that was neither acknowledged nor of unknown outcome. Waits
 * (up to 20 s) for the nodes to agree first.
 */
export async function checkWrites(cluster: TestCluster, writers: Writers): Promise<void> {
  for (let w = 0; w < writers.count; w++) {
    const expected = [...writers.acknowledged].filter(([, v]) => v === w).map(([id]) => id);
    const views = await waitFor(
      async () => {
        const all = await Promise.all(cluster.nodes.map((n) => streamOn(n, `writer-${w}`)));
        const first = JSON.stringify(all[0]?.ids);
        return all.every((v) => JSON.stringify(v.ids) === first) ? all : undefined;
      },
      { timeoutMs: 20_000, message: `writer-${w} identical on every node` },
    );
    const { ids, revisions } = views[0]!;
    expect(revisions).toEqual(revisions.map((_, i) => i));
    expect(new Set(ids).size).toBe(ids.length);
    const stored = new Set(ids);
    expect(expected.filter((id) => !stored.has(id))).toEqual([]);
    expect(ids.filter((id) => !writers.acknowledged.has(id) && !writers.unknown.has(id))).toEqual(
      [],
    );
  }
}

/** `position:eventId` of every event of `$all` as one node serves it (its committed log). */
export async function logOn(node: TestNode): Promise<string[]> {
  const c = await RawClient.connect(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
  try {
    const out: string[] = [];
    for (let from = 0; ;) {
      const reply = await c.request({
        readAll: {
          direction: chorus.Direction.FORWARDS,
          fromPosition: from,
          maxCount: 1000,
          filter: { includeSystem: true },
        },
      });
      const page = reply.readResult;
      if (!page)
        throw new Error(`no read result from ${node.httpEndpoint}: ${JSON.stringify(reply)}`);
      for (const e of page.events ?? []) out.push(`${String(e.event?.position)}:${e.event?.id}`);
      if (page.endOfStream || (page.events ?? []).length === 0) return out;
      from = Number(page.nextPosition);
    }
  } finally {
    await c.close();
  }
}

/** Every node's committed log is a prefix of the longest one. Returns the longest length. */
export async function checkLogsArePrefixes(cluster: TestCluster): Promise<number> {
  const logs = await Promise.all(cluster.nodes.map((n) => logOn(n)));
  const longest = logs.reduce((a, b) => (b.length > a.length ? b : a), []);
  for (const [i, log] of logs.entries()) {
    expect(log, `node ${i}'s log is a prefix of the longest`).toEqual(longest.slice(0, log.length));
  }
  return longest.length;
}

/**
 * At most one leader per epoch, from every node's "cluster role changed" log lines: all the
 * leaders named for one epoch (by the leader itself or by its followers) are one node.
 */
export function checkOneLeaderPerEpoch(cluster: TestCluster): Map<number, string> {
  const leaders = new Map<number, Set<string>>();
  for (const node of cluster.nodes) {
    for (const entry of roleChanges(node)) {
      if (entry.leader === null) continue;
      const set = leaders.get(entry.epoch) ?? new Set<string>();
      set.add(entry.leader);
      leaders.set(entry.epoch, set);
    }
  }
  const result = new Map<number, string>();
  for (const [epoch, set] of leaders) {
    expect([...set], `leaders of epoch ${epoch}`).toHaveLength(1);
    result.set(epoch, [...set][0]!);
  }
  return result;
}

/** The whole checker, once every node is up and the faults have healed. */
export async function checkHistory(cluster: TestCluster, writers: Writers): Promise<void> {
  await checkWrites(cluster, writers);
  await checkLogsArePrefixes(cluster);
  checkOneLeaderPerEpoch(cluster);
}
