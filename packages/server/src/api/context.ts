import type { Logger } from "pino";
import type { Authenticator } from "../auth/index.js";
import type { NodeOptions } from "../config/index.js";
import type { StreamStore } from "../streams/types.js";
import type { NodeMetrics } from "./metrics.js";

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface NodeEndpoints {
  readonly extTcp: Endpoint;
  readonly extHttp: Endpoint;
  readonly intTcp: Endpoint;
  readonly intHttp: Endpoint;
}

/** States this node uses, from the gossip vocabulary of api.md. */
export type NodeState = "Initializing" | "Leader" | "ShuttingDown" | "Shutdown";

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
  state(): NodeState;
  /** True once the store is open and until shutdown begins. */
  isReady(): boolean;
  /** The endpoints actually bound (known once every listener is up). */
  endpoints(): NodeEndpoints | undefined;
  /** Registers a write in flight, so shutdown can wait for it. */
  track<T>(work: Promise<T>): Promise<T>;
}
