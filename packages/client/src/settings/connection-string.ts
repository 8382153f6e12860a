import { isIP } from "node:net";
import { InvalidArgumentError } from "../errors.js";
import type { Endpoint } from "../types.js";
import {
  ConnectionSettings,
  isNodePreference,
  type ConnectionSettingsBuilder,
} from "./connection-settings.js";
import {
  DEFAULT_DNS_PORT,
  DEFAULT_GOSSIP_PORT,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
} from "./defaults.js";
import { parseEndpoint } from "./endpoint.js";
import { closestKey } from "../util/options.js";

/** Query keys, lower-cased, and their canonical spelling. */
const KEYS = [
  "nodePreference",
  "maxDiscoverAttempts",
  "discoverDelay",
  "gossipTimeout",
  "operationTimeout",
  "queueTimeout",
  "maxRetries",
  "retryBudgetRatio",
  "retryBudgetMinRetriesPerSecond",
  "retryBudgetWindow",
  "maxReconnections",
  "reconnectionDelay",
  "heartbeatInterval",
  "heartbeatTimeout",
  "tls",
  "tlsCaFile",
  "tlsVerifyCert",
  "dnsServer",
  "username",
  "password",
] as const;
type Key = (typeof KEYS)[number];
const KEY_BY_LOWER = new Map<string, Key>(KEYS.map((k) => [k.toLowerCase(), k]));

function bad(message: string): never {
  throw new InvalidArgumentError(`invalid connection string: ${message}`);
}

function decode(text: string, what: string, secret = false): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return bad(
      secret
        ? `${what} is not valid percent-encoding`
        : `${what} "${text}" is not valid percent-encoding`,
    );
  }
}

