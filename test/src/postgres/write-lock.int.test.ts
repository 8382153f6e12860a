// Shared-database mode: the read-then-write transaction reads the event ids it decides on
// under the head lock. Here another writer holds that lock while it stores an event; an
// instance that is asked to append the same event (a retry, as after a lost connection) must
// wait for the lock and then find that event, answering with its original result. Found by
// the soak (`npm run chaos -- --real --phases pg`): the ids were read before the lock was
// taken (the driver sends a transaction's statements in the order they are first awaited),
// so an event committed in between was inserted again, and the unique constraint failed the
// whole batch with "internal error".
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";

const pg = sharedPostgres();

describe.skipIf(!pg.runs)("the read-then-write transaction", () => {
  it("finds an event committed while it waited for the head lock, and answers a retry of it with its original result", async () => {
    const url = await pg().createDatabase();
    const node: TestNode = await startNode({ databaseUrl: url });
    const client = new ChorusClient(`${node.connectionString}&operationTimeout=20000`);
    const sql = postgres(url, { max: 2, onnotice: () => undefined });
    try {
      // A first event elsewhere: the instance is up and writing.
      await client.appendToStream("warm-up", jsonEvent({ type: "W", data: {} }));
      const id = randomUUID();
      const event = jsonEvent({ type: "Ordered", data: { n: 1 }, id });

      // Another writer takes the head lock and stores the event, and does not commit yet.
      const other = await sql.reserve();
      let appended: ReturnType<typeof client.appendToStream> | undefined;
      let position = -1;
      try {
        await other`BEGIN`;
        const [head] = await other<{ next_position: string }[]>`
          SELECT next_position FROM chorus.head WHERE id = 1 FOR UPDATE`;
        position = Number(head!.next_position);
        await other`INSERT INTO chorus.events (position, stream_id, revision, event_id, event_type,
            is_json, data, metadata, created_ms)
          VALUES (${position}, 'orders-1', 0, ${id}::uuid, 'Ordered', true,
            ${Buffer.from(JSON.stringify({ n: 1 }))}::bytea, ''::bytea, ${Date.now()}::int8)`;
        await other`INSERT INTO chorus.streams (stream_id, last_revision, last_position, tombstoned, meta, version)
          VALUES ('orders-1', 0, ${position}, false, NULL, 12345)`;
        await other`UPDATE chorus.head SET next_position = ${position + 1}::int8 WHERE id = 1`;

        // The instance is asked for the same event (it has never seen the stream: its
        // read-then-write path) and waits for the lock.
        appended = client.appendToStream("orders-1", event);
        appended.catch(() => undefined);
        await waitFor(
          async () => {
            const [row] = await sql<{ n: string }[]>`
              SELECT count(*) AS n FROM pg_stat_activity
              WHERE application_name LIKE 'chorus-server %' AND wait_event_type = 'Lock'`;
            return Number(row!.n) > 0;
          },
          { timeoutMs: 10_000, intervalMs: 10, message: "the instance waiting for the head lock" },
        );
        await other`COMMIT`;
      } finally {
        other.release();
      }

      const result = await appended;
      expect(result.nextExpectedVersion).toBe(0n);
      expect(result.position).toBe(BigInt(position));
      const stored = [];
      for await (const e of client.readStream("orders-1")) stored.push(e.event.id);
      expect(stored).toEqual([id]);
    } finally {
      await client.close();
      await sql.end({ timeout: 5 });
      await node.stop();
    }
  });
});
