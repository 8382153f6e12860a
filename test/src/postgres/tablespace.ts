/**
 * A database whose disk can fill up: a tablespace on a small tmpfs of its own, made the
 * default tablespace of one database, so the tables an instance creates there live on it,
 * while the server's write-ahead log stays on its own disk (as on a server whose data disk
 * fills first). `tmpfs.fill()` fills it: PostgreSQL then refuses to extend a table (53100,
 * "could not extend file ... No space left on device"). Needs root (the mount); used by the
 * database-disk-full test and the soak's `db-disk-full` fault (no vitest in here).
 */
import { mountTmpfs, POSTGRES_APP_ROLE, type TestPostgres, type Tmpfs } from "@chorus/testing";
import { chown, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export interface TmpfsTablespace {
  /** The tablespace's name. */
  readonly name: string;
  /** The tmpfs it is on: `fill()` / `free()` its space. */
  readonly tmpfs: Tmpfs;
  /** Drops the tablespace (once its database is dropped) and unmounts. Idempotent. */
  close(): Promise<void>;
}

/**
 * Makes a tablespace on a fresh tmpfs of `bytes` the default of `database` (before anything
 * creates tables there), or returns why it cannot (not root, no tmpfs).
 */
export async function tmpfsTablespace(
  server: TestPostgres,
  database: string,
  bytes: number,
): Promise<TmpfsTablespace | string> {
  const tmpfs = await mountTmpfs(bytes);
  if (typeof tmpfs === "string") return tmpfs;
  const name = `chorus_small_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
  try {
    // The server runs as the postgres user: the tablespace's directory must be its own.
    const dir = join(tmpfs.dir, "tablespace");
    await mkdir(dir);
    const { uid, gid } = await postgresUser();
    await chown(dir, uid, gid);
    await server.psql(`CREATE TABLESPACE ${name} LOCATION '${dir}'`);
    await server.psql(`GRANT CREATE ON TABLESPACE ${name} TO ${POSTGRES_APP_ROLE}`);
    await server.psql(`ALTER DATABASE ${database} SET default_tablespace = ${name}`);
  } catch (err) {
    await tmpfs.unmount();
    throw err;
  }
  let closed: Promise<void> | undefined;
  return {
    name,
    tmpfs,
    close() {
      closed ??= (async () => {
        await tmpfs.free();
        await server.psql(`DROP TABLESPACE IF EXISTS ${name}`).catch(() => undefined);
        await tmpfs.unmount();
      })();
      return closed;
    },
  };
}

/** The uid and gid of the `postgres` user the server runs as. */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile("/etc/passwd", "utf8"))
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (line === undefined) throw new Error("there is no postgres user");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}
