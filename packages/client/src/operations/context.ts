import type { Connection } from "../connection/connection.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";

/** What every operation needs: the settings and the connection to send through. */
export interface OperationContext {
  readonly settings: ConnectionSettings;
  readonly connection: Connection;
}
