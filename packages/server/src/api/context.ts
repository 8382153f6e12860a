import type { ByteBudget } from "./byte-budget.js";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/index.js";
import type { NodeOptions } from "../config/index.js";
import type { StreamStore } from "../streams/types.js";
import type { ClusterView, Endpoint, NodeState } from "../node-types.js";
import type { NodeMetrics } from "./metrics.js";
import type { PeerTls } from "../tls.js";

export interface NodeEndpoints {
  readonly extTcp: Endpoint;
  readonly extHttp: Endpoint;
  readonly intTcp: Endpoint;
  readonly intHttp: Endpoint;
}

/** What the API layer needs from the node. */
export interface NodeContext {
  readonly store: StreamStore;
  readonly auth: Authenticator;
  readonly logger: Logger;
  readonly metrics: NodeMetrics;
  readonly options: NodeOptions;
  readonly instanceId: string;
  readonly version: string;
  readonly tls: boolean;
  /** TLS towards other nodes (a cluster with certificates and trusted roots). */
  readonly peerTls?: PeerTls;
  state(): NodeState;
  /** Single node: open and not shutting down. Cluster: also a leader is known and this node is caught up. */
  isReady(): boolean;
  /**
   * How long the store's log sync in flight has been running, in ms, when that is past
   * STALLED_SYNC_HAND_OVER_TIMEOUTS election timeouts (the disk stalls); undefined otherwise.
   */
  stalledSyncMs(): number | undefined;
  /**
   * Why only a restart brings this node back (its store refuses writes after a failed log
   * write, or it stopped taking part in its cluster); undefined otherwise. /health/live
   * answers 503 with it, so a supervisor restarts the node.
   */
  restartNeeded(): string | undefined;
  /**
   * While the node holds more client connections than its limit: why a new one is refused
   * (api/client-connections.ts); undefined otherwise.
   */
  clientConnectionRefusal(): string | undefined;
  /** Unfinished client input of every connection together: native frames, HTTP bodies. */
  readonly receiveBudget: ByteBudget;
  /** Unsent output of native connections, all together (--send-budget-bytes). */
  readonly sendBudget: ByteBudget;
  /** The endpoints actually bound (known once every listener is up). */
  endpoints(): NodeEndpoints | undefined;
  /**
   * The cluster (a replicated cluster's role, or the instances on a shared database), once the
   * node's listeners are up; undefined for a single node.
   */
  cluster(): ClusterView | undefined;
  /**
   * Who serves persistent subscription groups: the cluster's leader (the same view as
   * `cluster()`), or on a shared database the instance holding the groups' lock.
   */
  persistentCluster(): ClusterView | undefined;
  /** Registers a write in flight, so shutdown can wait for it. */
  track<T>(work: Promise<T>): Promise<T>;
}
