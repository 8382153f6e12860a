/**
 * Database URLs and database errors, as operators see them: which `--db` values are a
 * database, the URL with its password hidden (the only form that reaches a message or a log),
 * and what a driver error means in words.
 */
import { StoreError } from "../streams/types.js";

const SCHEMES = /^postgres(?:ql)?:\/\//i;

/** Is this `--db` value a PostgreSQL URL (postgres:// or postgresql://) rather than a directory? */
export function isDatabaseUrl(db: string): boolean {
  return SCHEMES.test(db);
}

/**
 * The URL with the password replaced by `***` (in the user info and in a `password` query
 * parameter). Works on URLs with several hosts, which URL() cannot parse.
 */
export function redactDatabaseUrl(url: string): string {
  const m = /^([a-z]+:\/\/)([^/?#]*)(.*)$/is.exec(url);
  if (m === null) return url;
  const [, scheme, authority, rest] = m as unknown as [string, string, string, string];
  const at = authority.lastIndexOf("@");
  let shown = authority;
  if (at >= 0) {
    const user = authority.slice(0, at);
    const colon = user.indexOf(":");
    shown = `${colon >= 0 ? `${user.slice(0, colon)}:***` : user}@${authority.slice(at + 1)}`;
  }
  return `${scheme}${shown}${rest.replace(/([?&]password=)[^&#]*/gi, "$1***")}`;
}

/**
 * Problems with a database URL that can be told before connecting; null when none. Each names
 * what is wrong (never the password).
 */
export function databaseUrlProblem(url: string): string | null {
  if (!isDatabaseUrl(url)) return "the URL must start with postgres:// or postgresql://";
  const m = /^[a-z]+:\/\/([^/?#]*)/is.exec(url);
  const authority = m?.[1] ?? "";
  const hosts = authority.slice(authority.lastIndexOf("@") + 1);
  if (hosts.length === 0) return "the URL names no host";
  for (const hostPort of hosts.split(",")) {
    const hp = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(hostPort);
    const host = hp?.[1] ?? "";
    const port = hp?.[2];
    if (host.length === 0) return `the URL has an empty host in "${hosts}"`;
    if (port !== undefined && !/^\d{1,5}$/.test(port))
      return `the port of ${host} is not a number: "${port}"`;
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535))
      return `the port of ${host} must be between 1 and 65535`;
  }
  const query = /\?([^#]*)/.exec(url)?.[1];
  const tsa = query === undefined ? null : new URLSearchParams(query).get("target_session_attrs");
  const known = ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"];
  if (tsa !== null && !known.includes(tsa))
    return `target_session_attrs must be one of ${known.join(", ")}; got "${tsa}"`;
  return null;
}

interface DriverError {
  code?: unknown;
  errno?: unknown;
  message?: unknown;
  address?: unknown;
  port?: unknown;
}

/** PostgreSQL SQLSTATEs and driver codes that mean "the database is not usable right now". */
const UNAVAILABLE_CODES = new Set([
  // driver (postgres.js) and socket codes
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  // class 08: connection exception
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
  // class 57: operator intervention (shutdown, crash recovery, cannot connect now, a
  // session ended for idling past idle_session_timeout), and a statement cancelled (by an
  // operator's pg_cancel_backend, or a statement_timeout): the statement was not done
  "57P01",
  "57P02",
  "57P03",
  "57P05",
  "57014",
  // a session ended for idling in a transaction past idle_in_transaction_session_timeout (a
  // slow link between two round trips of one): the transaction was rolled back
  "25P03",
  // a standby (read only) after a failover, before the driver reconnects to the new primary
  "25006",
  // too many connections, out of memory, other resources; serialization failure; deadlock
  "53300",
  "53200",
  "53000",
  "40001",
  "40P01",
]);

/**
 * StoreError UNAVAILABLE for errors that mean the database is out of reach for now, and
 * STORAGE_FULL when its disk is full (53100: the statement was not done; like a node's full
 * disk, not retried); else undefined.
 */
export function databaseStoreError(err: unknown): StoreError | undefined {
  const code = (err as DriverError | undefined)?.code;
  if (code === "53100") {
    return new StoreError(
      "STORAGE_FULL",
      `the database's disk is full (${describeDatabaseError(err)}): the write was not made`,
    );
  }
  if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) {
    return new StoreError(
      "UNAVAILABLE",
      `the database is unavailable: ${describeDatabaseError(err)}`,
    );
  }
  return undefined;
}

/** A driver error in one line: the server's message or the socket's, with its code. */
export function describeDatabaseError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as DriverError & Error;
  const code = typeof e.code === "string" ? e.code : undefined;
  switch (code) {
    case "ECONNREFUSED":
      return `connection refused${where(e)} (is PostgreSQL running there?)`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `the host name cannot be resolved${where(e)}`;
    case "CONNECT_TIMEOUT":
      return `no answer from the database within the connect timeout${where(e)}`;
    case "28P01":
    case "28000":
      return `authentication failed: ${e.message}`;
    case "3D000":
      return `${e.message} (create it first, or name another database in the URL)`;
  }
  return code === undefined ? e.message : `${e.message} (${code})`;
}

function where(e: DriverError): string {
  return typeof e.address === "string"
    ? ` at ${e.address}${typeof e.port === "number" ? `:${e.port}` : ""}`
    : "";
}
