import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import yargs from "yargs";
import { TIMING_LIMITS, heartbeatProblem } from "../cluster/timings.js";
import { databaseUrlProblem, isDatabaseUrl } from "../postgres/url.js";
import {
  DEFAULT_MAX_FRAME_BYTES as PEER_MAX_FRAME_BYTES,
  partitionListProblem,
  partitionNameProblem,
} from "@chorus/protocol";
import {
  ConfigError,
  DEFAULT_NODE_OPTIONS,
  MAX_APPEND_BYTES_LIMIT,
  PEER_FRAME_RESERVE_BYTES,
  type NodeOptions,
} from "./options.js";

type Kind =
  | "bool"
  | "string"
  | "ip"
  | "port"
  | "int"
  | "ms"
  | "size"
  | "list"
  | "names"
  | "level"
  | "hostport";

interface FlagSpec {
  readonly flag: string;
  readonly key: keyof NodeOptions | "config";
  readonly kind: Kind;
  readonly describe: string;
  readonly min?: number;
  readonly max?: number;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Every flag the server understands, in `--help` order. */
export const FLAGS: readonly FlagSpec[] = [
  {
    flag: "config",
    key: "config",
    kind: "string",
    describe: "read settings from a YAML or JSON file (kebab-case keys)",
  },
  { flag: "mem-db", key: "memDb", kind: "bool", describe: "keep data in memory only" },
  {
    flag: "db",
    key: "db",
    kind: "string",
    describe:
      "data directory (default ./data), or postgres://user@host:5432/dbname to keep everything in a shared PostgreSQL database",
  },
  { flag: "log", key: "log", kind: "string", describe: "directory for log files (stdout always)" },
  {
    flag: "log-level",
    key: "logLevel",
    kind: "level",
    describe: `log level: ${LOG_LEVELS.join("|")} (default info)`,
  },
  { flag: "int-ip", key: "intIp", kind: "ip", describe: "internal interface (default 127.0.0.1)" },
  { flag: "ext-ip", key: "extIp", kind: "ip", describe: "external interface (default 127.0.0.1)" },
  {
    flag: "int-tcp-port",
    key: "intTcpPort",
    kind: "port",
    describe: "replication and elections, WebSocket (default 1112)",
  },
  {
    flag: "ext-tcp-port",
    key: "extTcpPort",
    kind: "port",
    describe: "native client protocol, WebSocket (default 1113)",
  },
  {
    flag: "int-http-port",
    key: "intHttpPort",
    kind: "port",
    describe: "gossip between nodes (default 2112)",
  },
  {
    flag: "ext-http-port",
    key: "extHttpPort",
    kind: "port",
    describe: "HTTP API and gossip for clients (default 2113)",
  },
  {
    flag: "cluster-size",
    key: "clusterSize",
    kind: "int",
    min: 1,
    max: 99,
    describe: "voting members (default 1)",
  },
  {
    flag: "gossip-seed",
    key: "gossipSeed",
    kind: "list",
    describe: "other nodes' internal HTTP endpoints, h:p,h:p",
  },
  {
    flag: "discover-via-dns",
    key: "discoverViaDns",
    kind: "bool",
    describe: "discover peers via DNS (default: true when cluster-size > 1 and no seeds)",
  },
  {
    flag: "cluster-dns",
    key: "clusterDns",
    kind: "string",
    describe: "DNS name whose A records are the cluster's nodes",
  },
  {
    flag: "cluster-gossip-port",
    key: "clusterGossipPort",
    kind: "port",
    describe: "gossip port used with --cluster-dns (default 2112)",
  },
  {
    flag: "dns-server",
    key: "dnsServer",
    kind: "hostport",
    describe: "resolver to ask, h:p (default: the system's)",
  },
  {
    flag: "node-priority",
    key: "nodePriority",
    kind: "int",
    min: -1_000_000,
    max: 1_000_000,
    describe: "tie-breaker in elections (default 0)",
  },
  {
    flag: "ext-host-advertise-as",
    key: "extHostAdvertiseAs",
    kind: "string",
    describe: "host told to clients and nodes for the external endpoints (default: the bound IP)",
  },
  {
    flag: "int-host-advertise-as",
    key: "intHostAdvertiseAs",
    kind: "string",
    describe: "host told to other nodes for the internal endpoints (default: the bound IP)",
  },
  {
    flag: "ext-tcp-port-advertise-as",
    key: "extTcpPortAdvertiseAs",
    kind: "port",
    describe: "external TCP port told to others (default: the bound port)",
  },
  {
    flag: "ext-http-port-advertise-as",
    key: "extHttpPortAdvertiseAs",
    kind: "port",
    describe: "external HTTP port told to others (default: the bound port)",
  },
  {
    flag: "int-tcp-port-advertise-as",
    key: "intTcpPortAdvertiseAs",
    kind: "port",
    describe: "internal TCP port told to others (default: the bound port)",
  },
  {
    flag: "int-http-port-advertise-as",
    key: "intHttpPortAdvertiseAs",
    kind: "port",
    describe: "internal HTTP port told to others (default: the bound port)",
  },
  {
    flag: "read-only-replica",
    key: "readOnlyReplica",
    kind: "bool",
    describe: "non-voting, asynchronously replicated member",
  },
  {
    flag: "heartbeat-interval-ms",
    key: "heartbeatIntervalMs",
    kind: "ms",
    ...TIMING_LIMITS.heartbeatIntervalMs,
    describe: "leader heartbeat to followers; < election timeout / 2 (default 50)",
  },
  {
    flag: "election-timeout-ms",
    key: "electionTimeoutMs",
    kind: "ms",
    ...TIMING_LIMITS.electionTimeoutMs,
    describe: "t: elections after [t, 2t] without a leader; check-quorum window (default 500)",
  },
  {
    flag: "gossip-interval-ms",
    key: "gossipIntervalMs",
    kind: "ms",
    ...TIMING_LIMITS.gossipIntervalMs,
    describe: "gossip round interval; dead after 4 missed rounds (default 500)",
  },
  {
    flag: "gossip-timeout-ms",
    key: "gossipTimeoutMs",
    kind: "ms",
    ...TIMING_LIMITS.gossipTimeoutMs,
    describe: "deadline of one gossip request (default 1000)",
  },
  { flag: "insecure", key: "insecure", kind: "bool", describe: "no TLS and no authentication" },
  {
    flag: "certificate-file",
    key: "certificateFile",
    kind: "string",
    describe: "TLS certificate (PEM)",
  },
  {
    flag: "certificate-private-key-file",
    key: "certificatePrivateKeyFile",
    kind: "string",
    describe: "TLS private key (PEM)",
  },
  {
    flag: "trusted-root-certificates-path",
    key: "trustedRootCertificatesPath",
    kind: "string",
    describe: "CA certificates (PEM file or directory) trusted for peers",
  },
  {
    flag: "admin-password",
    key: "adminPassword",
    kind: "string",
    describe: "enables authentication, user admin (or CHORUS_ADMIN_PASSWORD)",
  },
  {
    flag: "idempotency-window",
    key: "idempotencyWindow",
    kind: "int",
    min: 0,
    max: 100_000_000,
    describe:
      "recent event ids cached in memory in front of the event-id index; idempotency does not depend on it (default 100000)",
  },
  {
    flag: "stream-cache",
    key: "streamCache",
    kind: "int",
    min: 1,
    max: 100_000_000,
    describe:
      "stream states kept in memory; every stream's index is on disk, so this bounds memory, not the number of streams (default 100000)",
  },
  {
    flag: "max-frame-bytes",
    key: "maxFrameBytes",
    kind: "size",
    min: 1024,
    max: 1024 ** 3,
    describe: "largest native frame / HTTP body, e.g. 16MiB (default 16MiB)",
  },
  {
    flag: "max-append-bytes",
    key: "maxAppendBytes",
    kind: "size",
    min: 1024,
    max: MAX_APPEND_BYTES_LIMIT,
    describe:
      "largest append in bytes as stored; must fit one replication frame (default 1MiB, at most 16MiB - 64KiB)",
  },
  {
    flag: "max-client-connections",
    key: "maxClientConnections",
    kind: "int",
    min: 1,
    max: 1_000_000,
    describe:
      "client connections (native and HTTP) held at most; more are refused with 503 (default 10000, lowered to what the open-files limit leaves)",
  },
  {
    flag: "receive-budget-bytes",
    key: "receiveBudgetBytes",
    kind: "size",
    min: 1024,
    max: 64 * 1024 ** 3,
    describe:
      "unfinished input (partial frames) held from all clients together; past it the connection holding the most is closed (default 256MiB, at least --max-frame-bytes)",
  },
  {
    flag: "send-budget-bytes",
    key: "sendBudgetBytes",
    kind: "size",
    min: 1024,
    max: 64 * 1024 ** 3,
    describe:
      "unsent output (answers, pushed events) held for all native clients together; past it the connection holding the most is closed (default 512MiB, at least twice --max-frame-bytes)",
  },
  {
    flag: "partition",
    key: "partition",
    kind: "string",
    describe: "this replication group's name, one of --partitions (partitioned deployments)",
  },
  {
    flag: "partitions",
    key: "partitions",
    kind: "names",
    describe: "every replication group's name, A,B,C; streams of other groups are refused",
  },
];

const FLAG_BY_NAME = new Map(FLAGS.map((f) => [f.flag, f]));

/** Flags of other event stores that Chorus deliberately does not have. */
const UNSUPPORTED: Record<string, string> = {
  "run-projections": "--run-projections is not supported: Chorus has no projections",
  "start-standard-projections":
    "--start-standard-projections is not supported: Chorus has no projections",
};

/** createNode options the design names that this server does not have yet: refused, not ignored. */
const UNSUPPORTED_NODE_OPTIONS: Readonly<Record<string, string>> = {};

export type CommandLine =
  | { readonly kind: "run"; readonly options: NodeOptions }
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "version" };

