/**
 * The schema of the PostgreSQL backend, created or migrated at start. Several instances may
 * start at once: each migrates inside one transaction holding a transaction-level advisory
 * lock, so one of them does the work and the others find it done.
 *
 * Tables (schema `chorus`):
 * - `head`: one row, the next `$all` position. Every write transaction locks it (SELECT ...
 *   FOR UPDATE) before it assigns positions and keeps the lock until it commits, so positions
 *   are assigned in commit order: a reader that sees position p sees every position below it
 *   (docs/postgres.md has the argument).
 * - `events`: one row per event; `(stream_id, revision)` and `(stream_id, event_id)` are
 *   unique, so the database itself refuses a second event at a revision or a second copy of an
 *   event id in a stream.
 * - `streams`: per stream, its last revision and position, tombstone and current metadata
 *   (the state the stream rules decide on).
 * - `members`: the instances on this database, each heartbeating its gossip record.
 */
import type { Sql } from "postgres";

export const SCHEMA = "chorus";
/** The schema version this build writes; an older one is migrated, a newer one refused. */
export const SCHEMA_VERSION = 2;
/** The advisory lock key migrations hold (any constant; "chorus" in ASCII). */
const MIGRATION_LOCK = 0x63686f727573;

/** Migration n (1-based) brings a database at version n - 1 to version n. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE chorus.head (
    id integer PRIMARY KEY CHECK (id = 1),
    next_position bigint NOT NULL
  );
  INSERT INTO chorus.head (id, next_position) VALUES (1, 0);
  CREATE TABLE chorus.streams (
    stream_id text PRIMARY KEY,
    last_revision bigint NOT NULL,
    last_position bigint NOT NULL,
    tombstoned boolean NOT NULL DEFAULT false,
    meta text,
    version bigint NOT NULL
  );
  CREATE TABLE chorus.events (
    position bigint PRIMARY KEY,
    stream_id text NOT NULL,
    revision bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    is_json boolean NOT NULL,
    data bytea NOT NULL,
    metadata bytea NOT NULL,
    created_ms bigint NOT NULL,
    CONSTRAINT events_stream_revision UNIQUE (stream_id, revision),
    CONSTRAINT events_stream_event_id UNIQUE (stream_id, event_id)
  );
  CREATE TABLE chorus.members (
    instance_id uuid PRIMARY KEY,
    info jsonb NOT NULL,
    heartbeat_at timestamptz NOT NULL
  );
  -- The one-round-trip write of store.ts: appends decided on cached stream rows. Each
  -- stream row must still be at the version the decisions saw (else SQLSTATE CH001, and the
  -- writer decides again on fresh rows); the head is locked first, as in every write. A
  -- version is a random token the writer draws for each change, never a counter: two
  -- instances that change a row from the same state must not arrive at the same version.
  CREATE FUNCTION chorus.write_appends(
    s_id text[], s_version int8[], s_new_version int8[], s_last int8[], s_last_off int8[],
    e_off int8[], e_stream text[], e_rev int8[], e_id uuid[], e_type text[], e_json bool[],
    e_data bytea[], e_meta bytea[], e_created int8[]
  ) RETURNS int8 LANGUAGE plpgsql AS $fn$
  DECLARE
    total int8 := cardinality(e_off);
    first int8;
    changed int;
  BEGIN
    UPDATE chorus.head SET next_position = next_position + total WHERE id = 1
      RETURNING next_position - total INTO first;
    UPDATE chorus.streams s
      SET last_revision = u.last, last_position = first + u.off, version = u.newver
      FROM unnest(s_id, s_version, s_new_version, s_last, s_last_off)
        AS u(id, ver, newver, last, off)
      WHERE s.stream_id = u.id AND s.version = u.ver;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed <> cardinality(s_id) THEN
      RAISE EXCEPTION 'a stream changed since it was read' USING ERRCODE = 'CH001';
    END IF;
    INSERT INTO chorus.events
      (position, stream_id, revision, event_id, event_type, is_json, data, metadata, created_ms)
      SELECT first + u.off, u.stream, u.rev, u.id, u.type, u.json, u.data, u.meta, u.created
      FROM unnest(e_off, e_stream, e_rev, e_id, e_type, e_json, e_data, e_meta, e_created)
        AS u(off, stream, rev, id, type, json, data, meta, created);
    PERFORM pg_notify('chorus_commit', (first + total)::text);
    RETURN first;
  END
  $fn$;
  `,
  // Version 2: the one-round-trip write, cheaper per event for the database. The events'
  // offsets are their order in the arrays and their createdMs one value for the batch (two
  // arrays fewer to parse); the arrays are expanded in the select list (in step, without
  // materialising a table function's result); the stream rows are found through their index
  // (a hash join read every row of chorus.streams each batch); its statements are planned
  // once, not for every call (planning was about a fifth of a small batch's cost). Together:
  // database CPU per event 27 -> 21 us in batches of 128, 122 -> 43 us in batches of 8. The
  // version 1 function stays for instances of the previous version during a rolling upgrade
  // (same checks, same locks).
  `
  CREATE FUNCTION chorus.write_appends(
    s_id text[], s_version int8[], s_new_version int8[], s_last int8[], s_last_off int8[],
    e_stream text[], e_rev int8[], e_id uuid[], e_type text[], e_json bool[],
    e_data bytea[], e_meta bytea[], created int8
  ) RETURNS int8 LANGUAGE plpgsql
  SET enable_hashjoin = off SET enable_mergejoin = off SET plan_cache_mode = force_generic_plan
  AS $fn$
  DECLARE
    total int8 := cardinality(e_id);
    first int8;
    changed int;
  BEGIN
    UPDATE chorus.head SET next_position = next_position + total WHERE id = 1
      RETURNING next_position - total INTO first;
    UPDATE chorus.streams s
      SET last_revision = u.last, last_position = first + u.off, version = u.newver
      FROM (SELECT unnest(s_id) AS id, unnest(s_version) AS ver, unnest(s_new_version) AS newver,
                   unnest(s_last) AS last, unnest(s_last_off) AS off) u
      WHERE s.stream_id = u.id AND s.version = u.ver;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed <> cardinality(s_id) THEN
      RAISE EXCEPTION 'a stream changed since it was read' USING ERRCODE = 'CH001';
    END IF;
    INSERT INTO chorus.events
      (position, stream_id, revision, event_id, event_type, is_json, data, metadata, created_ms)
      SELECT first + generate_series(0, total - 1), unnest(e_stream), unnest(e_rev),
             unnest(e_id), unnest(e_type), unnest(e_json), unnest(e_data), unnest(e_meta), created;
    PERFORM pg_notify('chorus_commit', (first + total)::text);
    RETURN first;
  END
  $fn$;
  `,
];

export class SchemaError extends Error {
  override readonly name = "SchemaError";
}

/** Creates the schema or migrates it to SCHEMA_VERSION; returns the version found before. */
export async function migrate(sql: Sql): Promise<number> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    await tx.unsafe(
      `CREATE TABLE IF NOT EXISTS ${SCHEMA}.schema_version (version integer NOT NULL)`,
    );
    const rows = await tx<{ version: number }[]>`SELECT version FROM chorus.schema_version`;
    const found = rows[0]?.version ?? 0;
    if (found > SCHEMA_VERSION) {
      throw new SchemaError(
        `the database holds schema version ${found}, newer than this server's ${SCHEMA_VERSION}: upgrade the server`,
      );
    }
    for (let v = found; v < SCHEMA_VERSION; v++) await tx.unsafe(MIGRATIONS[v] as string);
    if (rows.length === 0)
      await tx`INSERT INTO chorus.schema_version (version) VALUES (${SCHEMA_VERSION})`;
    else await tx`UPDATE chorus.schema_version SET version = ${SCHEMA_VERSION}`;
    return found;
  });
}
