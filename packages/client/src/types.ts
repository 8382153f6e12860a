/** Public value types shared by every part of the client. */

/** A host and a port, e.g. a node's external HTTP endpoint. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** A gossip seed: a node's external HTTP endpoint. */
export type GossipSeed = Endpoint;

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export type NodePreference = "leader" | "follower" | "random" | "readOnlyReplica";

/** The states a node reports in gossip (a node need not use them all). */
export type VNodeState =
  | "Initializing"
  | "DiscoverLeader"
  | "Unknown"
  | "PreReplica"
  | "CatchingUp"
  | "Clone"
  | "Follower"
  | "PreLeader"
  | "Leader"
  | "ReadOnlyLeaderless"
  | "PreReadOnlyReplica"
  | "ReadOnlyReplica"
  | "ResigningLeader"
  | "ShuttingDown"
  | "Shutdown";

/** One member of the cluster as gossip describes it. Positions are bigints. */
export interface MemberInfo {
  readonly instanceId: string;
  /** A VNodeState; kept as string so newer servers' states pass through. */
  readonly state: VNodeState | (string & {});
  readonly isAlive: boolean;
  /** When the member last updated this entry (as the server reported it). */
  readonly timestamp: string;
  readonly internalTcp?: Endpoint;
  readonly externalTcp?: Endpoint;
  readonly internalHttp?: Endpoint;
  readonly externalHttp?: Endpoint;
  readonly lastCommitPosition: bigint;
  readonly writerCheckpoint: bigint;
  readonly chaserCheckpoint: bigint;
  readonly epochNumber: number;
  readonly epochPosition: bigint;
  readonly epochId: string;
  readonly nodePriority: number;
  readonly isReadOnlyReplica: boolean;
  /** Partitioned deployments (`withPartitions`): the name of the member's replication group. */
  readonly partition?: string;
}

/**
 * Optimistic concurrency check of an append or delete. A number or bigint is the
 * revision of the stream's last event (revisions start at 0).
 */
export type ExpectedVersion = "any" | "no_stream" | "stream_exists" | bigint | number;

export interface RecordedEvent<T = unknown> {
  readonly streamId: string;
  readonly revision: bigint;
  readonly position: bigint;
  readonly id: string;
  readonly type: string;
  readonly isJson: boolean;
  /** Parsed JSON for a JSON event, a Uint8Array otherwise. */
  readonly data: T;
  /** Parsed JSON for a JSON event, a Uint8Array otherwise (undefined when empty). */
  readonly metadata: unknown;
  readonly created: Date;
  /** Partitioned deployments (`withPartitions`): the replication group the event was read from. */
  readonly partition?: string;
}

export interface ResolvedEvent<T = unknown> {
  readonly event: RecordedEvent<T>;
  readonly link?: RecordedEvent;
}

export type Direction = "forwards" | "backwards";

/** The library never writes to the console; it talks to this. Default: silent. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Opaque handle of a scheduled timer. */
export type TimerHandle = object | number;

/** Clock and timers, injectable so tests can be deterministic. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** A source of uniform random numbers in [0, 1). */
export type Random = () => number;

/** Options every operation accepts. */
export interface OperationOptions {
  /** Credentials for this request instead of the connection's default ones. */
  credentials?: Credentials;
  /** Deadline of the whole operation, retries included. Default: the operation timeout setting. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Only the leader may serve this request. */
  requireLeader?: boolean;
}
