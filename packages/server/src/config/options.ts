import type { LevelWithSilent } from "pino";
import { DEFAULT_MAX_FRAME_BYTES as PEER_MAX_FRAME_BYTES } from "@chorus/protocol";
import {
  DEFAULT_ELECTION_TIMEOUT_MS,
  DEFAULT_GOSSIP_INTERVAL_MS,
  DEFAULT_GOSSIP_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
} from "../cluster/timings.js";

/** Every setting of a node, resolved once (defaults applied, validated) and frozen. */
export interface NodeOptions {
  /** Keep data in memory only. */
  readonly memDb: boolean;
  /** Data directory. */
  readonly db: string;
  /** Directory for log files (logs always go to stdout too); null: stdout only. */
  readonly log: string | null;
  readonly logLevel: LevelWithSilent;
  readonly intIp: string;
  readonly extIp: string;
  readonly intTcpPort: number;
  readonly extTcpPort: number;
  readonly intHttpPort: number;
  readonly extHttpPort: number;
  readonly clusterSize: number;
  readonly gossipSeed: readonly string[];
  /** null: derived (true when clusterSize > 1 and no seeds are given). */
  readonly discoverViaDns: boolean;
  readonly clusterDns: string | null;
  readonly clusterGossipPort: number;
  readonly dnsServer: string | null;
  readonly nodePriority: number;
  /** Host (name or IP) other nodes and clients are told for the external endpoints; null: the bound one. */
  readonly extHostAdvertiseAs: string | null;
  /** Host other nodes are told for the internal endpoints; null: the bound one. */
  readonly intHostAdvertiseAs: string | null;
  /** Ports told to others instead of the bound ones (behind NAT, a proxy or a load balancer). */
  readonly extTcpPortAdvertiseAs: number | null;
  readonly extHttpPortAdvertiseAs: number | null;
  readonly intTcpPortAdvertiseAs: number | null;
  readonly intHttpPortAdvertiseAs: number | null;
  readonly readOnlyReplica: boolean;
  /** How often a cluster leader sends heartbeats to its followers (`--heartbeat-interval-ms`). */
  readonly heartbeatIntervalMs: number;
  /**
   * Lower bound t of the randomised election timeout [t, 2t] (`--election-timeout-ms`); also the
   * leader's check-quorum window and a follower's leader lease.
   */
  readonly electionTimeoutMs: number;
  /** How often a cluster node gossips (`--gossip-interval-ms`). */
  readonly gossipIntervalMs: number;
  /** Deadline of one gossip request (`--gossip-timeout-ms`). */
  readonly gossipTimeoutMs: number;
  /** No TLS and no authentication, whatever the interfaces. */
  readonly insecure: boolean;
  readonly certificateFile: string | null;
  readonly certificatePrivateKeyFile: string | null;
  readonly trustedRootCertificatesPath: string | null;
  /** Enables authentication (user "admin"). Never logged. */
  readonly adminPassword: string | null;
  /**
   * Recent event ids (with their streams) cached in memory in front of the event-id index,
   * which finds every id ever written: a cache, not a bound of idempotency.
   */
  readonly idempotencyWindow: number;
  /**
   * Stream states kept in memory (the working set); the index of every stream is on disk, so
   * this bounds memory, not the number of streams.
   */
  readonly streamCache: number;
  /** Largest native protocol frame (and HTTP request body) accepted, in bytes. */
  readonly maxFrameBytes: number;
  /**
   * Largest append, in bytes as stored (every event's log record: data, metadata, stream name,
   * type and a fixed header): one append is one replicated batch, which must fit into one
   * replication frame between nodes. Larger appends are refused with INVALID_ARGUMENT before
   * anything is written. At most MAX_APPEND_BYTES_LIMIT.
   */
  readonly maxAppendBytes: number;
  /**
   * Interval of WebSocket pings; a connection that misses one pong is closed. (Not the cluster
   * leader's heartbeat: that is `heartbeatIntervalMs`.)
   */
  readonly clientPingIntervalMs: number;
  /**
   * Client connections (native and HTTP together) the node holds at most; more are refused
   * (api/client-connections.ts). Lowered at start to what the open-files limit leaves.
   */
  readonly maxClientConnections: number;
  /**
   * Bytes of unfinished input (partial native frames) the node holds from all its clients
   * together; past it, the connection holding the most is closed (api/byte-budget.ts). At
   * least `maxFrameBytes`.
   */
  readonly receiveBudgetBytes: number;
  /**
   * Bytes of unsent output (answers, pushed events) the node holds for all its native clients
   * together; past it, the connection holding the most is closed (api/byte-budget.ts). At
   * least twice `maxFrameBytes`.
   */
  readonly sendBudgetBytes: number;
  /**
   * Open the node's ports (the default). `false` (createNode only): a single node that opens
   * no port at all, reached by clients in its own process (`withInProcessNode`).
   */
  readonly listen: boolean;
  /**
   * Partitioned deployments: this replication group's name (`--partition`), one of
   * `partitions`; null when the node is not partitioned.
   */
  readonly partition: string | null;
  /**
   * Every group's name (`--partitions A,B,C`): the node refuses operations on streams another
   * group owns with WRONG_PARTITION. Empty when the node is not partitioned.
   */
  readonly partitions: readonly string[];
}