export interface ParseConfigDeps {
  /** Defaults to process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Defaults to fs.readFileSync(path, "utf8"). */
  readonly readFile?: (path: string) => string;
}

/** The environment variable of a flag: `ext-tcp-port` -> `CHORUS_EXT_TCP_PORT`. */
export function envNameOf(flag: string): string {
  return `CHORUS_${flag.toUpperCase().replace(/-/g, "_")}`;
}

interface RawValue {
  readonly value: unknown;
  /** Where the value came from, for error messages: "--db", "CHORUS_DB", "config file x.yaml". */
  readonly source: string;
}

/**
 * Parses a command line (without the node binary and script), the environment and an optional
 * config file into one frozen NodeOptions. Precedence: command line > environment > file >
 * defaults. Throws ConfigError (exit code 2) naming the offending flag.
 */
export function parseConfig(argv: readonly string[], deps: ParseConfigDeps = {}): CommandLine {
  const env = deps.env ?? process.env;
  const readFile = deps.readFile ?? ((path: string) => readFileSync(path, "utf8"));

  if (argv.includes("--help") || argv.includes("-h")) return { kind: "help", text: helpText() };
  if (argv.includes("--version")) return { kind: "version" };

  const cli = parseArgv(argv);
  const envLayer = new Map<string, RawValue>();
  for (const spec of FLAGS) {
    const name = envNameOf(spec.flag);
    const value = env[name];
    if (value !== undefined && value !== "") envLayer.set(spec.flag, { value, source: name });
  }

  const configPath = cli.get("config") ?? envLayer.get("config");
  const fileLayer = configPath ? readConfigFile(configPath, readFile) : new Map<string, RawValue>();

  const partial: Record<string, unknown> = {};
  for (const spec of FLAGS) {
    if (spec.key === "config") continue;
    const raw = cli.get(spec.flag) ?? envLayer.get(spec.flag) ?? fileLayer.get(spec.flag);
    if (raw === undefined) continue;
    partial[spec.key] = convert(spec, raw);
  }
  return { kind: "run", options: resolveNodeOptions(partial) };
}

