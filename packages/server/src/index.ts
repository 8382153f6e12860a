export {
  createNode,
  StartupError,
  type ChorusNode,
  type NodeExtras,
  type NodeEndpoints,
} from "./node.js";
export type { Endpoint, MemberInfo, NodeState } from "./node-types.js";
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
export {
  createDiskStore,
  createMemoryStore,
  LogStore,
  type DiskStoreOptions,
  type MemoryStoreOptions,
} from "./storage/index.js";
export * from "./streams/types.js";
