// Partitioned deployments: a persistent subscription group on $all consumed once across two
// single-node groups (real server processes), one of them on disk, killed and restarted
// mid-way while the other keeps delivering.
import { randomUUID } from "node:crypto";
import {
  ChorusClient,
  ConnectionSettings,
  InvalidArgumentError,
  jsonEvent,
  type MergedPersistentSubscription,
  type PartitionedPersistentSubscriptionInfo,
  type PersistentEvent,
} from "@chorus/client";
import { partitionOf } from "@chorus/protocol";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { partitionArgs } from "./helpers.js";

const GROUPS = ["a", "b"] as const;
type Group = (typeof GROUPS)[number];
const WAIT = { timeoutMs: 20_000 };

let nodeA: TestNode;
/** On disk: killed and restarted by the test. */
let nodeB: TestNode;
let client: ChorusClient;

beforeAll(async () => {
  [nodeA, nodeB] = await Promise.all([
    startNode({ memDb: true, args: partitionArgs("a", GROUPS) }),
    startNode({ args: partitionArgs("b", GROUPS) }),
  ]);
  client = new ChorusClient(
    ConnectionSettings.create()
      .withPartitions({
        a: nodeA.connectionString,
        // Group b goes away for a while: its client keeps reconnecting.
        b: `${nodeB.connectionString}&maxReconnections=-1&maxRetries=-1`,
      })
      .build(),
  );
}, 60_000);

afterAll(async () => {
  await client?.close();
  await Promise.allSettled([nodeA?.stop(), nodeB?.stop()]);
});

const RUN = randomUUID().slice(0, 8);

function streamOf(owner: Group): string {
  for (let i = 0; ; i++) {
    const id = `pall-${RUN}-${i}`;
    if (partitionOf(id, GROUPS) === owner) return id;
  }
}

const STREAMS: Record<Group, string> = { a: streamOf("a"), b: streamOf("b") };

async function append(group: Group, from: number, count: number): Promise<void> {
  await client.appendToStream(
    STREAMS[group],
    Array.from({ length: count }, (_, i) => jsonEvent({ type: "Item", data: { n: from + i } })),
  );
}

/** "a:3": the event's group and number; "a:sentinel-1" for a sentinel. */
function keyOf(e: PersistentEvent): string {
  const { n } = e.event.data as { n: number | string };
  return `${e.event.partition}:${n}`;
}

/** Every event a subscription hands over, collected in the background. */
function consume(sub: MergedPersistentSubscription): {
  got: PersistentEvent[];
  done: Promise<void>;
} {
  const got: PersistentEvent[] = [];
  const done = (async () => {
    for await (const e of sub) got.push(e);
  })();
  done.catch(() => undefined);
  return { got, done };
}

const keys = (events: readonly PersistentEvent[]) => events.map(keyOf).sort();
const range = (group: Group, from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => `${group}:${from + i}`);

