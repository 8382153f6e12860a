import { isInProcessNode, partitionListProblem, type InProcessNode } from "@chorus/protocol";
import { InvalidArgumentError } from "../errors.js";
import type {
  Credentials,
  Endpoint,
  GossipSeed,
  Logger,
  NodePreference,
  Random,
  Timers,
} from "../types.js";
import { silentLogger, systemTimers } from "../util/timers.js";
import { checkOptions, optionKeys } from "../util/options.js";
import { CREDENTIAL_KEYS } from "../operations/validate.js";
import type { RetryBudgetSettings } from "../operations/retry-budget.js";
import {
  DEFAULT_DISCOVER_DELAY_MS,
  DEFAULT_GOSSIP_PORT,
  DEFAULT_GOSSIP_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_DISCOVER_ATTEMPTS,
  DEFAULT_MAX_RECONNECTIONS,
  DEFAULT_MAX_RETRIES,
  DEFAULT_NODE_PREFERENCE,
  DEFAULT_OPERATION_TIMEOUT_MS,
  DEFAULT_QUEUE_TIMEOUT_MS,
  DEFAULT_RECONNECTION_DELAY_MS,
  DEFAULT_DNS_PORT,
  DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND,
  DEFAULT_RETRY_BUDGET_RATIO,
  DEFAULT_RETRY_BUDGET_WINDOW_MS,
} from "./defaults.js";
import { parseConnectionString } from "./connection-string.js";
import { formatEndpoint, parseEndpoint } from "./endpoint.js";

/** Where the cluster is: exactly one of these. */
export type ClusterLocation =
  | { readonly kind: "singleNode"; readonly endpoint: Endpoint }
  /** A node of this process, reached without a socket (other members, if any, over the network). */
  | { readonly kind: "inProcess"; readonly node: InProcessNode }
  | { readonly kind: "gossipSeeds"; readonly seeds: readonly Endpoint[] }
  | {
      readonly kind: "clusterDns";
      readonly name: string;
      readonly gossipPort: number;
      readonly dnsServers: readonly Endpoint[];
      /** Look up SRV records `_chorus._tcp.<name>` instead of A/AAAA records. */
      readonly srv: boolean;
    };

export interface ClusterDnsOptions {
  /** Port of the gossip (external HTTP) endpoint of each A/AAAA record. Default 2113. */
  gossipPort?: number;
  /** Resolvers to ask ("host:port" or {host, port}); default: the system's. */
  dnsServers?: ReadonlyArray<string | Endpoint>;
  /** Use SRV records `_chorus._tcp.<name>` (they give hosts and ports). */
  srv?: boolean;
}

export interface TlsOptions {
  /** Trusted CA certificate(s), PEM. */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** A PEM file with the trusted CA certificate(s), read when connecting. */
  caFile?: string;
  /** Verify the server's certificate. Default true. */
  rejectUnauthorized?: boolean;
}

export interface TlsSettings {
  readonly ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  readonly caFile?: string;
  readonly rejectUnauthorized: boolean;
}

export type { RetryBudgetSettings } from "../operations/retry-budget.js";

export interface RetryBudgetOptions {
  /** Retries allowed per operation started. Default DEFAULT_RETRY_BUDGET_RATIO (0.2). */
  ratio?: number;
  /** Retries allowed per second on top, whatever the traffic. Default 10. */
  minRetriesPerSecond?: number;
  /** How long operations and retries count, in ms (1,000..60,000). Default 10,000. */
  windowMs?: number;
}

export interface HeartbeatSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

const CLUSTER_DNS_KEYS = optionKeys<ClusterDnsOptions>({
  gossipPort: true,
  dnsServers: true,
  srv: true,
});
const TLS_KEYS = optionKeys<TlsOptions>({ ca: true, caFile: true, rejectUnauthorized: true });
const RETRY_BUDGET_KEYS = optionKeys<RetryBudgetOptions>({
  ratio: true,
  minRetriesPerSecond: true,
  windowMs: true,
});
const HEARTBEAT_KEYS = optionKeys<HeartbeatSettings>({ intervalMs: true, timeoutMs: true });

