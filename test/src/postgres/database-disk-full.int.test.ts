// Shared-database mode: the database's disk fills up. The instance's tables live in a
// tablespace on a small tmpfs of their own (tablespace.ts), which the test fills; the
// write-ahead log stays on the server's own disk, as on a server whose data disk fills first.
// PostgreSQL refuses to extend a table (`53100`, "could not extend file"): appends are
// answered STORAGE_FULL ("the database's disk is full"; the client's StorageFullError, not
// retried), the instance keeps serving reads and stays live, and once space is freed appends
// go through again, with no restart. Before, the client got "internal error".
import { ChorusClient, jsonEvent, StorageFullError } from "@chorus/client";
import { startNode, waitFor } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";
import { tmpfsTablespace } from "./tablespace.js";

const pg = sharedPostgres();

const TABLESPACE_BYTES = 32 * 1024 * 1024;
/** Left free: room for the instances' heartbeats, not for many of the events below. */
const LEFT_BYTES = 256 * 1024;
/** Bounds the loop that runs into the full disk. */
const MAX_APPENDS = 2_000;

describe.skipIf(!pg.runs || process.getuid?.() !== 0)(
  `an instance whose database's disk fills up${process.getuid?.() !== 0 ? " (skipped: the tmpfs needs root)" : ""}`,
  () => {
    it("answers appends STORAGE_FULL, naming the database, serves reads, and writes again once space is freed", async () => {
      const server = pg();
      const url = await server.createDatabase();
      const database = new URL(url).pathname.slice(1);
      const space = await tmpfsTablespace(server, database, TABLESPACE_BYTES);
      if (typeof space === "string") throw new Error(space);
      const node = await startNode({ databaseUrl: url });
      const client = new ChorusClient(`${node.connectionString}&operationTimeout=10000`);
      try {
        for (let i = 0; i < 20; i++)
          await client.appendToStream("before", jsonEvent({ type: "T", data: { i } }));

        await space.tmpfs.fill(LEFT_BYTES);
        const pad = "x".repeat(20_000);
        let full: unknown;
        for (let i = 0; full === undefined && i < MAX_APPENDS; i++) {
          await client
            .appendToStream(`big-${i % 10}`, jsonEvent({ type: "Big", data: { i, pad } }))
            .catch((err: unknown) => (full = err));
        }
        expect(full).toBeInstanceOf(StorageFullError);
        expect((full as Error).message).toMatch(
          /^the database's disk is full \(.*No space left on device.*\): the write was not made$/,
        );
        // Reads go on, and the instance is live.
        let read = 0;
        for await (const _ of client.readStream("before")) read++;
        expect(read).toBe(20);
        expect((await fetch(`http://${node.httpEndpoint}/health/live`)).status).toBe(200);

        // Space comes back: appends go through again, no restart.
        await space.tmpfs.free();
        await waitFor(
          () =>
            client
              .appendToStream("after", jsonEvent({ type: "T", data: {} }))
              .then(() => true)
              .catch(() => false),
          { timeoutMs: 20_000, intervalMs: 200, message: "an append after space was freed" },
        );
      } finally {
        await client.close();
        await node.stop();
        await server.psql(`DROP DATABASE ${database}`).catch(() => undefined);
        await space.close();
      }
    });
  },
);