it("a persistent $all group consumed once across partitions, through one group's restart", async () => {
  const group = `g-${RUN}`;
  await append("a", 0, 10);
  await append("b", 0, 10);
  await client.persistentSubscriptions.create("$all", group, { startFrom: "start" });
  const acked = new Map<string, number>();
  const ack = async (sub: MergedPersistentSubscription, events: PersistentEvent[]) => {
    await sub.ack(events); // one call, events of both groups: split per group
    for (const k of events.map(keyOf)) acked.set(k, (acked.get(k) ?? 0) + 1);
  };

  // 1. Both groups deliver into one subscription; each event names its group.
  const sub1 = client.persistentSubscriptions.subscribe("$all", group, {
    bufferSize: 50,
  }) as unknown as MergedPersistentSubscription;
  const reconnecting: string[] = [];
  const resubscribed: string[] = [];
  sub1.on("reconnecting", (_err, partition) => reconnecting.push(partition));
  sub1.on("resubscribed", (partition) => resubscribed.push(partition));
  const c1 = consume(sub1);
  await waitFor(() => c1.got.length >= 20, { ...WAIT, message: "20 events from both groups" });
  expect(keys(c1.got)).toEqual([...range("a", 0, 10), ...range("b", 0, 10)].sort());
  for (const e of c1.got) expect(e.event.partition).toBe(partitionOf(e.event.streamId, GROUPS));
  // Ack all of a's and b's first five in one call; b's 5..9 stay unacknowledged.
  await ack(
    sub1,
    c1.got.filter((e) => e.event.partition === "a" || (e.event.data as { n: number }).n < 5),
  );
  const info = (await client.persistentSubscriptions.getInfo(
    "$all",
    group,
  )) as PartitionedPersistentSubscriptionInfo;
  expect(info.partitions["a"]!.consumers).toHaveLength(1);
  expect(info.partitions["b"]!.consumers).toHaveLength(1);
  expect(info.consumers).toHaveLength(2);
  // An event without a partition is refused, not sent to some group.
  const foreign = { ...c1.got[0]!, event: { ...c1.got[0]!.event, partition: undefined } };
  await expect(sub1.ack(foreign)).rejects.toBeInstanceOf(InvalidArgumentError);

  // 2. Group b's only node dies: group a keeps delivering to the same subscription.
  await nodeB.kill();
  await waitFor(() => reconnecting.includes("b"), { ...WAIT, message: "b's part reconnecting" });
  const before = c1.got.length;
  await append("a", 10, 5);
  await waitFor(() => c1.got.length >= before + 5, { ...WAIT, message: "a's events while b down" });
  const whileDown = c1.got.slice(before);
  expect(keys(whileDown)).toEqual(range("a", 10, 15).sort());
  await ack(sub1, whileDown);
  expect(reconnecting).not.toContain("a");

  // 3. Group b comes back: its part joins again by itself and delivers new events; the five
  // it still holds (handed over, not acknowledged) are not handed over a second time.
  await nodeB.restart();
  await waitFor(() => resubscribed.includes("b"), { ...WAIT, message: "b's part rejoined" });
  const afterRestart = c1.got.length;
  await append("b", 10, 3);
  await waitFor(() => c1.got.length >= afterRestart + 3, { ...WAIT, message: "b's new events" });
  const fromB = c1.got.slice(afterRestart);
  expect(keys(fromB)).toEqual(range("b", 10, 13).sort());
  await ack(sub1, fromB);
  expect(resubscribed).not.toContain("a");
  // Leave with b's 5..9 unacknowledged: they go back to the group.
  await sub1.unsubscribe();
  await c1.done;
  expect(sub1.isEnded).toBe(true);

  // 4. A new consumer gets exactly the unacknowledged ones again, before the sentinels.
  const sub2 = client.persistentSubscriptions.subscribe("$all", group, {
    bufferSize: 50,
  }) as unknown as MergedPersistentSubscription;
  const c2 = consume(sub2);
  await new Promise<void>((resolve) => sub2.once("confirmed", resolve));
  await client.appendToStream(STREAMS.a, jsonEvent({ type: "Sentinel", data: { n: "s1" } }));
  await client.appendToStream(STREAMS.b, jsonEvent({ type: "Sentinel", data: { n: "s1" } }));
  const seen = () => new Set(c2.got.map(keyOf));
  await waitFor(() => ["a:s1", "b:s1", ...range("b", 5, 10)].every((k) => seen().has(k)), {
    ...WAIT,
    message: "b's unacknowledged events and both sentinels",
  });
  const redelivered = c2.got.filter((e) => e.event.type === "Item");
  expect(keys(redelivered)).toEqual(range("b", 5, 10));
  await ack(sub2, [...c2.got]);
  await sub2.unsubscribe();
  await c2.done;

  // 5. Nothing acknowledged comes back: a third consumer gets only what is appended now.
  const sub3 = client.persistentSubscriptions.subscribe("$all", group, {
    bufferSize: 50,
  }) as unknown as MergedPersistentSubscription;
  const c3 = consume(sub3);
  await new Promise<void>((resolve) => sub3.once("confirmed", resolve));
  await client.appendToStream(STREAMS.a, jsonEvent({ type: "Sentinel", data: { n: "s2" } }));
  await client.appendToStream(STREAMS.b, jsonEvent({ type: "Sentinel", data: { n: "s2" } }));
  await waitFor(() => c3.got.length >= 2, { ...WAIT, message: "the last sentinels" });
  expect(keys(c3.got)).toEqual(["a:s2", "b:s2"]);
  await ack(sub3, [...c3.got]);
  await sub3.unsubscribe();
  await c3.done;

  // Every event was acknowledged exactly once.
  expect([...acked.values()].every((count) => count === 1)).toBe(true);
  expect(acked.size).toBe(10 + 10 + 5 + 3 + 2 + 2);
}, 120_000);
