/**
 * What the node's layers share: the API layer (api/) and the cluster (cluster/) both speak in
 * these terms, so neither imports the other. node.ts wires them together: it hands the API the
 * cluster role as a `ClusterView` and the role this node's gossip record.
 *
 * A leaf module: it imports nothing from this package (the layering test,
 * layering.unit.test.ts, keeps it so). Like streams/types.ts (the store's contract and its
 * StoreError), it holds types and the one domain error they come with, NotLeaderError.
 */

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** States this node uses, from the gossip vocabulary of api.md. */
export type NodeState =
  | "Initializing"
  | "Unknown"
  | "Leader"
  | "Follower"
  | "CatchingUp"
  | "PreReadOnlyReplica"
  | "ReadOnlyReplica"
  | "ShuttingDown"
  | "Shutdown";

/** The states a running cluster role reports (the node adds its start and stop states). */
export type ClusterNodeState = Extract<
  NodeState,
  "Unknown" | "Leader" | "Follower" | "CatchingUp" | "PreReadOnlyReplica" | "ReadOnlyReplica"
>;

/** The gossip document's member entry (api.md). Positions are decimal strings. */
export interface MemberInfo {
  instanceId: string;
  state: string;
  isAlive: boolean;
  timestamp: string;
  internalTcp: Endpoint;
  externalTcp: Endpoint;
  internalHttp: Endpoint;
  externalHttp: Endpoint;
  lastCommitPosition: string;
  writerCheckpoint: string;
  chaserCheckpoint: string;
  epochNumber: number;
  epochPosition: string;
  epochId: string;
  nodePriority: number;
  isReadOnlyReplica: boolean;
}

/**
 * The gossip document on the wire: `members` is api.md's document; `clusterId` and `sender`
 * are optional additions clients ignore (see cluster/gossip/wire.ts).
 */
export interface GossipDocument {
  members: MemberInfo[];
  clusterId?: string;
  sender?: string;
}

/** The answer to a `POST /gossip`: an HTTP status and its JSON body. */
export interface GossipPostResult {
  readonly status: number;
  readonly body: unknown;
}

/** What the HTTP API needs to serve `/gossip` (cluster/gossip's GossipService). */
export interface GossipEndpoint {
  /** This node's view (`GET /gossip`). */
  document(): GossipDocument;
  /** Merges a view another node pushed and answers with this node's (`POST /gossip`). */
  handlePost(text: string): GossipPostResult;
  /** Larger `POST /gossip` bodies are refused. */
  readonly maxBodyBytes: number;
  /** Logs a failure to serve a gossip request. */
  logError(err: unknown): void;
}

/** Where a write should go instead: the leader's external endpoints, when known. */
export interface WriteRefusal {
  readonly message: string;
  readonly leaderTcp: Endpoint | undefined;
  readonly leaderHttp: Endpoint | undefined;
}

/** A write reached a node that is not (or no longer) the leader. */
export class NotLeaderError extends Error {
  override readonly name = "NotLeaderError";
  constructor(readonly refusal: WriteRefusal) {
    super(refusal.message);
  }
}

/** The epoch fields of this node's gossip record. */
export interface EpochInfo {
  readonly epochNumber: number;
  readonly epochPosition: number;
  readonly epochId: string;
}

/**
 * The cluster role (cluster/node-role.ts) as the API layer and the persistent subscriptions
 * see it; node.ts passes it in.
 */
export interface ClusterView {
  /** undefined when this node may take writes now; otherwise where to go. */
  writeRefusal(): WriteRefusal | undefined;
  /** undefined when this node serves reads now; otherwise where to go (absent: it always does). */
  readRefusal?(): WriteRefusal | undefined;
  /** The current epoch (term); 0 before the cluster has formed. */
  readonly epoch: number;
  /** The end of this node's log, committed or not. */
  readonly logEnd: number;
  /** The epoch fields of this node's gossip record; undefined before the first epoch. */
  epochInfo(): EpochInfo | undefined;
  readonly gossip: GossipEndpoint;
  /** How often this node's role changed since it started (metrics); absent without elections. */
  roleChanges?(): RoleChangeCounts;
}

/** Counts of role changes a cluster role has seen since the node started. */
export interface RoleChangeCounts {
  /** Elections this node started as a candidate. */
  readonly elections: number;
  /** Times this node learnt of a new leader (itself included). */
  readonly leaderChanges: number;
  /**
   * Times this node started its part in the cluster over from what it holds durably, as after
   * a crash, because a write failed (a full disk, a failed sync).
   */
  readonly roleRestarts: number;
}

/** How far one follower is behind the leader (the leader's replication metrics). */
export interface FollowerLag {
  /** The follower's internal TCP endpoint `host:port` (its NodeId). */
  readonly follower: string;
  /** The leader's log end minus the position the follower acknowledged as durable. */
  readonly bytes: number;
  /**
   * How long ago the leader wrote the oldest record the follower has not acknowledged as
   * durable; 0 when it has acknowledged the leader's whole log.
   */
  readonly ms: number;
}
