// startPostgres against real PostgreSQL servers (Debian's postgresql-15 binaries). Skips with
// the reason where there are none.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  postgresSupport,
  startPostgres,
  waitFor,
  type TestPostgres,
  type TestPostgresPrimary,
} from "./index.js";

const support = postgresSupport();
const binDir = support.ok ? support.binDir : "";

/** psql over TCP as the role and database of `url`, with its password in PGPASSWORD only. */
function psqlTcp(
  url: string,
  sql: string,
  password = decodeURIComponent(new URL(url).password),
): Promise<{ code: number; stdout: string; stderr: string }> {
  const u = new URL(url);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
  env["PGPASSWORD"] = password;
  env["PGCONNECT_TIMEOUT"] = "10";
  const args = ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-w"];
  args.push("-h", u.hostname.replace(/^\[|\]$/g, ""), "-p", u.port);
  args.push("-U", decodeURIComponent(u.username), "-d", decodeURIComponent(u.pathname.slice(1)));
  args.push("-c", sql);
  return new Promise((resolve) => {
    execFile(join(binDir, "psql"), args, { env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function psqlOk(url: string, sql: string): Promise<string> {
  const r = await psqlTcp(url, sql);
  if (r.code !== 0) throw new Error(`psql ${sql} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

const servers: TestPostgres[] = [];
function track<T extends TestPostgres>(s: T): T {
  servers.push(s);
  return s;
}
afterEach(async () => {
  // Standbys first (they were started last), so a primary never waits on one at shutdown.
  for (const s of servers.splice(0).reverse()) await s.stop();
});

describe.skipIf(!support.ok)(
  `startPostgres${support.ok ? "" : ` (skipped: ${support.reason})`}`,
  () => {
    it("serves the application role with its password over TCP, and refuses a wrong one", async () => {
      const pg = track(await startPostgres());
      expect(pg.url).toBe(`postgres://chorus:${pg.password}@127.0.0.1:${pg.port}/chorus`);
      expect(pg.pid).toBeTypeOf("number");
      expect(alive(pg.pid!)).toBe(true);
      expect(pg.dataDir.startsWith("/var/run")).toBe(false);
      expect(existsSync(join(pg.socketDir, `.s.PGSQL.${pg.port}`))).toBe(true);

      await psqlOk(pg.url, "CREATE TABLE t (id int PRIMARY KEY, v text)");
      await psqlOk(pg.url, "INSERT INTO t VALUES (1, 'one')");
      expect(await psqlOk(pg.url, "SELECT current_user || ':' || v FROM t")).toBe("chorus:one");

      const wrong = await psqlTcp(pg.url, "SELECT 1", "not-the-password");
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toMatch(/password authentication failed for user "chorus"/);

      // Superuser: over TCP with the admin URL, and through psql() on the unix socket.
      expect(await psqlOk(pg.adminUrl, "SELECT current_user")).toBe("postgres");
      expect(await pg.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'chorus';")).toBe("f\n");
      expect(await pg.psql("SHOW fsync; SHOW wal_level;")).toBe("on\nreplica\n");
      expect(await pg.psql("SELECT v FROM t;")).toBe("one\n"); // default: database chorus
      expect(await pg.psql("SELECT current_database();", "postgres")).toBe("postgres\n");

      await expect(pg.psql("SELECT * FROM no_such_table;")).rejects.toThrow(
        /psql on PostgreSQL primary .* failed[\s\S]*no_such_table/,
      );
      // The password never reached the server: the roles were created from SCRAM verifiers.
      expect(readFileSync(pg.logFile, "utf8")).not.toContain(pg.password);
    });

    it("applies settings and creates distinct usable databases", async () => {
      const pg = track(
        await startPostgres({ settings: { max_connections: 42, application_name: "it's" } }),
      );
      expect(await pg.psql("SHOW max_connections;")).toBe("42\n");
      const a = await pg.createDatabase();
      const b = await pg.createDatabase("second_db");
      expect(a).not.toBe(b);
      expect(b).toBe(`postgres://chorus:${pg.password}@127.0.0.1:${pg.port}/second_db`);
      await psqlOk(a, "CREATE TABLE only_in_a (x int)");
      expect(await psqlOk(a, "SELECT count(*) FROM only_in_a")).toBe("0");
      const inB = await psqlTcp(b, "SELECT count(*) FROM only_in_a");
      expect(inB.stderr).toMatch(/does not exist/);
      expect(
        await psqlOk(
          b,
          "SELECT current_database() || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
        ),
      ).toBe("second_db chorus");
    });

    it("keeps committed data across kill() and restart()", async () => {
      const pg = track(await startPostgres());
      await psqlOk(
        pg.url,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)",
      );
      const before = pg.pid!;
      await pg.kill();
      expect(pg.pid).toBeUndefined();
      expect(alive(before)).toBe(false);
      expect((await psqlTcp(pg.url, "SELECT 1")).code).not.toBe(0);

      await pg.restart();
      expect(pg.pid).toBeTypeOf("number");
      expect(pg.pid).not.toBe(before);
      expect(await psqlOk(pg.url, "SELECT count(*) FROM t")).toBe("1000");
      expect(readFileSync(pg.logFile, "utf8")).toMatch(/not properly shut down|automatic recovery/);

      // A clean restart too.
      await pg.shutdown();
      expect(pg.pid).toBeUndefined();
      await pg.restart();
      expect(await psqlOk(pg.url, "SELECT count(*) FROM t")).toBe("1000");
    });

    it("runs a synchronous standby that takes over after the primary is killed", async () => {
      const primary: TestPostgresPrimary = track(await startPostgres());
      const standby = track(await primary.startStandby());
      expect(standby.port).not.toBe(primary.port);
      expect(standby.password).toBe(primary.password);
      expect(
        await primary.psql(
          `SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = '${standby.applicationName}';`,
        ),
      ).toBe("streaming sync\n");
      expect(await standby.psql("SELECT pg_is_in_recovery();")).toBe("t\n");

      await psqlOk(
        primary.url,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('before failover')",
      );
      await waitFor(
        async () =>
          (await psqlTcp(standby.url, "SELECT v FROM t")).stdout.trim() === "before failover",
        { timeoutMs: 10_000, message: "the row on the standby" },
      );
      expect((await psqlTcp(standby.url, "INSERT INTO t VALUES ('x')")).stderr).toMatch(
        /read-only/,
      );

      await primary.kill();
      await standby.promote();
      await psqlOk(standby.url, "INSERT INTO t VALUES ('after failover')");
      expect(await psqlOk(standby.url, "SELECT string_agg(v, ',' ORDER BY v) FROM t")).toBe(
        "after failover,before failover",
      );
    });

    it("makes commits on the primary wait for a synchronous standby", async () => {
      const primary = track(await startPostgres());
      const standby = track(await primary.startStandby({ synchronous: true }));
      await psqlOk(primary.url, "CREATE TABLE t (v int)");
      await standby.kill();
      const insert = psqlOk(primary.url, "INSERT INTO t VALUES (1)");
      let acknowledged = false;
      void insert.then(() => (acknowledged = true));
      await waitFor(
        async () =>
          (await primary.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep';",
          )) === "1\n",
        { timeoutMs: 10_000, message: "the commit waiting for the standby (wait_event SyncRep)" },
      );
      expect(acknowledged).toBe(false);
      await standby.restart();
      await insert;
      expect(await standby.psql("SELECT count(*) FROM t;", "chorus")).toBe("1\n");
    });

    it("runs an asynchronous standby that commits do not wait for", async () => {
      const primary = track(await startPostgres());
      const standby = track(await primary.startStandby({ synchronous: false }));
      expect(
        await primary.psql(
          `SELECT sync_state FROM pg_stat_replication WHERE application_name = '${standby.applicationName}';`,
        ),
      ).toBe("async\n");
      await standby.kill();
      await psqlOk(primary.url, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
      await standby.restart();
      await waitFor(async () => (await standby.psql("SELECT count(*) FROM t;")) === "1\n", {
        timeoutMs: 10_000,
        message: "the row on the restarted standby",
      });
    });

    it("stop() kills the server and removes its directory, and is idempotent", async () => {
      const pg = await startPostgres();
      const pid = pg.pid!;
      const root = join(pg.dataDir, "..");
      await Promise.all([pg.stop(), pg.stop()]);
      expect(existsSync(pg.dataDir)).toBe(false);
      expect(existsSync(root)).toBe(false);
      expect(alive(pid)).toBe(false);
      expect(pg.pid).toBeUndefined();
      await pg.stop();
      await expect(pg.restart()).rejects.toThrow(/stopped/);
    });

    it("refuses a host that is not loopback", async () => {
      await expect(startPostgres({ host: "10.0.0.1" })).rejects.toThrow(RangeError);
    });
  },
);