/** Client connections a node holds at most, by default (each holds a file descriptor). */
export const DEFAULT_MAX_CLIENT_CONNECTIONS = 10_000;
/** Unfinished client input held at most, by default: 16 largest frames. */
export const DEFAULT_RECEIVE_BUDGET_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SEND_BUDGET_BYTES = 512 * 1024 * 1024;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Room left in a replication frame for what surrounds a batch (the frame's other fields). */
export const PEER_FRAME_RESERVE_BYTES = 64 * 1024;
/**
 * The largest `maxAppendBytes` a node accepts: a batch this large still fits into one
 * replication frame (the peer links' frame limit, `DEFAULT_MAX_FRAME_BYTES` of
 * @chorus/protocol, 16 MiB), with PEER_FRAME_RESERVE_BYTES to spare.
 */
export const MAX_APPEND_BYTES_LIMIT = PEER_MAX_FRAME_BYTES - PEER_FRAME_RESERVE_BYTES;
/**
 * 1 MiB, as the event store Chorus descends from. Far below a replication frame, and small
 * enough that checking and encoding one append (CPU per event) never holds the event loop
 * anywhere near an election timeout: a leader busy with one huge append for longer than that
 * would stop sending heartbeats and be deposed.
 */
export const DEFAULT_MAX_APPEND_BYTES = 1024 * 1024;
export const DEFAULT_IDEMPOTENCY_WINDOW = 100_000;
export const DEFAULT_STREAM_CACHE = 100_000;
export const DEFAULT_CLIENT_PING_INTERVAL_MS = 10_000;

export const DEFAULT_NODE_OPTIONS: NodeOptions = Object.freeze({
  memDb: false,
  db: "./data",
  log: null,
  logLevel: "info",
  intIp: "127.0.0.1",
  extIp: "127.0.0.1",
  intTcpPort: 1112,
  extTcpPort: 1113,
  intHttpPort: 2112,
  extHttpPort: 2113,
  clusterSize: 1,
  gossipSeed: Object.freeze([]),
  discoverViaDns: false,
  clusterDns: null,
  clusterGossipPort: 2112,
  dnsServer: null,
  nodePriority: 0,
  extHostAdvertiseAs: null,
  intHostAdvertiseAs: null,
  extTcpPortAdvertiseAs: null,
  extHttpPortAdvertiseAs: null,
  intTcpPortAdvertiseAs: null,
  intHttpPortAdvertiseAs: null,
  readOnlyReplica: false,
  heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
  electionTimeoutMs: DEFAULT_ELECTION_TIMEOUT_MS,
  gossipIntervalMs: DEFAULT_GOSSIP_INTERVAL_MS,
  gossipTimeoutMs: DEFAULT_GOSSIP_TIMEOUT_MS,
  insecure: false,
  certificateFile: null,
  certificatePrivateKeyFile: null,
  trustedRootCertificatesPath: null,
  adminPassword: null,
  idempotencyWindow: DEFAULT_IDEMPOTENCY_WINDOW,
  streamCache: DEFAULT_STREAM_CACHE,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxAppendBytes: DEFAULT_MAX_APPEND_BYTES,
  clientPingIntervalMs: DEFAULT_CLIENT_PING_INTERVAL_MS,
  maxClientConnections: DEFAULT_MAX_CLIENT_CONNECTIONS,
  receiveBudgetBytes: DEFAULT_RECEIVE_BUDGET_BYTES,
  sendBudgetBytes: DEFAULT_SEND_BUDGET_BYTES,
  listen: true,
  partition: null,
  partitions: Object.freeze([]),
});

/** A configuration problem: the node must not start. The CLI exits with code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly exitCode = 2;
}