function integer(key: string, value: string, min: number): number {
  if (!/^-?\d+$/.test(value)) bad(`${key}=${value}: expected an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) bad(`${key}=${value}: must be an integer >= ${min}`);
  return n;
}

function decimal(key: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value)) bad(`${key}=${value}: expected a non-negative number`);
  return Number(value);
}

function boolean(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (v === "true") return true;
  if (v === "false") return false;
  return bad(`${key}=${value}: expected true or false`);
}

/**
 * Parses a connection string:
 * - `chorus://[user:pass@]host[:port]`: one node's external HTTP endpoint (default port 2113);
 * - `chorus+discover://h1:p,h2:p`: gossip seeds; a single DNS name `name:port` means
 *   "every A/AAAA record of name is a seed (gossip on port)";
 * - `chorus+srv://name`: SRV records `_chorus._tcp.name`.
 * Query keys are case-insensitive. Throws InvalidArgumentError naming the offending part.
 */
export function parseConnectionString(connectionString: string): ConnectionSettings {
  if (typeof connectionString !== "string" || connectionString.trim() === "") {
    bad("expected a non-empty string");
  }
  const text = connectionString.trim();
  const schemeEnd = text.indexOf("://");
  if (schemeEnd < 0) bad(`missing scheme: expected chorus://, chorus+discover:// or chorus+srv://`);
  const scheme = text.slice(0, schemeEnd).toLowerCase();
  if (scheme !== "chorus" && scheme !== "chorus+discover" && scheme !== "chorus+srv") {
    bad(
      `unknown scheme "${text.slice(0, schemeEnd)}": expected chorus, chorus+discover or chorus+srv`,
    );
  }
  let rest = text.slice(schemeEnd + 3);
  if (rest.includes("#")) bad(`unexpected fragment "${rest.slice(rest.indexOf("#"))}"`);
  let query = "";
  const q = rest.indexOf("?");
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const path = rest.slice(slash);
    if (path !== "/") bad(`unexpected path "${path}"`);
    rest = rest.slice(0, slash);
  }

  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(":");
    if (colon <= 0) bad(`user info must be "username:password"`);
    username = decode(userinfo.slice(0, colon), "username");
    password = decode(userinfo.slice(colon + 1), "password", true);
  }
  if (rest === "") bad("no host given");
  const hosts = rest.split(",");
  hosts.forEach((h, i) => {
    if (h.trim() === "") bad(`empty host #${i + 1} in "${rest}"`);
  });

  const builder = ConnectionSettings.create();
  const dnsServers: Endpoint[] = [];
  let tls: boolean | undefined;
  let tlsCaFile: string | undefined;
  let tlsVerifyCert: boolean | undefined;
  let heartbeatInterval: number | undefined;
  let heartbeatTimeout: number | undefined;
  const retryBudget: { ratio?: number; minRetriesPerSecond?: number; windowMs?: number } = {};

  const seen = new Set<Key>();
  if (query !== "") {
    for (const pair of query.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      if (eq <= 0) bad(`query parameter "${pair}" must be key=value`);
      const rawKey = decode(pair.slice(0, eq), "key");
      const value = decode(
        pair.slice(eq + 1),
        `value of ${rawKey}`,
        rawKey.toLowerCase() === "password",
      );
      const key = KEY_BY_LOWER.get(rawKey.toLowerCase());
      if (!key) {
        const suggestion = closestKey(rawKey, KEYS);
        bad(
          `unknown query key "${rawKey}" (known: ${KEYS.join(", ")})` +
            (suggestion ? `; did you mean "${suggestion}"?` : ""),
        );
      }
      if (value === "") bad(`${rawKey} has an empty value`);
      if (seen.has(key) && key !== "dnsServer") bad(`${rawKey} is given more than once`);
      seen.add(key);
      applyKey(builder, key, rawKey, value, {
        dnsServer: (v) => {
          for (const part of v.split(","))
            dnsServers.push(wrap(rawKey, () => parseEndpoint(part, "dnsServer", DEFAULT_DNS_PORT)));
        },
        tls: (v) => (tls = v),
        tlsCaFile: (v) => (tlsCaFile = v),
        tlsVerifyCert: (v) => (tlsVerifyCert = v),
        heartbeatInterval: (v) => (heartbeatInterval = v),
        heartbeatTimeout: (v) => (heartbeatTimeout = v),
        retryBudgetRatio: (v) => (retryBudget.ratio = v),
        retryBudgetMinRetriesPerSecond: (v) => (retryBudget.minRetriesPerSecond = v),
        retryBudgetWindow: (v) => (retryBudget.windowMs = v),
        username: (v) => {
          if (username !== undefined) bad("username given both in the user info and the query");
          username = v;
        },
        password: (v) => {
          if (password !== undefined) bad("password given both in the user info and the query");
          password = v;
        },
      });
    }
  }

  // where the cluster is
  if (scheme === "chorus") {
    if (hosts.length > 1)
      bad(`chorus:// takes one node; use chorus+discover:// for several (got "${rest}")`);
    builder.withSingleNode(
      wrap(`host "${hosts[0]}"`, () => parseEndpoint(hosts[0]!, "host", DEFAULT_GOSSIP_PORT)),
    );
  } else if (scheme === "chorus+srv") {
    if (hosts.length > 1) bad(`chorus+srv:// takes one DNS name (got "${rest}")`);
    const name = hosts[0]!.trim();
    if (name.includes(":"))
      bad(
        `chorus+srv:// takes a DNS name without a port (SRV records give the ports), got "${name}"`,
      );
    wrap(`DNS name "${name}"`, () => builder.withClusterDns(name, { srv: true, dnsServers }));
  } else {
    const endpoints = hosts.map((h, i) =>
      wrap(`host #${i + 1} "${h}"`, () => parseEndpoint(h, "host", DEFAULT_GOSSIP_PORT)),
    );
    const only = endpoints[0]!;
    if (endpoints.length === 1 && isIP(only.host) === 0) {
      builder.withClusterDns(only.host, { gossipPort: only.port, dnsServers });
    } else {
      if (dnsServers.length > 0) bad("dnsServer applies to a DNS name, not to a list of seeds");
      builder.withGossipSeeds(endpoints);
    }
  }
  if (scheme === "chorus" && dnsServers.length > 0)
    bad("dnsServer applies to chorus+discover:// and chorus+srv:// only");

  if ((username === undefined) !== (password === undefined)) {
    bad(
      username === undefined
        ? "password given without username"
        : "username given without password",
    );
  }
  if (username !== undefined && password !== undefined) {
    wrap("username", () =>
      builder.withDefaultCredentials({ username: username!, password: password! }),
    );
  }

  if (heartbeatInterval !== undefined || heartbeatTimeout !== undefined) {
    const current = builderHeartbeat(heartbeatInterval, heartbeatTimeout);
    builder.withHeartbeat(current);
  }

  if (Object.keys(retryBudget).length > 0) {
    wrap("retry budget", () => builder.withRetryBudget(retryBudget));
  }

  if (tls === true) {
    builder.useTls({
      ...(tlsCaFile !== undefined && { caFile: tlsCaFile }),
      ...(tlsVerifyCert !== undefined && { rejectUnauthorized: tlsVerifyCert }),
    });
  } else if (tlsCaFile !== undefined || tlsVerifyCert !== undefined) {
    bad(`${tlsCaFile !== undefined ? "tlsCaFile" : "tlsVerifyCert"} needs tls=true`);
  }
  return builder.build();
}

