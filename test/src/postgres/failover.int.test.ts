// A PostgreSQL primary with a synchronous standby under chorus-server instances: the primary
// is SIGKILLed under writes and the standby promoted; the instances follow through the
// multi-host URL (target_session_attrs=read-write) and every acknowledged write is there.
import { ChorusClient, jsonEvent } from "@chorus/client";
import {
  postgresSupport,
  startNode,
  startPostgres,
  waitFor,
  type TestNode,
  type TestPostgresPrimary,
  type TestPostgresStandby,
} from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { FAILOVER_CLIENT_OPTIONS, primaryAndStandbyUrl } from "./helpers.js";

const support = postgresSupport();

describe.skipIf(!support.ok && !process.env.CI)("a PostgreSQL failover under the instances", () => {
  it("primary killed, synchronous standby promoted: writes go on and every acknowledged one is there", async () => {
    // Started and stopped by this attempt (a retry starts its own).
    const primary: TestPostgresPrimary = await startPostgres();
    let standby: TestPostgresStandby | undefined;
    try {
      await failover(primary, (s) => (standby = s));
    } finally {
      await standby?.stop();
      await primary.stop();
    }
  }, 120_000);
});

async function failover(
  primary: TestPostgresPrimary,
  started: (standby: TestPostgresStandby) => void,
): Promise<void> {
  const database = await primary.createDatabase();
  const standby = await primary.startStandby({ synchronous: true });
  started(standby);
  const url = primaryAndStandbyUrl(database, primary, standby);
  const nodes: TestNode[] = [];
  for (let i = 0; i < 2; i++) nodes.push(await startNode({ databaseUrl: url }));
  let stopWriters = async (): Promise<void> => undefined;
  const client = new ChorusClient(
    `chorus+discover://${nodes.map((n) => n.httpEndpoint).join(",")}?${FAILOVER_CLIENT_OPTIONS}`,
  );
  try {
    const acknowledged: string[] = [];
    const failures: unknown[] = [];
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 2_000 && !stop; i++) {
        const e = jsonEvent({ type: "Tick", data: { w, i } });
        await client.appendToStream(`ticks-${w}`, e, { expectedVersion: "any" });
        acknowledged.push(e.id);
      }
    }).map((p) => p.catch((err: unknown) => void failures.push(err)));
    stopWriters = async () => {
      stop = true;
      await Promise.all(writers);
    };
    await waitFor(() => acknowledged.length >= 200, { timeoutMs: 20_000 });

    await primary.kill();
    const atKill = acknowledged.length;
    await standby.promote();
    await waitFor(() => acknowledged.length >= atKill + 200, {
      timeoutMs: 45_000,
      message: "writes to go on once the standby was promoted",
    }).catch((err: unknown) => {
      // What the instances said, to tell a slow promotion from instances that did not follow.
      const said = nodes.map((n, i) => `instance ${i}:\n${n.output().slice(-3000)}`).join("\n");
      throw new Error(`${String(err)}; acknowledged ${acknowledged.length}\n${said}`);
    });
    await stopWriters();
    expect(failures).toEqual([]);

    const stored = new Set<string>();
    for (let w = 0; w < 4; w++) {
      for await (const e of client.readStream(`ticks-${w}`, { maxCount: 100_000 }))
        stored.add(e.event.id);
    }
    const lost = acknowledged.filter((id) => !stored.has(id));
    expect(lost).toEqual([]);
  } finally {
    await stopWriters();
    await client.close();
    await Promise.all(nodes.map((n) => n.stop()));
  }
}
