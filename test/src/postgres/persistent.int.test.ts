// Persistent subscriptions on instances sharing a PostgreSQL database: one instance at a
// time serves the groups (an advisory lock); a consumer connected anywhere is served; the
// serving instance is SIGKILLed under writes, or cut off from the database, and the
// consumer, staying up, gets every event exactly once.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { sharedPostgres, startCutOffInstance } from "./helpers.js";

const CLIENT_OPTIONS =
  "reconnectionDelay=20&discoverDelay=20&maxDiscoverAttempts=1000&maxReconnections=10000" +
  "&operationTimeout=30000&heartbeatInterval=200&heartbeatTimeout=1500";

const pg = sharedPostgres();

const SERVING = "serving the persistent subscription groups";

/**
 * The group `billing` on `orders` (checkpointing often), one consumer that stays up and acks
 * everything it is handed, and a writer. `check` waits for every written event and asserts
 * each was handed over exactly once.
 */
async function consumedGroup(
  admin: ChorusClient,
  consumerClient: ChorusClient,
  writer: ChorusClient,
) {
  await admin.persistentSubscriptions.create("orders", "billing", {
    startFrom: "start",
    checkpointAfterMs: 100,
    minCheckpointCount: 1,
  });
  const handed = new Map<string, number>();
  const sub = consumerClient.persistentSubscriptions.subscribe("orders", "billing", {
    bufferSize: 20,
  });
  let consumerError: unknown;
  const consuming = (async () => {
    for await (const e of sub) {
      handed.set(e.event.id, (handed.get(e.event.id) ?? 0) + 1);
      void sub.ack(e);
    }
  })().catch((err: unknown) => (consumerError = err));
  const written: string[] = [];
  return {
    handed,
    written,
    async write(n: number): Promise<void> {
      for (let i = 0; i < n; i++) {
        const e = jsonEvent({ type: "Placed", data: { i } });
        await writer.appendToStream("orders", e);
        written.push(e.id);
      }
    },
    async check(): Promise<void> {
      await waitFor(() => handed.size === written.length, {
        timeoutMs: 30_000,
        message: `every event handed over (${handed.size} of ${written.length})`,
      });
      expect(new Set(handed.keys())).toEqual(new Set(written));
      expect([...handed].filter(([, n]) => n > 1)).toEqual([]);
      await sub.unsubscribe();
      await consuming;
      expect(consumerError).toBeUndefined();
    },
  };
}

describe.skipIf(!pg.runs)("persistent subscriptions on a shared database", () => {
  it("the serving instance is killed under writes: a consumer that stays up gets every event exactly once", async () => {
    const url = await pg().createDatabase();
    const nodes: TestNode[] = [];
    for (let i = 0; i < 3; i++) nodes.push(await startNode({ databaseUrl: url }));
    const connection = `chorus+discover://${nodes.map((n) => n.httpEndpoint).join(",")}?${CLIENT_OPTIONS}`;
    const admin = new ChorusClient(connection);
    const consumerClient = new ChorusClient(connection);
    const writer = new ChorusClient(connection);
    try {
      await waitFor(() => nodes.some((n) => n.output().includes(SERVING)), {
        timeoutMs: 10_000,
        message: "an instance to serve the persistent subscription groups",
      });
      const group = await consumedGroup(admin, consumerClient, writer);
      await group.write(150);
      await waitFor(() => group.handed.size >= 100, {
        timeoutMs: 20_000,
        message: "first deliveries",
      });

      const serving = nodes.find((n) => n.output().includes(SERVING)) as TestNode;
      await serving.kill();
      await group.write(150);
      await group.check();
      // Another instance took the groups over.
      expect(nodes.filter((n) => n !== serving && n.output().includes(SERVING))).toHaveLength(1);
    } finally {
      await Promise.all([admin, consumerClient, writer].map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  it("the serving instance is cut off from the database: another takes the groups over, and a consumer that stays up gets every event exactly once", async () => {
    // The first instance reaches the database through a proxy that can cut it off; the
    // second connects directly.
    const cutOff = await startCutOffInstance(pg());
    const { proxy, node: cut } = cutOff;
    const nodes: TestNode[] = [];
    const clients: ChorusClient[] = [];
    try {
      await waitFor(() => cut.output().includes(SERVING), {
        timeoutMs: 10_000,
        message: "the first instance to serve the persistent subscription groups",
      });
      const other = await startNode({ databaseUrl: cutOff.url });
      nodes.push(other);
      const connection = `chorus+discover://${cut.httpEndpoint},${other.httpEndpoint}?${CLIENT_OPTIONS}`;
      const admin = new ChorusClient(connection);
      const consumerClient = new ChorusClient(connection);
      // Writes go to the instance that can reach the database.
      const writer = new ChorusClient(`${other.connectionString}&operationTimeout=30000`);
      clients.push(admin, consumerClient, writer);
      const group = await consumedGroup(admin, consumerClient, writer);
      await group.write(100);
      await waitFor(() => group.handed.size === group.written.length, {
        timeoutMs: 20_000,
        message: "deliveries before the cut",
      });

      proxy.blackhole();
      await group.write(100);
      await waitFor(() => other.output().includes(SERVING), {
        timeoutMs: 30_000,
        message: "the instance that reaches the database to take the groups over",
      });
      await group.check();
    } finally {
      proxy.heal();
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      await cutOff.stop();
    }
  });
});
