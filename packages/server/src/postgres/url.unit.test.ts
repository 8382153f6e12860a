import { describe, expect, it } from "vitest";
import {
  databaseStoreError,
  databaseUrlProblem,
  describeDatabaseError,
  isDatabaseUrl,
  redactDatabaseUrl,
} from "./url.js";

describe("isDatabaseUrl", () => {
  it.each([
    ["postgres://h/db", true],
    ["postgresql://h/db", true],
    ["POSTGRES://h/db", true],
    ["./data", false],
    ["/var/lib/chorus", false],
    ["postgres:/h", false],
    ["mysql://h/db", false],
  ])("%s -> %s", (db, expected) => {
    expect(isDatabaseUrl(db)).toBe(expected);
  });
});

describe("redactDatabaseUrl", () => {
  it.each([
    ["postgres://chorus:s3cret@db:5432/events", "postgres://chorus:***@db:5432/events"],
    ["postgres://chorus@db/events", "postgres://chorus@db/events"],
    ["postgres://db/events", "postgres://db/events"],
    [
      "postgres://u:p%40ss@pg1:5432,pg2:5432/e?target_session_attrs=read-write",
      "postgres://u:***@pg1:5432,pg2:5432/e?target_session_attrs=read-write",
    ],
    ["postgres://u:a:b@h/e", "postgres://u:***@h/e"],
    [
      "postgres://u@h/e?sslmode=require&password=x1&a=b",
      "postgres://u@h/e?sslmode=require&password=***&a=b",
    ],
  ])("%s", (url, shown) => {
    expect(redactDatabaseUrl(url)).toBe(shown);
    expect(redactDatabaseUrl(url)).not.toMatch(/s3cret|p%40ss|x1&/);
  });
});

describe("databaseUrlProblem", () => {
  it.each([
    ["postgres://u:p@db:5432/events", null],
    ["postgres://pg1:5432,pg2:5433/e?target_session_attrs=read-write", null],
    ["postgres://[::1]:5432/e", null],
    ["postgres://db/e?target_session_attrs=primary", null],
    ["postgres:///e", "the URL names no host"],
    ["postgres://u:p@/e", "the URL names no host"],
    ["postgres://db:port/e", 'the port of db is not a number: "port"'],
    ["postgres://db:0/e", "the port of db must be between 1 and 65535"],
    ["postgres://a:1,:2/e", 'the URL has an empty host in "a:1,:2"'],
    [
      "postgres://db/e?target_session_attrs=master",
      'target_session_attrs must be one of any, read-write, read-only, primary, standby, prefer-standby; got "master"',
    ],
  ])("%s -> %s", (url, problem) => {
    expect(databaseUrlProblem(url)).toBe(problem);
  });
});

describe("database errors", () => {
  const err = (code: string, message = "boom", more: object = {}) =>
    Object.assign(new Error(message), { code, ...more });

  it("connection losses, shutdowns, ended sessions and a read-only standby are UNAVAILABLE (clients retry)", () => {
    for (const code of [
      "CONNECTION_CLOSED",
      "ECONNREFUSED",
      "57P01",
      "57P05",
      "57014",
      "25P03",
      "25006",
      "08006",
      "40001",
      "53200",
    ]) {
      expect(databaseStoreError(err(code))?.code).toBe("UNAVAILABLE");
    }
  });

  it("a full disk on the database is STORAGE_FULL, naming it", () => {
    const full = databaseStoreError(err("53100", "could not extend file: No space left on device"));
    expect(full?.code).toBe("STORAGE_FULL");
    expect(full?.message).toMatch(
      /^the database's disk is full \(.*No space left on device.*\): the write was not made$/,
    );
  });

  it("other errors are not", () => {
    expect(databaseStoreError(err("23505"))).toBeUndefined();
    expect(databaseStoreError(new Error("x"))).toBeUndefined();
    expect(databaseStoreError("x")).toBeUndefined();
  });

  it("says what a driver error means", () => {
    expect(describeDatabaseError(err("ECONNREFUSED", "x", { address: "127.0.0.1", port: 5 }))).toBe(
      "connection refused at 127.0.0.1:5 (is PostgreSQL running there?)",
    );
    expect(describeDatabaseError(err("28P01", 'password authentication failed for user "u"'))).toBe(
      'authentication failed: password authentication failed for user "u"',
    );
    expect(describeDatabaseError(err("3D000", 'database "e" does not exist'))).toBe(
      'database "e" does not exist (create it first, or name another database in the URL)',
    );
    expect(describeDatabaseError(err("XX000", "odd"))).toBe("odd (XX000)");
  });
});