function parseArgv(argv: readonly string[]): Map<string, RawValue> {
  // Checks yargs does not make: unsupported flags get their own message, and a boolean given a
  // value that is not true/false is an error (yargs would silently read it as false).
  for (const arg of argv) {
    if (!arg.startsWith("--")) continue;
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const bare = name.startsWith("no-") && !FLAG_BY_NAME.has(name) ? name.slice(3) : name;
    const unsupported = UNSUPPORTED[bare];
    if (unsupported) throw new ConfigError(unsupported);
    const spec = FLAG_BY_NAME.get(bare);
    if (!spec) throw new ConfigError(`unknown flag --${name} (see --help)`);
    if (spec.kind === "bool" && eq >= 0) {
      parseBool(spec, { value: arg.slice(eq + 1), source: `--${spec.flag}` });
    }
  }

  let parser = yargs([...argv])
    .exitProcess(false)
    .help(false)
    .version(false)
    .strict()
    .parserConfiguration({
      "camel-case-expansion": false,
      "duplicate-arguments-array": false,
      "dot-notation": false,
      "parse-numbers": false,
      "parse-positional-numbers": false,
    })
    .fail((msg: string | undefined, err: Error | undefined) => {
      const text = msg ?? err?.message ?? "invalid command line";
      const unknown = /^Unknown arguments?: (.*)$/.exec(text);
      if (unknown) throw new ConfigError(`unexpected argument ${unknown[1] ?? ""} (see --help)`);
      throw new ConfigError(text);
    });
  for (const spec of FLAGS) {
    parser = parser.option(spec.flag, { type: spec.kind === "bool" ? "boolean" : "string" });
  }
  const parsed = parser.parseSync() as Record<string, unknown>;
  const positional = parsed["_"];
  if (Array.isArray(positional) && positional.length > 0) {
    throw new ConfigError(`unexpected argument ${String(positional[0])} (see --help)`);
  }
  const result = new Map<string, RawValue>();
  for (const spec of FLAGS) {
    const value = parsed[spec.flag];
    if (value === undefined) continue;
    if (spec.kind !== "bool" && value === "") {
      throw new ConfigError(`--${spec.flag} needs a value`);
    }
    result.set(spec.flag, { value, source: `--${spec.flag}` });
  }
  return result;
}

