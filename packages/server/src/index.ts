export {
  createNode,
  StartupError,
  type ChorusNode,
  type NodeExtras,
  type Endpoint,
  type NodeEndpoints,
  type NodeState,
} from "./node.js";
export {
  ConfigError,
  DEFAULT_NODE_OPTIONS,
  FLAGS,
  envNameOf,
  parseConfig,
  resolveNodeOptions,
  serverVersion,
  type CommandLine,
  type NodeOptions,
  type ParseConfigDeps,
} from "./config/index.js";
export { main, type MainDeps } from "./cli.js";
export { createLogger, type Logger, type LoggerOptions } from "./logging.js";
export { Authenticator } from "./auth/index.js";
export type { MemberInfo } from "./api/http.js";
export {
  createDiskStore,
  createMemoryStore,
  LogStore,
  type DiskStoreOptions,
  type MemoryStoreOptions,
} from "./storage/index.js";
export * from "./streams/types.js";
