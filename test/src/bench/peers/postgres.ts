/**
 * PostgreSQL (`"peer": "postgres"`): one INSERT (its own transaction) per event into a table
 * shaped like the event table (../postgres.ts's floor table), through a pool of 32
 * connections (the `postgres` client); fsync and synchronous_commit on. One node: a primary.
 * Three nodes: a primary and two streaming standbys with synchronous_standby_names
 * 'ANY 1 (...)', so a commit is acknowledged once the primary and one standby flushed it.
 */
import {
  postgresSupport,
  startPostgres,
  waitFor,
  type TestPostgres,
  type TestPostgresPrimary,
  type TestPostgresStandby,
} from "@chorus/testing";
import postgres from "postgres";
import { createFloorTable, insertFloorEvent } from "../postgres.js";
import { processTree } from "../proc.js";
import type { Peer, PeerSession } from "./runner.js";

/** Connections of the pool (as the `append-pipelined-floor` row of --db postgres). */
const CONNECTIONS = 32;
/** Deadline for the standbys to be the primary's quorum standbys. */
const QUORUM_TIMEOUT_MS = 30_000;

export const postgresPeer: Peer = {
  name: "postgres",
  missing() {
    const support = postgresSupport();
    return support.ok ? undefined : support.reason;
  },
  async start(nodes) {
    const primary = await startPostgres({ settings: { synchronous_commit: "on" } });
    const standbys: TestPostgresStandby[] = [];
    const stopServers = async () => {
      await Promise.allSettled(standbys.map((s) => s.stop()));
      await primary.stop();
    };
    let sql: postgres.Sql | undefined;
    try {
      if (nodes === 3) await quorumStandbys(primary, standbys);
      const url = await primary.createDatabase("peer_bench");
      sql = postgres(url, { max: CONNECTIONS, onnotice: () => undefined });
      await createFloorTable(sql);
    } catch (err) {
      await sql?.end({ timeout: 5 }).catch(() => undefined);
      await stopServers();
      throw err;
    }
    const pool = sql;
    let revision = 0;
    const servers: TestPostgres[] = [primary, ...standbys];
    const session: PeerSession = {
      tags: {
        synchronous_commit: "on",
        ...(nodes === 3 && { synchronous_standby_names: "ANY 1 (2 standbys)" }),
        connections: CONNECTIONS,
      },
      async append(stream, event) {
        await insertFloorEvent(pool, stream, revision++, event);
      },
      // Each server: its postmaster and the processes it forked (backends, WAL sender/receiver).
      servers: () => servers.map((s) => (s.pid === undefined ? [] : processTree(s.pid))),
      async stop() {
        try {
          await pool.end({ timeout: 5 });
        } finally {
          await stopServers();
        }
      },
    };
    return session;
  },
};

/** Two standbys of `primary` (pushed to `standbys`) that a commit waits for one of (ANY 1). */
async function quorumStandbys(
  primary: TestPostgresPrimary,
  standbys: TestPostgresStandby[],
): Promise<void> {
  // Both at once (each a base backup and a start): half the wait of one after the other.
  const started = await Promise.allSettled(
    [0, 1].map(() => primary.startStandby({ synchronous: false })),
  );
  for (const s of started) if (s.status === "fulfilled") standbys.push(s.value);
  const failed = started.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  const names = standbys.map((s) => `"${s.applicationName}"`).join(", ");
  await primary.psql(
    `ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (${names})';\nSELECT pg_reload_conf();`,
    "postgres",
  );
  await waitFor(
    async () =>
      (
        await primary.psql(
          "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum';",
          "postgres",
        )
      ).trim() === "2",
    {
      timeoutMs: QUORUM_TIMEOUT_MS,
      intervalMs: 50,
      message: "both standbys quorum standbys of the primary (sync_state 'quorum')",
    },
  );
}