function readConfigFile(raw: RawValue, readFile: (path: string) => string): Map<string, RawValue> {
  const path = String(raw.value);
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw new ConfigError(
      `cannot read config file ${path} (from ${raw.source}): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  let doc: unknown;
  try {
    doc = extname(path).toLowerCase() === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      `config file ${path} is not valid ${extname(path).toLowerCase() === ".json" ? "JSON" : "YAML"}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (doc === null || doc === undefined) return new Map();
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`config file ${path} must hold a mapping of flag names to values`);
  }
  const result = new Map<string, RawValue>();
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const unsupported = UNSUPPORTED[key];
    if (unsupported) throw new ConfigError(`${unsupported} (config file ${path})`);
    const spec = FLAG_BY_NAME.get(key);
    if (!spec)
      throw new ConfigError(
        `unknown key "${key}" in config file ${path} (keys are flag names, e.g. ext-tcp-port)`,
      );
    if (spec.flag === "config")
      throw new ConfigError(`config file ${path} must not name another config file`);
    if (value === null || value === undefined) continue;
    result.set(key, { value, source: `config file ${path}` });
  }
  return result;
}

function invalid(spec: FlagSpec, raw: RawValue, why: string): ConfigError {
  const origin = raw.source === `--${spec.flag}` ? "" : ` (from ${raw.source})`;
  return new ConfigError(`invalid value for --${spec.flag}${origin}: ${why}`);
}

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(JSON.stringify(value));
}

function parseBool(spec: FlagSpec, raw: RawValue): boolean {
  const v = raw.value;
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const s = v.trim().toLowerCase();
    if (s === "true" || s === "1" || s === "yes") return true;
    if (s === "false" || s === "0" || s === "no") return false;
  }
  throw invalid(spec, raw, `${show(v)} is not true or false`);
}

function parseInteger(
  spec: FlagSpec,
  raw: RawValue,
  min: number,
  max: number,
  what: string,
): number {
  const v = raw.value;
  const n =
    typeof v === "number" ? v : typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(spec, raw, `${show(v)} is not ${what} (${min}-${max})`);
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

function parseSize(spec: FlagSpec, raw: RawValue): number {
  const v = raw.value;
  const min = spec.min ?? 0;
  const max = spec.max ?? Number.MAX_SAFE_INTEGER;
  let n = NaN;
  if (typeof v === "number") n = v;
  else if (typeof v === "string") {
    const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(v);
    const unit = m ? SIZE_UNITS[(m[2] ?? "").toLowerCase()] : undefined;
    if (m && unit !== undefined) n = Number(m[1]) * unit;
  }
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(
      spec,
      raw,
      `${show(v)} is not a size between ${min} and ${max} bytes (e.g. 65536, 64KiB, 16MiB)`,
    );
  }
  return n;
}

function parseHostPort(spec: FlagSpec, raw: RawValue, text: string): string {
  const m = /^(\[[^\]]+\]|[^:\s]+):(\d+)$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(spec, raw, `${show(text)} is not host:port`);
  }
  return text.trim();
}

