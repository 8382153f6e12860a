/**
 * `npm run bench -- --db postgres`: the rows on chorus-server instances sharing a PostgreSQL
 * database (a real PostgreSQL 15 the bench starts, fsync and synchronous_commit on), beside
 * two floor rows on the same server in the same run: raw INSERTs of the same events into a
 * table of the same shape, with nothing else —
 * - `append-seq-floor`: one awaited INSERT (its own transaction and WAL flush) at a time;
 * - `append-pipelined-floor`: 32 connections, each one INSERT per event.
 * `append-seq` reads as a fraction of the first; `append-pipelined` (256 in flight) as a
 * multiple of the second, which is what group commit buys.
 */
import type { EventData } from "@chorus/client";
import { startNode, startPostgres, type TestNode, type TestPostgresPrimary } from "@chorus/testing";
import { performance } from "node:perf_hooks";
import postgres from "postgres";
import { event } from "./events.js";
import { Latencies, round } from "./stats.js";

export interface PostgresBackend {
  readonly pg: TestPostgresPrimary;
  readonly nodes: TestNode[];
  /** Gossip seeds of every instance. */
  readonly connectionString: string;
  stop(): Promise<void>;
}

/** A PostgreSQL server and `instances` chorus-server instances on one fresh database. */
export async function startPostgresBackend(
  instances: number,
  nodeArgs: string[],
): Promise<PostgresBackend> {
  const pg = await startPostgres({ settings: { max_connections: 200 } });
  const nodes: TestNode[] = [];
  try {
    const url = await pg.createDatabase("bench");
    for (let i = 0; i < instances; i++)
      nodes.push(await startNode({ databaseUrl: url, startTimeoutMs: 60_000, nodeArgs }));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    await pg.stop();
    throw err;
  }
  return {
    pg,
    nodes,
    connectionString: `chorus+discover://${nodes.map((n) => n.httpEndpoint).join(",")}?tls=false`,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      await pg.stop();
    },
  };
}

/** A table shaped like the event table, with its indexes (the floor rows, the postgres peer). */
export async function createFloorTable(sql: postgres.Sql): Promise<void> {
  await sql`CREATE TABLE floor_events (
    position bigserial PRIMARY KEY, stream_id text NOT NULL, revision bigint NOT NULL,
    event_id uuid NOT NULL, event_type text NOT NULL, is_json boolean NOT NULL,
    data bytea NOT NULL, metadata bytea NOT NULL, created_ms bigint NOT NULL,
    UNIQUE (stream_id, revision), UNIQUE (stream_id, event_id))`;
}

/** One INSERT (its own transaction) of `e` into createFloorTable's table. */
export async function insertFloorEvent(
  sql: postgres.Sql,
  stream: string,
  revision: number,
  e: EventData,
): Promise<void> {
  await sql`INSERT INTO floor_events (stream_id, revision, event_id, event_type, is_json, data, metadata, created_ms)
    VALUES (${stream}, ${revision}, ${e.id}, ${e.type}, ${true}, ${Buffer.from(e.data)},
            ${Buffer.alloc(0)}, ${Date.now()})`;
}

/**
 * Raw INSERTs of bench events into a fresh table shaped like the event table (a database of
 * its own), from `connections` connections each with one INSERT in flight; `run` may be called
 * several times (warm-up, or slices interleaved with another row's).
 */
export class FloorInserts {
  /** The next event's number, also its revision (each in a stream of its own number mod 1,000). */
  #next = 0;

  private constructor(
    private readonly sql: postgres.Sql,
    private readonly connections: number,
  ) {}

  static async open(pg: TestPostgresPrimary, connections: number): Promise<FloorInserts> {
    const url = await pg.createDatabase(`floor_${connections}_${Date.now()}`);
    const sql = postgres(url, { max: connections, onnotice: () => undefined });
    try {
      await createFloorTable(sql);
    } catch (err) {
      await sql.end({ timeout: 5 });
      throw err;
    }
    return new FloorInserts(sql, connections);
  }

  /** `count` INSERTs; each one's latency into `lat` when given. Returns the seconds taken. */
  async run(count: number, lat?: Latencies): Promise<number> {
    let done = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: this.connections }, async () => {
        while (done < count) {
          done++;
          const i = this.#next++;
          const t0 = performance.now();
          await insertFloorEvent(this.sql, `floor-${i % 1000}`, i, event(i));
          lat?.record(performance.now() - t0);
        }
      }),
    );
    return (performance.now() - start) / 1000;
  }

  close(): Promise<void> {
    return this.sql.end({ timeout: 5 });
  }
}

/** `n` raw INSERTs (`warm` more first, not measured) from `connections` connections. */
export async function insertFloor(
  pg: TestPostgresPrimary,
  options: { n: number; warm: number; connections: number },
): Promise<{ ops_per_s: number; p50_ms: number; p99_ms: number }> {
  const floor = await FloorInserts.open(pg, options.connections);
  try {
    await floor.run(options.warm);
    const lat = new Latencies();
    const s = await floor.run(options.n, lat);
    return { ops_per_s: round(options.n / s), ...lat.summary() };
  } finally {
    await floor.close();
  }
}
