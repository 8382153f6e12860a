export {
  ConfigError,
  DEFAULT_CLIENT_PING_INTERVAL_MS,
  DEFAULT_IDEMPOTENCY_WINDOW,
  DEFAULT_MAX_APPEND_BYTES,
  DEFAULT_MAX_FRAME_BYTES,
  MAX_APPEND_BYTES_LIMIT,
  DEFAULT_NODE_OPTIONS,
  type NodeOptions,
} from "./options.js";
export {
  FLAGS,
  envNameOf,
  helpText,
  isLoopback,
  parseConfig,
  resolveNodeOptions,
  securityWarnings,
  type CommandLine,
  type ParseConfigDeps,
} from "./parse.js";
export { serverVersion } from "./version.js";