function convert(spec: FlagSpec, raw: RawValue): unknown {
  const v = raw.value;
  switch (spec.kind) {
    case "bool":
      return parseBool(spec, raw);
    case "port":
      return parseInteger(spec, raw, 0, 65535, "a port");
    case "int":
      return parseInteger(
        spec,
        raw,
        spec.min ?? -Number.MAX_SAFE_INTEGER,
        spec.max ?? Number.MAX_SAFE_INTEGER,
        "an integer",
      );
    case "ms":
      return parseInteger(
        spec,
        raw,
        spec.min ?? 0,
        spec.max ?? Number.MAX_SAFE_INTEGER,
        "a whole number of milliseconds",
      );
    case "size":
      return parseSize(spec, raw);
    case "ip": {
      const s = typeof v === "string" ? v.trim() : "";
      if (isIP(s) === 0) throw invalid(spec, raw, `${show(v)} is not an IP address`);
      return s;
    }
    case "level": {
      const s = typeof v === "string" ? v.trim().toLowerCase() : "";
      if (!(LOG_LEVELS as readonly string[]).includes(s)) {
        throw invalid(spec, raw, `${show(v)} is not one of ${LOG_LEVELS.join(", ")}`);
      }
      return s;
    }
    case "hostport":
      if (typeof v !== "string") throw invalid(spec, raw, `${show(v)} is not host:port`);
      return parseHostPort(spec, raw, v);
    case "list": {
      const items = Array.isArray(v) ? v.map(String) : typeof v === "string" ? v.split(",") : null;
      if (!items) throw invalid(spec, raw, `${show(v)} is not a list of host:port`);
      return Object.freeze(
        items.filter((s) => s.trim() !== "").map((s) => parseHostPort(spec, raw, s)),
      );
    }
    case "names": {
      const items = Array.isArray(v) ? v.map(String) : typeof v === "string" ? v.split(",") : null;
      if (!items) throw invalid(spec, raw, `${show(v)} is not a list of names`);
      return Object.freeze(items.map((s) => s.trim()).filter((s) => s !== ""));
    }
    case "string":
      if (typeof v !== "string" && typeof v !== "number")
        throw invalid(spec, raw, `${show(v)} is not a string`);
      if (String(v) === "") throw invalid(spec, raw, "must not be empty");
      return String(v);
  }
}

/** The host part of "host:port" / "[v6]:port". */
function dnsServerHost(hostPort: string): string {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):\d+$/.exec(hostPort.trim());
  return m?.[1] ?? m?.[2] ?? "";
}

export function isLoopback(ip: string): boolean {
  return (
    ip === "::1" ||
    ip === "localhost" ||
    /^127\.\d+\.\d+\.\d+$/.test(ip) ||
    /^::ffff:127\./i.test(ip)
  );
}

/**
 * Applies defaults to a partial set of options, validates the combination and freezes the
 * result. Used by parseConfig and by createNode (the embedded API). Throws ConfigError.
 */
