import type { Connection } from "../connection/connection.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";
import type { RetryBudget } from "./retry-budget.js";

/** What every operation needs: the settings, the connections to send through, the retry budget. */
export interface OperationContext {
  readonly settings: ConnectionSettings;
  /** To the leader: writes, and everything that requires the leader. */
  readonly connection: Connection;
  /**
   * To the node of the nodePreference: reads and catch-up subscriptions that do not require
   * the leader. The same object as `connection` when the preference is "leader".
   */
  readonly readConnection: Connection;
  /** Shared by every operation of the client. */
  readonly retryBudget: RetryBudget;
  /** The replication group of a partitioned client's group client: its events carry it. */
  readonly partition?: string | undefined;
}

/** The connection an operation goes through: the leader's, or the one of the node preference. */
export function connectionFor(ctx: OperationContext, requireLeader: boolean): Connection {
  return requireLeader ? ctx.connection : ctx.readConnection;
}