const redacted = Symbol.for("nodejs.util.inspect.custom");

/** Resolved, frozen connection settings. Build them with `ConnectionSettings.create()`. */
export class ConnectionSettings {
  readonly location: ClusterLocation;
  readonly nodePreference: NodePreference;
  readonly defaultCredentials: Credentials | undefined;
  /** Infinity: keep reconnecting. */
  readonly maxReconnections: number;
  readonly reconnectionDelayMs: number;
  /** Infinity: keep retrying. */
  readonly maxRetries: number;
  /** The client's retry budget; undefined: none (retries limited per operation only). */
  readonly retryBudget: RetryBudgetSettings | undefined;
  readonly operationTimeoutMs: number;
  readonly queueTimeoutMs: number;
  readonly maxDiscoverAttempts: number;
  readonly discoverDelayMs: number;
  readonly gossipTimeoutMs: number;
  readonly heartbeat: HeartbeatSettings;
  /** undefined: plain ws:// and http://. */
  readonly tls: TlsSettings | undefined;
  readonly logger: Logger;
  readonly timers: Timers;
  readonly random: Random;
  /**
   * Partitioned deployments (`withPartitions`): every replication group's own settings, by
   * group name; undefined for one group. With partitions, `location` is the first group's.
   */
  readonly partitions: Readonly<Record<string, ConnectionSettings>> | undefined;

  /** @internal Use ConnectionSettings.create() ... build(). */
  constructor(init: ConnectionSettingsInit) {
    this.location = init.location;
    this.nodePreference = init.nodePreference;
    this.defaultCredentials = init.defaultCredentials;
    this.maxReconnections = init.maxReconnections;
    this.reconnectionDelayMs = init.reconnectionDelayMs;
    this.maxRetries = init.maxRetries;
    this.retryBudget = init.retryBudget ? Object.freeze({ ...init.retryBudget }) : undefined;
    this.operationTimeoutMs = init.operationTimeoutMs;
    this.queueTimeoutMs = init.queueTimeoutMs;
    this.maxDiscoverAttempts = init.maxDiscoverAttempts;
    this.discoverDelayMs = init.discoverDelayMs;
    this.gossipTimeoutMs = init.gossipTimeoutMs;
    this.heartbeat = Object.freeze({ ...init.heartbeat });
    this.tls = init.tls ? Object.freeze({ ...init.tls }) : undefined;
    this.logger = init.logger;
    this.timers = init.timers;
    this.random = init.random;
    this.partitions = init.partitions ? Object.freeze({ ...init.partitions }) : undefined;
    Object.freeze(this);
  }

  static create(): ConnectionSettingsBuilder {
    return new ConnectionSettingsBuilder();
  }

  /** Parses `chorus://`, `chorus+discover://` and `chorus+srv://` strings. */
  static fromConnectionString(connectionString: string): ConnectionSettings {
    return parseConnectionString(connectionString);
  }

  /** Settings as plain data with the password hidden (safe to log). */
  toJSON(): Record<string, unknown> {
    return {
      location: this.location,
      nodePreference: this.nodePreference,
      defaultCredentials: this.defaultCredentials
        ? { username: this.defaultCredentials.username, password: "***" }
        : undefined,
      maxReconnections: this.maxReconnections,
      reconnectionDelayMs: this.reconnectionDelayMs,
      maxRetries: this.maxRetries,
      retryBudget: this.retryBudget,
      operationTimeoutMs: this.operationTimeoutMs,
      queueTimeoutMs: this.queueTimeoutMs,
      maxDiscoverAttempts: this.maxDiscoverAttempts,
      discoverDelayMs: this.discoverDelayMs,
      gossipTimeoutMs: this.gossipTimeoutMs,
      heartbeat: this.heartbeat,
      tls: this.tls
        ? {
            caFile: this.tls.caFile,
            ca: this.tls.ca ? "<pem>" : undefined,
            rejectUnauthorized: this.tls.rejectUnauthorized,
          }
        : undefined,
      ...(this.partitions && {
        partitions: Object.fromEntries(
          Object.entries(this.partitions).map(([name, group]) => [name, group.toJSON()]),
        ),
      }),
    };
  }