function builderHeartbeat(
  intervalMs: number | undefined,
  timeoutMs: number | undefined,
): { intervalMs: number; timeoutMs: number } {
  return {
    intervalMs: intervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
    timeoutMs: timeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
  };
}

/** Re-throws an InvalidArgumentError from a builder call, naming the part of the string. */
function wrap<T>(part: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError) bad(`${part}: ${err.message}`);
    throw err;
  }
}

interface Sinks {
  dnsServer(value: string): void;
  tls(value: boolean): void;
  tlsCaFile(value: string): void;
  tlsVerifyCert(value: boolean): void;
  heartbeatInterval(value: number): void;
  heartbeatTimeout(value: number): void;
  retryBudgetRatio(value: number): void;
  retryBudgetMinRetriesPerSecond(value: number): void;
  retryBudgetWindow(value: number): void;
  username(value: string): void;
  password(value: string): void;
}

function applyKey(
  builder: ConnectionSettingsBuilder,
  key: Key,
  rawKey: string,
  value: string,
  sinks: Sinks,
): void {
  const apply = (fn: () => unknown) => wrap(`${rawKey}=${value}`, fn);
  switch (key) {
    case "nodePreference": {
      const pref = ["leader", "follower", "random", "readOnlyReplica"].find(
        (p) => p.toLowerCase() === value.toLowerCase(),
      );
      if (!isNodePreference(pref))
        bad(`${rawKey}=${value}: expected leader, follower, random or readOnlyReplica`);
      builder.withNodePreference(pref);
      return;
    }
    case "maxDiscoverAttempts":
      apply(() => builder.withMaxDiscoverAttempts(integer(rawKey, value, 1)));
      return;
    case "discoverDelay":
      apply(() => builder.withDiscoverDelay(integer(rawKey, value, 0)));
      return;
    case "gossipTimeout":
      apply(() => builder.withGossipTimeout(integer(rawKey, value, 1)));
      return;
    case "operationTimeout":
      apply(() => builder.withOperationTimeout(integer(rawKey, value, 1)));
      return;
    case "queueTimeout":
      apply(() => builder.withQueueTimeout(integer(rawKey, value, 1)));
      return;
    case "maxRetries": {
      const n = integer(rawKey, value, -1);
      if (n < 0) builder.keepRetrying();
      else builder.limitRetriesForOperationTo(n);
      return;
    }
    case "maxReconnections": {
      const n = integer(rawKey, value, -1);
      if (n < 0) builder.keepReconnecting();
      else builder.limitReconnectionsTo(n);
      return;
    }
    case "reconnectionDelay":
      apply(() => builder.withReconnectionDelay(integer(rawKey, value, 0)));
      return;
    case "heartbeatInterval":
      sinks.heartbeatInterval(integer(rawKey, value, 1));
      return;
    case "heartbeatTimeout":
      sinks.heartbeatTimeout(integer(rawKey, value, 1));
      return;
    case "retryBudgetRatio":
      sinks.retryBudgetRatio(decimal(rawKey, value));
      return;
    case "retryBudgetMinRetriesPerSecond":
      sinks.retryBudgetMinRetriesPerSecond(decimal(rawKey, value));
      return;
    case "retryBudgetWindow":
      sinks.retryBudgetWindow(integer(rawKey, value, 1));
      return;
    case "tls":
      sinks.tls(boolean(rawKey, value));
      return;
    case "tlsCaFile":
      sinks.tlsCaFile(value);
      return;
    case "tlsVerifyCert":
      sinks.tlsVerifyCert(boolean(rawKey, value));
      return;
    case "dnsServer":
      sinks.dnsServer(value);
      return;
    case "username":
      sinks.username(value);
      return;
    case "password":
      sinks.password(value);
      return;
  }
}
