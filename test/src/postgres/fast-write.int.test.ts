// Shared-database mode: the one-round-trip write (chorus.write_appends) stores exactly what it
// was given, whatever the characters of stream ids and event types and whatever the bytes of
// data and metadata; a database at schema version 1 is migrated on start.
import { ChorusClient, binaryEvent, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { startNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";

const CLIENT_OPTIONS = "operationTimeout=20000";

const pg = sharedPostgres();

async function readAll(client: ChorusClient, stream: string): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of client.readStream(stream, { maxCount: 10_000 })) out.push(e);
  return out;
}

describe.skipIf(!pg.runs)("the one-round-trip write on PostgreSQL", () => {
  it("stores stream ids, types, data and metadata exactly, in position order", async () => {
    const url = await pg().createDatabase();
    const node = await startNode({ databaseUrl: url });
    const client = new ChorusClient(`${node.connectionString}&${CLIENT_OPTIONS}`);
    try {
      const streams = ['q"uote', "back\\slash", "{brace},comma", "NULL", " sp ace ", "é🙂"];
      const types = ['T"1', "T\\2", "{T,3}", "NULL", "a b", "🙂"];
      const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      // The first append of each stream reads its row; the later ones are written in one
      // round trip (several streams per batch: the appends go in parallel).
      for (let round = 0; round < 4; round++) {
        await Promise.all(
          streams.map((s, i) =>
            client.appendToStream(s, [
              binaryEvent({
                type: types[(i + round) % types.length] as string,
                data: allBytes.subarray(round, 256 - round),
                metadata: new Uint8Array([0x5c, 0x22, 0x7b, 0x7d, 0, round]),
              }),
              jsonEvent({ type: "J", data: { s, round, text: 'a "b" \\ {c}' } }),
            ]),
          ),
        );
      }
      for (const [i, s] of streams.entries()) {
        const events = await readAll(client, s);
        expect(events.map((e) => e.event.revision)).toEqual([0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n]);
        for (let round = 0; round < 4; round++) {
          const bin = (events[2 * round] as ResolvedEvent).event;
          const json = (events[2 * round + 1] as ResolvedEvent).event;
          expect(bin.streamId).toBe(s);
          expect(bin.type).toBe(types[(i + round) % types.length] as string);
          expect(bin.isJson).toBe(false);
          expect(bin.data).toEqual(allBytes.subarray(round, 256 - round));
          expect(bin.metadata).toEqual(new Uint8Array([0x5c, 0x22, 0x7b, 0x7d, 0, round]));
          expect(json.data).toEqual({ s, round, text: 'a "b" \\ {c}' });
          expect(json.position).toBe(bin.position + 1n);
        }
      }
    } finally {
      await client.close();
      await node.stop();
    }
  });

  it("migrates a database at schema version 1 and writes on it", async () => {
    const url = await pg().createDatabase();
    const db = new URL(url).pathname.slice(1);
    let node = await startNode({ databaseUrl: url });
    await node.stop();
    // Back to version 1: its function only.
    await pg().psql(
      "DROP FUNCTION chorus.write_appends(text[], int8[], int8[], int8[], int8[], text[], int8[], uuid[], text[], bool[], bytea[], bytea[], int8);" +
        " UPDATE chorus.schema_version SET version = 1;",
      db,
    );
    node = await startNode({ databaseUrl: url });
    const client = new ChorusClient(`${node.connectionString}&${CLIENT_OPTIONS}`);
    try {
      expect(await pg().psql("SELECT version FROM chorus.schema_version", db)).toBe("2\n");
      for (let i = 0; i < 3; i++)
        await client.appendToStream("s", jsonEvent({ type: "T", data: { i } }));
      expect((await readAll(client, "s")).map((e) => e.event.data)).toEqual([
        { i: 0 },
        { i: 1 },
        { i: 2 },
      ]);
    } finally {
      await client.close();
      await node.stop();
    }
  });
});
