// Partitioned deployments: a leader change in one group never stalls another group's streams.
// Group "a" is a 3-node cluster, group "b" a single node; real server processes.
import { ChorusClient, ConnectionSettings, jsonEvent, type MemberInfo } from "@chorus/client";
import { partitionOf } from "@chorus/protocol";
import { startCluster, startNode, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { collect, partitionArgs } from "./helpers.js";

const GROUPS = ["a", "b"] as const;
/** The load loop's hard bound: it stops by then whatever happens. */
const LOAD_DEADLINE_MS = 30_000;

let cluster: TestCluster;
let single: TestNode;
let client: ChorusClient;

beforeAll(async () => {
  [cluster, single] = await Promise.all([
    startCluster({ size: 3, memDb: true, args: partitionArgs("a", GROUPS) }),
    startNode({ memDb: true, args: partitionArgs("b", GROUPS) }),
  ]);
  await cluster.leader();
  client = new ChorusClient(
    ConnectionSettings.create()
      .withPartitions({
        a: ConnectionSettings.fromConnectionString(`${cluster.connectionString}&maxRetries=-1`),
        b: single.connectionString,
      })
      .build(),
  );
}, 90_000);

afterAll(async () => {
  await client?.close();
  await Promise.allSettled([cluster?.stop(), single?.stop()]);
});

function streamsOf(owner: string, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    if (partitionOf(`load-${owner}-${i}`, GROUPS) === owner) out.push(`load-${owner}-${i}`);
  }
  return out;
}

interface Write {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly ok: boolean;
}

it("keeps writing to one group while the other group's leader is killed", async () => {
  const members = await client.clusterMembers();
  expect(new Set(members.map((m: MemberInfo) => m.partition))).toEqual(new Set(GROUPS));
  expect(members.filter((m) => m.partition === "a")).toHaveLength(3);

  const leaderChanges: string[] = [];
  client.on("leaderChanged", (change) => leaderChanges.push(change.partition ?? "?"));

  const streams = { a: streamsOf("a", 5), b: streamsOf("b", 5) };
  const writes: Record<"a" | "b", Write[]> = { a: [], b: [] };
  const acked: Record<"a" | "b", Map<string, number>> = { a: new Map(), b: new Map() };
  // A merged $all subscription over both groups follows the whole run.
  const received = new Map<string, number[]>();
  const sub = client.subscribeToAll({ fromPosition: "start" });
  const following = (async () => {
    for await (const e of sub) {
      if (!e.event.streamId.startsWith("load-")) continue;
      expect(e.event.partition).toBe(partitionOf(e.event.streamId, GROUPS));
      const list = received.get(e.event.streamId) ?? [];
      list.push((e.event.data as { i: number }).i);
      received.set(e.event.streamId, list);
    }
  })();
  const started = Date.now();
  let stop = false;
  const writer = async (group: "a" | "b") => {
    for (let i = 0; !stop && Date.now() - started < LOAD_DEADLINE_MS; i++) {
      const stream = streams[group][i % streams[group].length]!;
      const startedAt = Date.now();
      let ok = true;
      try {
        await client.appendToStream(stream, jsonEvent({ type: "Load", data: { i } }), {
          timeoutMs: 20_000,
        });
        acked[group].set(stream, (acked[group].get(stream) ?? 0) + 1);
      } catch {
        ok = false;
      }
      writes[group].push({ startedAt, endedAt: Date.now(), ok });
    }
  };
  const loops = [writer("a"), writer("b")];
  try {
    // Both groups take writes, then group a loses its leader.
    await waitFor(() => writes.a.length >= 20 && writes.b.length >= 20, {
      message: "both groups taking writes",
    });
    const leader = await cluster.leader();
    const killedAt = Date.now();
    await cluster.nodes[leader]!.kill();
    // Group a recovers: a write started after the kill succeeds.
    await waitFor(() => writes.a.some((w) => w.ok && w.startedAt > killedAt), {
      timeoutMs: 20_000,
      message: "group a takes writes again after its leader was killed",
    });
    const recoveredAt = Date.now();
    // Group b goes on a little longer, then both loops stop.
    const bAtRecovery = writes.b.length;
    await waitFor(() => writes.b.length >= bAtRecovery + 10, { message: "more writes to b" });
    stop = true;
    await Promise.all(loops);

    // Group a stalled: its longest write spans the kill.
    const aStall = Math.max(
      ...writes.a.filter((w) => w.endedAt >= killedAt).map((w) => w.endedAt - w.startedAt),
    );
    // Group b did not: it kept completing writes through a's failover, each one quickly.
    const bDuring = writes.b.filter((w) => w.startedAt >= killedAt && w.endedAt <= recoveredAt);
    const bSlowest = Math.max(...bDuring.map((w) => w.endedAt - w.startedAt));
    expect(
      bDuring.length,
      `writes to b during a's failover (${recoveredAt - killedAt} ms)`,
    ).toBeGreaterThanOrEqual(10);
    expect(bDuring.every((w) => w.ok)).toBe(true);
    expect(bSlowest).toBeLessThan(1_000);
    expect(bSlowest).toBeLessThan(aStall);
    expect(writes.b.every((w) => w.ok)).toBe(true);
    // The leader change was group a's.
    await waitFor(() => leaderChanges.includes("a"), { message: "a leaderChanged for group a" });
    expect(leaderChanges).not.toContain("b");

    // Every acknowledged write is there, in its own group.
    for (const group of GROUPS) {
      for (const [stream, count] of acked[group]) {
        const events = await collect(client.readStream(stream));
        expect(events.length, stream).toBeGreaterThanOrEqual(count);
      }
    }
    // The merged subscription got every acknowledged write of both groups, through the
    // failover of one, with no gap and no repeat within a stream.
    await waitFor(
      () =>
        GROUPS.every((group) =>
          [...acked[group]].every(
            ([stream, count]) => (received.get(stream)?.length ?? 0) >= count,
          ),
        ),
      { timeoutMs: 20_000, message: "the merged subscription has every acknowledged write" },
    );
    for (const [stream, values] of received) {
      for (let k = 1; k < values.length; k++)
        expect(values[k]!, stream).toBeGreaterThan(values[k - 1]!);
    }
  } finally {
    stop = true;
    await Promise.allSettled(loops);
    await sub.unsubscribe();
    await following;
  }
}, 90_000);