export function resolveNodeOptions(partial: Partial<NodeOptions>): NodeOptions {
  // An unknown key (a misspelling, an option of another version) is refused, never dropped.
  if (typeof partial !== "object" || partial === null || Array.isArray(partial))
    throw new ConfigError(`node options must be an object, got ${show(partial)}`);
  const known = Object.keys(DEFAULT_NODE_OPTIONS);
  for (const key of Object.keys(partial)) {
    if (Object.hasOwn(DEFAULT_NODE_OPTIONS, key)) continue;
    const why = Object.hasOwn(UNSUPPORTED_NODE_OPTIONS, key) && UNSUPPORTED_NODE_OPTIONS[key];
    if (why) throw new ConfigError(`node option "${key}" is not supported yet: ${why}`);
    throw new ConfigError(`unknown node option "${key}" (known: ${known.sort().join(", ")})`);
  }
  const defined = Object.fromEntries(
    Object.entries(partial).filter(([, v]) => v !== undefined),
  ) as Partial<NodeOptions>;
  const o: NodeOptions = { ...DEFAULT_NODE_OPTIONS, ...defined };
  const problems: string[] = [];
  for (const key of [
    "intTcpPort",
    "extTcpPort",
    "intHttpPort",
    "extHttpPort",
    "clusterGossipPort",
  ] as const) {
    const p = o[key];
    if (!Number.isInteger(p) || p < 0 || p > 65535)
      problems.push(`${key} must be a port (0-65535), got ${String(p)}`);
  }
  for (const key of [
    "extTcpPortAdvertiseAs",
    "extHttpPortAdvertiseAs",
    "intTcpPortAdvertiseAs",
    "intHttpPortAdvertiseAs",
  ] as const) {
    const p = o[key];
    if (p !== null && (!Number.isInteger(p) || p < 1 || p > 65535))
      problems.push(`${key} must be a port (1-65535), got ${String(p)}`);
  }
  for (const key of ["intIp", "extIp"] as const) {
    if (isIP(o[key]) === 0) problems.push(`${key} must be an IP address, got ${show(o[key])}`);
  }
  if (!Number.isInteger(o.maxFrameBytes) || o.maxFrameBytes < 1024 || o.maxFrameBytes > 1024 ** 3) {
    problems.push(
      `maxFrameBytes must be between 1024 and ${1024 ** 3}, got ${String(o.maxFrameBytes)}`,
    );
  }
  if (
    !Number.isInteger(o.maxAppendBytes) ||
    o.maxAppendBytes < 1024 ||
    o.maxAppendBytes > MAX_APPEND_BYTES_LIMIT
  ) {
    problems.push(
      `maxAppendBytes must be between 1024 and ${MAX_APPEND_BYTES_LIMIT} (a batch must fit one ${PEER_MAX_FRAME_BYTES}-byte replication frame with ${PEER_FRAME_RESERVE_BYTES} bytes to spare), got ${String(o.maxAppendBytes)}`,
    );
  }
  if (
    !Number.isInteger(o.maxClientConnections) ||
    o.maxClientConnections < 1 ||
    o.maxClientConnections > 1_000_000
  ) {
    problems.push(
      `maxClientConnections must be between 1 and 1000000, got ${String(o.maxClientConnections)}`,
    );
  }
  if (
    !Number.isInteger(o.receiveBudgetBytes) ||
    o.receiveBudgetBytes < o.maxFrameBytes ||
    o.receiveBudgetBytes > 64 * 1024 ** 3
  ) {
    problems.push(
      `receiveBudgetBytes must be at least maxFrameBytes (${String(o.maxFrameBytes)}; one whole frame must fit) and at most ${64 * 1024 ** 3}, got ${String(o.receiveBudgetBytes)}`,
    );
  }
  if (
    !Number.isInteger(o.sendBudgetBytes) ||
    o.sendBudgetBytes < 2 * o.maxFrameBytes ||
    o.sendBudgetBytes > 64 * 1024 ** 3
  ) {
    problems.push(
      `sendBudgetBytes must be at least twice maxFrameBytes (${String(2 * o.maxFrameBytes)}; a connection's high-water mark and a whole frame must fit) and at most ${64 * 1024 ** 3}, got ${String(o.sendBudgetBytes)}`,
    );
  }
  if (!Number.isInteger(o.clientPingIntervalMs) || o.clientPingIntervalMs < 10) {
    problems.push(
      `clientPingIntervalMs must be an integer >= 10, got ${String(o.clientPingIntervalMs)}`,
    );
  }
  for (const [key, flag, limits] of [
    ["heartbeatIntervalMs", "heartbeat-interval-ms", TIMING_LIMITS.heartbeatIntervalMs],
    ["electionTimeoutMs", "election-timeout-ms", TIMING_LIMITS.electionTimeoutMs],
    ["gossipIntervalMs", "gossip-interval-ms", TIMING_LIMITS.gossipIntervalMs],
    ["gossipTimeoutMs", "gossip-timeout-ms", TIMING_LIMITS.gossipTimeoutMs],
  ] as const) {
    const ms = o[key];
    if (!Number.isInteger(ms) || ms < limits.min || ms > limits.max)
      problems.push(
        `${key} (--${flag}) must be ${limits.min}-${limits.max} milliseconds, got ${String(ms)}`,
      );
  }
  if (!Number.isInteger(o.idempotencyWindow) || o.idempotencyWindow < 0) {
    problems.push(
      `idempotencyWindow must be a non-negative integer, got ${String(o.idempotencyWindow)}`,
    );
  }
  if (!Number.isInteger(o.streamCache) || o.streamCache < 1) {
    problems.push(`streamCache must be an integer >= 1, got ${String(o.streamCache)}`);
  }
  if (!o.memDb && (typeof o.db !== "string" || o.db === ""))
    problems.push("db must name a directory");
  if (!Array.isArray(o.partitions)) problems.push(`partitions must be a list of names`);
  if (problems.length > 0) throw new ConfigError(`invalid options: ${problems.join("; ")}`);
  const heartbeat = heartbeatProblem(o.heartbeatIntervalMs, o.electionTimeoutMs);
  if (heartbeat !== undefined) throw new ConfigError(heartbeat);

  // Shared-database mode: every instance on the database is a member, found through it; the
  // flags of a replicated cluster or of a local store make no sense with it.
  if (typeof o.db === "string" && isDatabaseUrl(o.db)) {
    const problem = databaseUrlProblem(o.db);
    if (problem !== null) throw new ConfigError(`invalid value for --db: ${problem}`);
    const clash = (flag: string, why: string): ConfigError =>
      new ConfigError(`${flag} cannot be used with a database URL in --db: ${why}`);
    const found =
      "instances on a shared database are members of one cluster, found through the database";
    if (o.memDb) throw clash("--mem-db", "the data lives in the database");
    if (o.clusterSize > 1) throw clash("--cluster-size", found);
    if (o.gossipSeed.length > 0) throw clash("--gossip-seed", found);
    if (o.clusterDns !== null) throw clash("--cluster-dns", found);
    if (o.readOnlyReplica)
      throw clash("--read-only-replica", "every instance on a shared database takes writes");
  }

  checkPartitions(o.partition, o.partitions);

  // A node that opens no port serves clients in its own process only: nothing else can reach it.
  if (typeof o.listen !== "boolean")
    throw new ConfigError(`listen must be true or false, got ${show(o.listen)}`);
  if (!o.listen) {
    const alone = (what: string): ConfigError =>
      new ConfigError(
        `listen: false cannot be used with ${what}: a node that opens no port is a single node, reached only by clients in its own process`,
      );
    if (o.clusterSize > 1) throw alone(`clusterSize ${o.clusterSize}`);
    if (o.gossipSeed.length > 0) throw alone("gossipSeed");
    if (o.clusterDns !== null) throw alone("clusterDns");
    if (o.readOnlyReplica) throw alone("readOnlyReplica");
    if (typeof o.db === "string" && !o.memDb && isDatabaseUrl(o.db))
      throw alone("a database URL in db (instances on a shared database reach each other)");
  }

  // Clustering: a fixed set of --cluster-size voters found through --gossip-seed and/or DNS
  // (--cluster-dns: the name's A/AAAA records, on --cluster-gossip-port). A read-only replica
  // joins such a cluster as a non-voting learner (--cluster-size still counts the voters only).
  // DNS discovery defaults to on for a cluster without seeds, or when --cluster-dns is given.
  const discoverViaDns =
    partial.discoverViaDns ??
    (o.clusterSize > 1 && (o.gossipSeed.length === 0 || o.clusterDns !== null));
  if (o.readOnlyReplica && o.clusterSize <= 1) {
    throw new ConfigError(
      "--read-only-replica needs a cluster to follow: give --cluster-size (the number of voters, the replica not included) with --gossip-seed or --cluster-dns",
    );
  }
  // TLS between nodes: each node presents its certificate to its peers and verifies theirs
  // against the trusted roots, so a cluster with certificates needs those roots.
  if (
    o.clusterSize > 1 &&
    o.certificateFile !== null &&
    !o.insecure &&
    o.trustedRootCertificatesPath === null
  ) {
    throw new ConfigError(
      "a cluster node with --certificate-file needs --trusted-root-certificates-path (the CA certificates that signed the members' certificates), to verify its peers and to let only members in",
    );
  }
  if (o.clusterSize <= 1 && o.gossipSeed.length > 0) {
    throw new ConfigError(
      "--gossip-seed needs --cluster-size > 1 (clustering is not available yet for a single node with seeds)",
    );
  }
  if (o.clusterSize <= 1 && o.clusterDns !== null) {
    throw new ConfigError(
      "--cluster-dns needs --cluster-size > 1 (a single node discovers no peers)",
    );
  }
  if (o.clusterSize > 1 && discoverViaDns && o.clusterDns === null && o.gossipSeed.length === 0) {
    throw new ConfigError(
      `--cluster-size ${o.clusterSize} with DNS discovery needs --cluster-dns NAME (the DNS name whose A/AAAA records are the cluster's nodes); or give --gossip-seed, with --discover-via-dns=false`,
    );
  }
  if (o.clusterDns !== null && !discoverViaDns) {
    throw new ConfigError(
      "--cluster-dns is given but --discover-via-dns=false turns DNS discovery off",
    );
  }
  if (o.clusterSize > 1 && !discoverViaDns && o.gossipSeed.length === 0) {
    throw new ConfigError(
      `--cluster-size ${o.clusterSize} needs --gossip-seed or --cluster-dns (with --discover-via-dns=false there is no other way to find the peers)`,
    );
  }
  if (o.clusterSize > 1 && discoverViaDns && o.clusterDns === null) {
    throw new ConfigError(
      "--discover-via-dns=true needs --cluster-dns NAME (the DNS name whose A/AAAA records are the cluster's nodes)",
    );
  }
  if (
    o.clusterDns !== null &&
    !/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/.test(o.clusterDns)
  ) {
    throw new ConfigError(`--cluster-dns must be a DNS name, got ${show(o.clusterDns)}`);
  }
  if (o.clusterSize > 1 && discoverViaDns && o.clusterGossipPort < 1) {
    throw new ConfigError("--cluster-gossip-port must be a port (1-65535) for DNS discovery");
  }
  if (o.dnsServer !== null && isIP(dnsServerHost(o.dnsServer)) === 0) {
    throw new ConfigError(
      `--dns-server must be ip:port (an IP address, not a name), got ${show(o.dnsServer)}`,
    );
  }
  if (
    o.clusterSize > 1 &&
    (o.intIp === "0.0.0.0" || o.intIp === "::") &&
    o.intHostAdvertiseAs === null
  ) {
    throw new ConfigError(
      `a cluster node binding --int-ip ${o.intIp} needs --int-host-advertise-as (its identity is the advertised internal TCP endpoint)`,
    );
  }

  if ((o.certificateFile === null) !== (o.certificatePrivateKeyFile === null)) {
    throw new ConfigError(
      "TLS needs both --certificate-file and --certificate-private-key-file (only one was given)",
    );
  }
  const external = [o.extIp, o.intIp].filter((ip) => !isLoopback(ip));
  const secured = o.certificateFile !== null && o.adminPassword !== null;
  if (external.length > 0 && !secured && !o.insecure) {
    throw new ConfigError(
      `refusing to start: the node would listen on ${[...new Set(external)].join(", ")} (not loopback) ` +
        "without TLS and authentication; give --certificate-file, --certificate-private-key-file " +
        "and --admin-password, or --insecure to run unprotected",
    );
  }
  return Object.freeze({
    ...o,
    discoverViaDns,
    gossipSeed: Object.freeze([...o.gossipSeed]),
    partitions: Object.freeze([...o.partitions]),
    // --insecure turns TLS and authentication off, whatever else is configured.
    ...(o.insecure
      ? { certificateFile: null, certificatePrivateKeyFile: null, adminPassword: null }
      : {}),
  });
}

