// `chorus export` and `chorus import` (real CLI processes) against three-node clusters whose
// leader is SIGKILLed while they run: the export must still hold every event of the source, in
// `$all` order, once; the import's appends, retried through the failover with the file's event
// ids, must leave the copy with exactly the file's events, in its order, none twice.
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChorusClient, jsonEvent } from "@chorus/client";
import { getJson, startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";
import { startChorus, type ChorusProcess } from "../cli-process.js";

const STREAMS = 40;
/** Events per stream, appended in batches of BATCH. */
const PER_STREAM = 1_500;
const BATCH = 100;
const TOTAL = STREAMS * PER_STREAM;
/** The leader is killed once the CLI has done about this share of its work. */
const KILL_AT = 0.2;
/** Deadline of a CLI run, leader change included. */
const CLI_TIMEOUT_MS = 120_000;
const CLIENT_OPTIONS =
  "&operationTimeout=30000&reconnectionDelay=20&discoverDelay=20&maxReconnections=1000";

const clusters: TestCluster[] = [];
const clients: ChorusClient[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(clusters.splice(0).map((c) => c.stop()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function cluster(memDb: boolean): Promise<{ c: TestCluster; client: ChorusClient }> {
  const c = await startCluster({ size: 3, memDb });
  clusters.push(c);
  await c.leader({ timeoutMs: 20_000 });
  const client = new ChorusClient(`${c.connectionString}${CLIENT_OPTIONS}`);
  clients.push(client);
  return { c, client };
}

function chorus(args: string[]): ChorusProcess {
  return startChorus(args, CLI_TIMEOUT_MS);
}

/** Ids of the events of `$all` that are not system events, in order. */
async function idsOfAll(client: ChorusClient): Promise<string[]> {
  const ids: string[] = [];
  for await (const e of client.readAll({ timeoutMs: 30_000 }))
    if (!e.event.streamId.startsWith("$")) ids.push(e.event.id);
  return ids;
}

/** Bytes of `path` so far (0 while it does not exist). */
async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

describe("export and import through a leader's SIGKILL", () => {
  it(
    "the export holds every event once, in order; the import copies exactly those",
    { timeout: 240_000 },
    async () => {
      const source = await cluster(false);
      // Streams written a batch at a time, in turns, so that `$all` interleaves them.
      for (let b = 0; b < PER_STREAM / BATCH; b++) {
        await Promise.all(
          Array.from({ length: STREAMS }, (_, s) =>
            source.client.appendToStream(
              `transfer-${s}`,
              Array.from({ length: BATCH }, (_, i) =>
                jsonEvent({ type: "T", data: { s, n: b * BATCH + i, pad: "x".repeat(100) } }),
              ),
            ),
          ),
        );
      }
      const written = await idsOfAll(source.client);
      expect(written).toHaveLength(TOTAL);

      const dir = await mkdtemp(join(tmpdir(), "chorus-transfer-"));
      dirs.push(dir);
      const file = join(dir, "backup.jsonl");

      // The export: its leader is killed once a fifth of the file is written.
      const sourceLeader = await source.c.leader();
      const exporting = chorus([
        "--connection",
        `${source.c.connectionString}${CLIENT_OPTIONS}`,
        "export",
        "--all",
        "--out",
        file,
      ]);
      const partial = `${file}.${exporting.pid}.partial`;
      // A line is a little over 300 bytes here.
      await waitFor(async () => (await sizeOf(partial)) > TOTAL * 300 * KILL_AT, {
        timeoutMs: 60_000,
        intervalMs: 5,
        message: "the export has written a fifth of the file",
      });
      await source.c.kill(sourceLeader);
      expect(await sizeOf(partial), "the export was still running at the kill").toBeGreaterThan(0);
      await exporting.done;
      const lines = (await readFile(file, "utf8")).split("\n").filter((l) => l !== "");
      const exported = lines
        .map((l) => JSON.parse(l) as { streamId: string; eventId: string })
        .filter((r) => !r.streamId.startsWith("$"))
        .map((r) => r.eventId);
      expect(exported).toEqual(written);

      // The import: the copy's leader is killed once a fifth of the events are there.
      const copy = await cluster(true);
      const copyLeader = await copy.c.leader();
      const importing = chorus([
        "--connection",
        `${copy.c.connectionString}${CLIENT_OPTIONS}`,
        "import",
        file,
      ]);
      await waitFor(
        async () => {
          const res = await getJson(
            `http://${copy.c.nodes[copyLeader]!.httpEndpoint}/stats`,
            2_000,
          );
          return (res.body as { store: { events: number } }).store.events > TOTAL * KILL_AT;
        },
        {
          timeoutMs: 60_000,
          intervalMs: 5,
          message: "the import has copied a fifth of the events",
        },
      );
      await copy.c.kill(copyLeader);
      expect(importing.exited(), "the import was still running at the kill").toBe(false);
      await importing.done;
      const imported = await idsOfAll(copy.client);
      expect(imported.length, "events on the copy").toBe(TOTAL);
      expect(imported).toEqual(written);
    },
  );
});