  [redacted](): Record<string, unknown> {
    return this.toJSON();
  }
}

type ConnectionSettingsInit = Omit<ConnectionSettings, "toJSON" | typeof redacted>;

function nonNegativeMs(value: unknown, what: string): number {
  if (
    typeof value !== "number" ||
    !Number.isFinite(value) ||
    value < 0 ||
    !Number.isInteger(value)
  ) {
    throw new InvalidArgumentError(
      `${what} must be a non-negative integer number of milliseconds, got ${String(value)}`,
    );
  }
  return value;
}

function positiveMs(value: unknown, what: string): number {
  const ms = nonNegativeMs(value, what);
  if (ms === 0) throw new InvalidArgumentError(`${what} must be greater than 0 ms`);
  return ms;
}

function count(value: unknown, what: string, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`${what} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

const PREFERENCES: readonly NodePreference[] = ["leader", "follower", "random", "readOnlyReplica"];

export function isNodePreference(value: unknown): value is NodePreference {
  return typeof value === "string" && (PREFERENCES as readonly string[]).includes(value);
}

/** Builder of ConnectionSettings; every method validates its argument at once. */
export class ConnectionSettingsBuilder {
  #location: ClusterLocation | undefined;
  #nodePreference: NodePreference = DEFAULT_NODE_PREFERENCE;
  #credentials: Credentials | undefined;
  #maxReconnections = DEFAULT_MAX_RECONNECTIONS;
  #reconnectionDelayMs = DEFAULT_RECONNECTION_DELAY_MS;
  #maxRetries = DEFAULT_MAX_RETRIES;
  #retryBudget: RetryBudgetSettings | undefined = {
    ratio: DEFAULT_RETRY_BUDGET_RATIO,
    minRetriesPerSecond: DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND,
    windowMs: DEFAULT_RETRY_BUDGET_WINDOW_MS,
  };
  #operationTimeoutMs = DEFAULT_OPERATION_TIMEOUT_MS;
  #queueTimeoutMs = DEFAULT_QUEUE_TIMEOUT_MS;
  #maxDiscoverAttempts = DEFAULT_MAX_DISCOVER_ATTEMPTS;
  #discoverDelayMs = DEFAULT_DISCOVER_DELAY_MS;
  #gossipTimeoutMs = DEFAULT_GOSSIP_TIMEOUT_MS;
  #heartbeat: HeartbeatSettings = {
    intervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
    timeoutMs: DEFAULT_HEARTBEAT_TIMEOUT_MS,
  };
  #tls: TlsSettings | undefined;
  #logger: Logger = silentLogger;
  #timers: Timers = systemTimers;
  #random: Random = Math.random;
  #partitions: Readonly<Record<string, ConnectionSettings>> | undefined;

  #setLocation(location: ClusterLocation): this {
    if (this.#partitions) {
      throw new InvalidArgumentError(
        "withPartitions locates every group itself; do not combine it with withGossipSeeds, withClusterDns, withSingleNode or withInProcessNode",
      );
    }
    if (this.#location && this.#location.kind !== location.kind) {
      throw new InvalidArgumentError(
        `the cluster is already located by ${this.#location.kind}; use exactly one of withGossipSeeds, withClusterDns, withSingleNode, withInProcessNode`,
      );
    }
    this.#location = Object.freeze(location);
    return this;
  }

  /** HTTP gossip endpoints ("host:port" or {host, port}) of some cluster members. */
  withGossipSeeds(seeds: ReadonlyArray<string | GossipSeed>): this {
    if (!Array.isArray(seeds) || seeds.length === 0) {
      throw new InvalidArgumentError("withGossipSeeds needs at least one seed");
    }
    const parsed = seeds.map((s: string | GossipSeed, i) =>
      parseEndpoint(s, `gossip seed #${i + 1}`),
    );
    return this.#setLocation({ kind: "gossipSeeds", seeds: Object.freeze(parsed) });
  }

  /** A DNS name whose A/AAAA records (or SRV records with `srv: true`) are the cluster's nodes. */
  withClusterDns(name: string, options: ClusterDnsOptions = {}): this {
    checkOptions("withClusterDns", options, CLUSTER_DNS_KEYS);
    if (typeof name !== "string" || name.trim() === "" || /[\s/:?#@]/.test(name)) {
      throw new InvalidArgumentError(`withClusterDns: invalid DNS name ${JSON.stringify(name)}`);
    }
    const gossipPort = options.gossipPort ?? DEFAULT_GOSSIP_PORT;
    if (!Number.isInteger(gossipPort) || gossipPort < 1 || gossipPort > 65535) {
      throw new InvalidArgumentError(
        `withClusterDns: gossipPort must be in 1..65535, got ${String(gossipPort)}`,
      );
    }
    const dnsServers = (options.dnsServers ?? []).map((s, i) =>
      parseEndpoint(s, `DNS server #${i + 1}`, DEFAULT_DNS_PORT),
    );
    return this.#setLocation({
      kind: "clusterDns",
      name: name.trim(),
      gossipPort,
      dnsServers: Object.freeze(dnsServers),
      srv: options.srv ?? false,
    });
  }

  /** One node's external HTTP endpoint. */
  withSingleNode(endpoint: string | Endpoint): this {
    return this.#setLocation({
      kind: "singleNode",
      endpoint: parseEndpoint(endpoint, "single node"),
    });
  }

  /**
   * A node running in this process (`createNode()` of @chorus/server, or any InProcessNode):
   * requests and subscriptions reach it as objects, with no socket and no encoding. The node
   * may open no port at all (`listen: false`).
   */
  withInProcessNode(node: InProcessNode): this {
    if (!isInProcessNode(node)) {
      throw new InvalidArgumentError(
        "withInProcessNode needs a node of this process (the ChorusNode that createNode() of @chorus/server returns)",
      );
    }
    return this.#setLocation({ kind: "inProcess", node });
  }

  withNodePreference(preference: NodePreference): this {
    if (!isNodePreference(preference)) {
      throw new InvalidArgumentError(
        `node preference must be one of ${PREFERENCES.join(", ")}, got ${JSON.stringify(preference)}`,
      );
    }
    this.#nodePreference = preference;
    return this;
  }

  withDefaultCredentials(credentials: Credentials): this {
    checkOptions("withDefaultCredentials", credentials, CREDENTIAL_KEYS, { noun: "key" });
    if (
      !credentials ||
      typeof credentials.username !== "string" ||
      credentials.username === "" ||
      typeof credentials.password !== "string"
    ) {
      throw new InvalidArgumentError(
        "default credentials need a non-empty username and a password",
      );
    }
    if (credentials.username.includes(":"))
      throw new InvalidArgumentError("a username must not contain ':'");
    this.#credentials = Object.freeze({
      username: credentials.username,
      password: credentials.password,
    });
    return this;
  }

  keepReconnecting(): this {
    this.#maxReconnections = Infinity;
    return this;
  }

  limitReconnectionsTo(n: number): this {
    this.#maxReconnections = count(n, "limitReconnectionsTo", 0);
    return this;
  }

  withReconnectionDelay(ms: number): this {
    this.#reconnectionDelayMs = nonNegativeMs(ms, "reconnection delay");
    return this;
  }

  limitRetriesForOperationTo(n: number): this {
    this.#maxRetries = count(n, "limitRetriesForOperationTo", 0);
    return this;
  }

  keepRetrying(): this {
    this.#maxRetries = Infinity;
    return this;
  }

  /**
   * One retry budget for the whole client: within any `windowMs`, retries may add at most
   * `ratio` of the operations started plus `minRetriesPerSecond` per second; a retry beyond
   * that fails the operation with the error it would have retried.
   */
  withRetryBudget(options: RetryBudgetOptions = {}): this {
    checkOptions("withRetryBudget", options, RETRY_BUDGET_KEYS);
    const ratio = options.ratio ?? DEFAULT_RETRY_BUDGET_RATIO;
    if (typeof ratio !== "number" || !(ratio >= 0 && ratio <= 10)) {
      throw new InvalidArgumentError(
        `retry budget ratio must be a number in 0..10, got ${String(ratio)}`,
      );
    }
    const minRetriesPerSecond =
      options.minRetriesPerSecond ?? DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND;
    if (
      typeof minRetriesPerSecond !== "number" ||
      !(minRetriesPerSecond >= 0 && minRetriesPerSecond <= 1_000_000)
    ) {
      throw new InvalidArgumentError(
        `retry budget minRetriesPerSecond must be a number in 0..1000000, got ${String(minRetriesPerSecond)}`,
      );
    }
    const windowMs = positiveMs(
      options.windowMs ?? DEFAULT_RETRY_BUDGET_WINDOW_MS,
      "retry budget windowMs",
    );
    if (windowMs < 1_000 || windowMs > 60_000) {
      throw new InvalidArgumentError(
        `retry budget windowMs must be in 1000..60000 ms, got ${windowMs}`,
      );
    }
    this.#retryBudget = { ratio, minRetriesPerSecond, windowMs };
    return this;
  }

  /** No client-wide retry budget: each operation retries up to its own limit. */
  withoutRetryBudget(): this {
    this.#retryBudget = undefined;
    return this;
  }

  withOperationTimeout(ms: number): this {
    this.#operationTimeoutMs = positiveMs(ms, "operation timeout");
    return this;
  }

  withQueueTimeout(ms: number): this {
    this.#queueTimeoutMs = positiveMs(ms, "queue timeout");
    return this;
  }

  withMaxDiscoverAttempts(n: number): this {
    this.#maxDiscoverAttempts = count(n, "withMaxDiscoverAttempts", 1);
    return this;
  }

  withDiscoverDelay(ms: number): this {
    this.#discoverDelayMs = nonNegativeMs(ms, "discover delay");
    return this;
  }

  withGossipTimeout(ms: number): this {
    this.#gossipTimeoutMs = positiveMs(ms, "gossip timeout");
    return this;
  }

  withHeartbeat(heartbeat: { intervalMs: number; timeoutMs: number }): this {
    checkOptions("withHeartbeat", heartbeat, HEARTBEAT_KEYS);
    const intervalMs = positiveMs(heartbeat?.intervalMs, "heartbeat intervalMs");
    const timeoutMs = positiveMs(heartbeat?.timeoutMs, "heartbeat timeoutMs");
    this.#heartbeat = { intervalMs, timeoutMs };
    return this;
  }

  /** wss:// and https:// with these trust options. */
  useTls(options: TlsOptions = {}): this {
    checkOptions("useTls", options, TLS_KEYS);
    if (
      options.caFile !== undefined &&
      (typeof options.caFile !== "string" || options.caFile === "")
    ) {
      throw new InvalidArgumentError("useTls: caFile must be a non-empty path");
    }
    this.#tls = {
      ...(options.ca !== undefined && { ca: options.ca }),
      ...(options.caFile !== undefined && { caFile: options.caFile }),
      rejectUnauthorized: options.rejectUnauthorized ?? true,
    };
    return this;
  }

  /** Plain ws:// and http:// (the default). */
  withoutTls(): this {
    this.#tls = undefined;
    return this;
  }

  withLogger(logger: Logger): this {
    for (const level of ["debug", "info", "warn", "error"] as const) {
      if (typeof logger?.[level] !== "function")
        throw new InvalidArgumentError(`logger.${level} must be a function`);
    }
    this.#logger = logger;
    return this;
  }

  /** Clock and timers (for deterministic tests). Default: the system's. */
  withTimers(timers: Timers): this {
    this.#timers = timers;
    return this;
  }

  /** Random source of shuffles, node selection and backoff jitter. Default Math.random. */
  withRandom(random: Random): this {
    if (typeof random !== "function") throw new InvalidArgumentError("withRandom needs a function");
    this.#random = random;
    return this;
  }

  /**
   * Partitioned deployments: several replication groups, by name (1 to 32 characters of
   * a-z, 0-9 and -, the names the servers are started with in `--partitions`). Each value
   * is a group's connection string or its built ConnectionSettings, which carry all of that
   * group's settings (the builder's other settings do not apply to the groups). Streams go
   * to their owning group (`partitionOf` of @chorus/protocol); each group discovers its
   * nodes and fails over on its own.
   */
  withPartitions(groups: Readonly<Record<string, string | ConnectionSettings>>): this {
    if (typeof groups !== "object" || groups === null || Array.isArray(groups)) {
      throw new InvalidArgumentError(
        "withPartitions needs an object of group name -> connection string or ConnectionSettings",
      );
    }
    if (this.#location) {
      throw new InvalidArgumentError(
        `withPartitions locates every group itself; the cluster is already located by ${this.#location.kind}`,
      );
    }
    const names = Object.keys(groups);
    const problem = partitionListProblem(names);
    if (problem !== null) throw new InvalidArgumentError(`withPartitions: ${problem}`);
    const resolved: Record<string, ConnectionSettings> = {};
    for (const name of names) {
      const value = groups[name];
      let settings: ConnectionSettings;
      if (typeof value === "string") {
        try {
          settings = ConnectionSettings.fromConnectionString(value);
        } catch (err) {
          throw new InvalidArgumentError(
            `withPartitions: group ${name}: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      } else if (value instanceof ConnectionSettings) {
        settings = value;
      } else {
        throw new InvalidArgumentError(
          `withPartitions: group ${name} needs a connection string or ConnectionSettings, got ${typeof value}`,
        );
      }
      if (settings.partitions) {
        throw new InvalidArgumentError(
          `withPartitions: group ${name} is itself partitioned; give each group its own nodes`,
        );
      }
      resolved[name] = settings;
    }
    this.#partitions = Object.freeze(resolved);
    return this;
  }

  build(): ConnectionSettings {
    if (this.#partitions) {
      const first = Object.values(this.#partitions)[0]!;
      const init = this.#init(first.location);
      // Each group's settings are its own; a builder setting would reach none of them.
      const defaults = new ConnectionSettingsBuilder().#init(first.location);
      const set = (Object.keys(init) as Array<keyof typeof init>).filter(
        (key) => key !== "location" && !sameSetting(init[key], defaults[key]),
      );
      if (set.length > 0) {
        throw new InvalidArgumentError(
          `withPartitions: ${set.join(", ")} would not reach the groups; set ${set.length === 1 ? "it" : "them"} in each group's connection string or ConnectionSettings`,
        );
      }
      return new ConnectionSettings({ ...init, partitions: this.#partitions });
    }
    if (!this.#location) {
      throw new InvalidArgumentError(
        "no cluster location: call withGossipSeeds, withClusterDns, withSingleNode, withInProcessNode or withPartitions",
      );
    }
    return new ConnectionSettings({ ...this.#init(this.#location), partitions: undefined });
  }

  #init(location: ClusterLocation): Omit<ConnectionSettingsInit, "partitions"> {
    return {
      location,
      nodePreference: this.#nodePreference,
      defaultCredentials: this.#credentials,
      maxReconnections: this.#maxReconnections,
      reconnectionDelayMs: this.#reconnectionDelayMs,
      maxRetries: this.#maxRetries,
      retryBudget: this.#retryBudget,
      operationTimeoutMs: this.#operationTimeoutMs,
      queueTimeoutMs: this.#queueTimeoutMs,
      maxDiscoverAttempts: this.#maxDiscoverAttempts,
      discoverDelayMs: this.#discoverDelayMs,
      gossipTimeoutMs: this.#gossipTimeoutMs,
      heartbeat: this.#heartbeat,
      tls: this.#tls,
      logger: this.#logger,
      timers: this.#timers,
      random: this.#random,
    };
  }
}

/** The same setting value: identical, or equal plain data (heartbeat, retry budget, TLS). */
function sameSetting(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** "host:port" of the location, for messages. */
export function describeLocation(location: ClusterLocation): string {
  switch (location.kind) {
    case "singleNode":
      return formatEndpoint(location.endpoint);
    case "inProcess":
      return `in-process node ${location.node.instanceId}`;
    case "gossipSeeds":
      return location.seeds.map(formatEndpoint).join(",");
    case "clusterDns":
      return location.srv
        ? `SRV _chorus._tcp.${location.name}`
        : `${location.name}:${location.gossipPort}`;
  }
}
