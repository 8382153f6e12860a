// Persistent subscriptions on instances sharing a PostgreSQL database: one instance at a
// time serves the groups (an advisory lock); a consumer connected anywhere is served; the
// serving instance is SIGKILLed under writes and the consumer, staying up, gets every event
// exactly once.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";

const CLIENT_OPTIONS =
  "reconnectionDelay=20&discoverDelay=20&maxDiscoverAttempts=1000&maxReconnections=10000" +
  "&operationTimeout=30000&heartbeatInterval=200&heartbeatTimeout=1500";

const pg = sharedPostgres();

const SERVING = "serving the persistent subscription groups";

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
      const write = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) {
          const e = jsonEvent({ type: "Placed", data: { i } });
          await writer.appendToStream("orders", e);
          written.push(e.id);
        }
      };
      await write(150);
      await waitFor(() => handed.size >= 100, { timeoutMs: 20_000, message: "first deliveries" });

      const serving = nodes.find((n) => n.output().includes(SERVING)) as TestNode;
      await serving.kill();
      await write(150);
      await waitFor(() => handed.size === written.length, {
        timeoutMs: 30_000,
        message: `every event handed over (${handed.size} of ${written.length})`,
      });
      // Another instance took the groups over.
      expect(nodes.filter((n) => n !== serving && n.output().includes(SERVING))).toHaveLength(1);
      expect(new Set(handed.keys())).toEqual(new Set(written));
      const twice = [...handed].filter(([, n]) => n > 1);
      expect(twice).toEqual([]);
      await sub.unsubscribe();
      await consuming;
      expect(consumerError).toBeUndefined();
    } finally {
      await Promise.all([admin, consumerClient, writer].map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });
});
