/**
 * The PostgreSQL server a test file shares: started before the file's tests, stopped after;
 * and an instance that can be cut off from it.
 * Outside CI, a machine without PostgreSQL binaries skips the PostgreSQL tests (`runs` false);
 * in CI (CI=true) they run, so a missing install fails the run instead of passing it with
 * fewer tests.
 */
import {
  postgresSupport,
  startFaultProxy,
  startNode,
  startPostgres,
  type FaultProxy,
  type TestNode,
  type TestPostgres,
  type TestPostgresPrimary,
} from "@chorus/testing";
import { afterAll, beforeAll } from "vitest";

export interface SharedPostgres {
  /** Whether the file's PostgreSQL tests run here (else describe.skipIf them). */
  readonly runs: boolean;
  /** The server, once started (inside the file's tests). */
  (): TestPostgresPrimary;
}

/** Registers the hooks that start and stop the file's server; call at the top of the file. */
export function sharedPostgres(): SharedPostgres {
  const support = postgresSupport();
  let server: TestPostgresPrimary | undefined;
  beforeAll(async () => {
    if (support.ok) server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  const get = (): TestPostgresPrimary => {
    if (server === undefined)
      throw new Error(`no PostgreSQL server: ${support.ok ? "it did not start" : support.reason}`);
    return server;
  };
  return Object.assign(get, { runs: support.ok || Boolean(process.env.CI) });
}

/** An instance that reaches its database through a fault proxy, which can cut it off. */
export interface CutOffInstance {
  /** The database's own URL (for instances that reach it directly). */
  readonly url: string;
  readonly proxy: FaultProxy;
  readonly node: TestNode;
  /** Heals the proxy, stops the instance, closes the proxy. */
  stop(): Promise<void>;
}

/**
 * Creates a database on `server` and starts an instance on it through a fault proxy:
 * `proxy.blackhole()` then holds its traffic both ways (a partition: no connection is
 * closed, and the database keeps the instance's sessions).
 */
export async function startCutOffInstance(server: TestPostgresPrimary): Promise<CutOffInstance> {
  const url = await server.createDatabase();
  const proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
  const through = new URL(url);
  through.host = `${proxy.endpoint.host}:${proxy.endpoint.port}`;
  let node: TestNode;
  try {
    node = await startNode({ databaseUrl: through.toString() });
  } catch (err) {
    await proxy.close();
    throw err;
  }
  return {
    url,
    proxy,
    node,
    async stop() {
      proxy.heal();
      await node.stop();
      await proxy.close();
    },
  };
}

/** Client settings that follow instances through a database failover: retries outlast it. */
export const FAILOVER_CLIENT_OPTIONS =
  "reconnectionDelay=20&discoverDelay=20&maxDiscoverAttempts=1000&maxReconnections=10000" +
  "&operationTimeout=90000&maxRetries=1000&queueTimeout=90000";

/**
 * A database's URL (as `createDatabase` gives it) over a primary and its standby: instances
 * use whichever host takes writes (`target_session_attrs=read-write`).
 */
export function primaryAndStandbyUrl(
  databaseUrl: string,
  primary: TestPostgres,
  standby: TestPostgres,
): string {
  const single = new URL(databaseUrl);
  return (
    `postgres://${single.username}:${single.password}@${primary.host}:${primary.port},` +
    `${standby.host}:${standby.port}${single.pathname}?target_session_attrs=read-write`
  );
}
