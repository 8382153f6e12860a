// Shared-database mode: the database's disk fills up. The instance's tables live in a
// tablespace on a small tmpfs of their own (the database's default tablespace), which the test
// fills; the write-ahead log stays on the server's own disk, as on a server whose data disk
// fills first. PostgreSQL refuses to extend a table (`53100`, "could not extend file"):
// appends are answered STORAGE_FULL ("the database's disk is full"; the client's
// StorageFullError, not retried), the instance keeps serving reads and stays live, and once
// space is freed appends go through again, with no restart.
import { ChorusClient, jsonEvent, StorageFullError } from "@chorus/client";
import { mountTmpfs, startNode, waitFor, type Tmpfs } from "@chorus/testing";
import { chown, mkdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";

const pg = sharedPostgres();

const TMPFS_BYTES = 32 * 1024 * 1024;
/** Left free by the filler: less than a few of the events below. */
const LEFT_BYTES = 256 * 1024;
/** Bounds of the loop that runs into the full disk. */
const MAX_APPENDS = 2_000;

const mounted: Tmpfs | string =
  process.getuid?.() === 0 ? await mountTmpfs(TMPFS_BYTES) : "not root";

describe.skipIf(!pg.runs || typeof mounted === "string")(
  `an instance whose database's disk fills up${typeof mounted === "string" ? ` (skipped: ${mounted})` : ""}`,
  () => {
    afterAll(async () => {
      if (typeof mounted !== "string") await mounted.unmount();
    });

    it("answers appends STORAGE_FULL, naming the database, serves reads, and writes again once space is freed", async () => {
      const tmpfs = mounted as Tmpfs;
      const server = pg();
      const space = `chorus_small_${process.pid}`;
      const dir = join(tmpfs.dir, "tablespace");
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir);
      // The server runs as the postgres user: the tablespace's directory must be its own.
      const { uid, gid } = await postgresUser();
      await chown(dir, uid, gid);
      await server.psql(`CREATE TABLESPACE ${space} LOCATION '${dir}'`);
      const url = await server.createDatabase();
      const db = new URL(url).pathname.slice(1);
      await server.psql(`GRANT CREATE ON TABLESPACE ${space} TO chorus`);
      await server.psql(`ALTER DATABASE ${db} SET default_tablespace = ${space}`);
      const node = await startNode({ databaseUrl: url });
      const client = new ChorusClient(`${node.connectionString}&operationTimeout=10000`);
      const filler = join(tmpfs.dir, "filler");
      try {
        for (let i = 0; i < 20; i++)
          await client.appendToStream("before", jsonEvent({ type: "T", data: { i } }));

        const st = await statfs(tmpfs.dir);
        await writeFile(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - LEFT_BYTES), 1));
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
        // Reads go on, and the instance is live and ready.
        let read = 0;
        for await (const _ of client.readStream("before")) read++;
        expect(read).toBe(20);
        const live = await fetch(`http://${node.httpEndpoint}/health/live`);
        expect(live.status).toBe(200);

        // Space comes back: appends go through again, no restart.
        await rm(filler);
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
        await rm(filler, { force: true });
        await server.psql(`DROP DATABASE ${db}`).catch(() => undefined);
        await server.psql(`DROP TABLESPACE ${space}`).catch(() => undefined);
      }
    });
  },
);

/** The uid and gid of the `postgres` user the server runs as. */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile("/etc/passwd", "utf8"))
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (line === undefined) throw new Error("no postgres user");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}
