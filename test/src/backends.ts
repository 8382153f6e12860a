/**
 * The storage backends a single-node suite runs on, so one copy of each test runs against each:
 *
 * - `"mem-db"`: the log in memory (`--mem-db`);
 * - `"disk"`: the log in a fresh temp data directory (for suites that have always run on disk);
 * - `"postgres"`: an instance on a fresh database (`--db postgres://...`) of a PostgreSQL
 *   server shared by the test file: started on first use, stopped by `closeBackends()`;
 * - `"in-process:mem-db"`, `"in-process:disk"`: a node inside the test process (createNode),
 *   which the suite's clients reach with `withInProcessNode` instead of a socket
 *   (`clientSettings`). The node still opens its ports, for the suite's raw-protocol checks.
 *
 * Use: `describe.each(BACKENDS)("... (%s)", (backend) => { ... startBackendNode(backend) ... })`
 * and `afterAll(closeBackends)` at the top of the file.
 *
 * Positions differ between the backends: on the log, `$all` positions are byte offsets; on
 * PostgreSQL they are consecutive integers (0, 1, 2, ...; a hard delete's tombstone takes
 * one). A test may rely on their order, never on their values.
 *
 * Module state (the shared PostgreSQL server) is per test file: vitest loads this module anew
 * in each file's worker.
 */
import { ChorusClient, ConnectionSettings, type ConnectionSettingsBuilder } from "@chorus/client";
import {
  postgresSupport,
  startNode,
  startPostgres,
  type StartNodeOptions,
  type TestNode,
  type TestPostgres,
} from "@chorus/testing";

export type Backend = "mem-db" | "disk" | "postgres" | "in-process:mem-db" | "in-process:disk";

const support = postgresSupport();

/**
 * Why the PostgreSQL backend cannot run here, or undefined when it can. Outside CI, a machine
 * without PostgreSQL binaries leaves the backend out of BACKENDS; in CI (CI=true) it stays, so
 * a missing install fails the run instead of passing it with fewer tests.
 */
const POSTGRES_UNAVAILABLE: string | undefined = support.ok ? undefined : support.reason;

const withPostgres = <L extends Backend>(log: L): readonly (L | "postgres")[] =>
  POSTGRES_UNAVAILABLE === undefined || process.env["CI"] === "true" ? [log, "postgres"] : [log];

/** Today's in-memory log and PostgreSQL: the backends of a suite that starts `memDb` nodes. */
export const BACKENDS = withPostgres("mem-db");

/** The disk log and PostgreSQL: for a suite that starts nodes on temp data directories. */
export const DISK_BACKENDS = withPostgres("disk");

/** BACKENDS, and a node in the test process reached without a socket: for client suites. */
export const CLIENT_BACKENDS: readonly Backend[] = [...BACKENDS, "in-process:mem-db"];

/** DISK_BACKENDS, and an on-disk node in the test process reached without a socket. */
export const CLIENT_DISK_BACKENDS: readonly Backend[] = [...DISK_BACKENDS, "in-process:disk"];

/**
 * Connection settings that reach `node` as a client on `backend` does: in-process for the
 * in-process backends, otherwise through its HTTP endpoint.
 */
export function clientSettings(backend: Backend, node: TestNode): ConnectionSettingsBuilder {
  const builder = ConnectionSettings.create();
  if (!backend.startsWith("in-process")) return builder.withSingleNode(node.httpEndpoint);
  const embedded = node.embedded;
  if (embedded === undefined) throw new Error(`the ${backend} node is not running`);
  return builder.withInProcessNode(embedded);
}

let shared: Promise<TestPostgres> | undefined;

/**
 * Starts this file's PostgreSQL server. fsync is off: these suites crash chorus-server
 * processes, never PostgreSQL, so what a commit makes visible is the same, and stopping the
 * server skips flushing its shutdown checkpoint.
 */
function startShared(): Promise<TestPostgres> {
  const started = startPostgres({ settings: { fsync: "off" } });
  // Until someone awaits it (createBackendDatabase reports the error), a failure is no
  // unhandled rejection.
  started.catch(() => undefined);
  return started;
}

// Boots while the suite's first backend (the log) runs: initdb and the start take a second or two.
if (BACKENDS.includes("postgres")) shared = startShared();

/** A fresh database on this file's PostgreSQL server (started on first use); returns its URL. */
export async function createBackendDatabase(): Promise<string> {
  shared ??= startShared();
  const pg = await shared.catch((err: unknown) => {
    shared = undefined;
    throw err;
  });
  return pg.createDatabase();
}

/**
 * Starts a `chorus-server` process on `backend` (through @chorus/testing's startNode; `options`
 * must not choose the store itself). Stop it with `node.stop()`: a temp data directory goes
 * with it; a database stays until `closeBackends()` removes the whole PostgreSQL server.
 * `node.restart()` starts it again on the same data directory or database (never on mem-db:
 * that starts empty).
 */
export async function startBackendNode(
  backend: Backend,
  options: Omit<StartNodeOptions, "memDb" | "dataDir" | "databaseUrl" | "inProcess"> = {},
): Promise<TestNode> {
  switch (backend) {
    case "mem-db":
      return startNode({ ...options, memDb: true });
    case "disk":
      return startNode(options);
    case "postgres":
      return startNode({ ...options, databaseUrl: await createBackendDatabase() });
    case "in-process:mem-db":
      return startNode({ ...options, inProcess: true, memDb: true });
    case "in-process:disk":
      return startNode({ ...options, inProcess: true });
  }
}

/**
 * Kills `node` (SIGKILL) and starts it again on its data; returns the client to go on with:
 * `client` itself over a socket (it finds the node again by itself), and a new one from
 * `settings` in process, where a client is bound to the node object the restart replaced
 * (`client` is closed).
 */
export async function killAndRestartBackendNode(
  backend: Backend,
  node: TestNode,
  client: ChorusClient,
  settings: () => ConnectionSettings,
): Promise<ChorusClient> {
  await node.kill();
  await node.restart();
  if (!backend.startsWith("in-process")) return client;
  await client.close();
  return new ChorusClient(settings());
}

/**
 * Store options for an in-process node (@chorus/server's createNode, as the suites under
 * test/src/server start them): `{ memDb: true }` or a fresh database. No `"disk"`: the
 * in-process suites run in memory.
 */
export async function backendNodeOptions(
  backend: "mem-db" | "postgres",
): Promise<{ memDb: boolean; db?: string }> {
  return backend === "postgres"
    ? { memDb: false, db: await createBackendDatabase() }
    : { memDb: true };
}

/** Stops this file's PostgreSQL server, if one was started (removing its data). For afterAll. */
export async function closeBackends(): Promise<void> {
  const pg = shared;
  shared = undefined;
  await (await pg?.catch(() => undefined))?.stop();
}