/**
 * Partitioned deployments: --partition and --partitions come together, the names are valid
 * and distinct, and this group's name is in the list (a node of a group the list does not
 * name would refuse every stream, or accept streams another group owns).
 */
function checkPartitions(partition: string | null, partitions: readonly string[]): void {
  if (partition === null && partitions.length === 0) return;
  if (partition === null) {
    throw new ConfigError(
      "--partitions needs --partition NAME (this replication group's name, one of --partitions)",
    );
  }
  if (partitions.length === 0) {
    throw new ConfigError(
      `--partition ${partition} needs --partitions A,B,C (every replication group's name, ${partition} among them)`,
    );
  }
  const nameProblem = partitionNameProblem(partition);
  if (nameProblem !== null) throw new ConfigError(`invalid value for --partition: ${nameProblem}`);
  const listProblem = partitionListProblem(partitions);
  if (listProblem !== null) throw new ConfigError(`invalid value for --partitions: ${listProblem}`);
  if (!partitions.includes(partition)) {
    throw new ConfigError(
      `--partition ${partition} is not one of --partitions ${partitions.join(",")}: every node must name its own group in the list (is one of the flags mistyped?)`,
    );
  }
}

/** Human-readable notes about the security posture, for the startup log. */
export function securityWarnings(o: NodeOptions): string[] {
  const warnings: string[] = [];
  // A node that opens no port is reached only from its own process.
  if (!o.listen) return warnings;
  if (o.insecure) warnings.push("running with --insecure: no TLS and no authentication");
  else {
    if (o.certificateFile === null) warnings.push("TLS is off (loopback only)");
    if (o.adminPassword === null)
      warnings.push("authentication is off (loopback only); set --admin-password to enable it");
  }
  return warnings;
}

export function helpText(): string {
  const lines = [
    "Usage: chorus-server [flags]",
    "",
    "Every flag may also be given as an environment variable CHORUS_FLAG_NAME (e.g.",
    "CHORUS_EXT_TCP_PORT=1113) or as a key of --config file.yaml|json. Precedence:",
    "command line > environment > config file > defaults.",
    "",
  ];
  for (const spec of FLAGS) {
    const arg =
      spec.kind === "bool"
        ? ""
        : ` <${spec.kind === "list" ? "h:p,h:p" : spec.kind === "names" ? "a,b,c" : spec.kind === "hostport" ? "h:p" : spec.kind === "string" ? "value" : spec.kind}>`;
    lines.push(`  --${spec.flag}${arg}`.padEnd(46) + spec.describe);
  }
  lines.push("  --help".padEnd(46) + "show this help");
  lines.push("  --version".padEnd(46) + "print the version");
  return lines.join("\n") + "\n";
}
