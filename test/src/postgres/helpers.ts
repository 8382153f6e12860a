/**
 * The PostgreSQL server a test file shares: started before the file's tests, stopped after.
 * Outside CI, a machine without PostgreSQL binaries skips the PostgreSQL tests (`runs` false);
 * in CI (CI=true) they run, so a missing install fails the run instead of passing it with
 * fewer tests.
 */
import { postgresSupport, startPostgres, type TestPostgresPrimary } from "@chorus/testing";
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
