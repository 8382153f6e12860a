// The public surface of @chorus/client (see the design's api.md). Nothing else is exported.
export { ChorusClient, type ChorusClientEvents } from "./client.js";
export {
  ConnectionSettings,
  ConnectionSettingsBuilder,
  type ClusterDnsOptions,
  type ClusterLocation,
  type HeartbeatSettings,
  type RetryBudgetOptions,
  type RetryBudgetSettings,
  type TlsOptions,
  type TlsSettings,
} from "./settings/connection-settings.js";
export * from "./settings/defaults.js";
export type { ConnectionStatus } from "./connection/connection.js";
export { jsonEvent, binaryEvent, type EventData } from "./operations/events.js";
export {
  ACK_CHANNEL_PREFIX,
  APPEND_CHANNEL_PREFIX,
  DELIVER_CHANNEL,
  LEADER_CHANGED_CHANNEL,
  READ_CHANNEL_PREFIX,
  RECONNECT_CHANNEL,
  TRACING_EVENTS,
  type AckMessage,
  type AppendMessage,
  type DeliverMessage,
  type LeaderChangedMessage,
  type PropagationFields,
  type ReadMessage,
  type ReadPageResult,
  type ReconnectMessage,
} from "./diagnostics.js";
export type { AppendOptions, AppendResult } from "./operations/append.js";
export type { DeleteStreamOptions, DeleteResult } from "./operations/delete.js";
export type { ReadStreamOptions, ReadAllOptions, StreamFilter } from "./operations/read.js";
export type {
  StreamMetadata,
  StreamMetadataResult,
  SetStreamMetadataOptions,
} from "./operations/metadata.js";
export type {
  Subscription,
  SubscriptionEvents,
  SubscribeToStreamOptions,
  SubscribeToAllOptions,
} from "./subscriptions/subscription.js";
export type { PersistentSubscriptions } from "./persistent/index.js";
export type {
  PartitionPositions,
  PartitionedReadAllOptions,
} from "./partitions/partitioned-client.js";
export type {
  MergedSubscription,
  MergedSubscriptionEvents,
  PartitionedSubscribeToAllOptions,
} from "./partitions/merged-subscription.js";
export type {
  MergedPersistentSubscription,
  MergedPersistentSubscriptionEvents,
} from "./partitions/merged-persistent.js";
export type { PartitionedPersistentSubscriptionInfo } from "./partitions/persistent.js";
export type {
  ConsumerStrategy,
  PersistentConsumerInfo,
  PersistentSubscriptionFilter,
  PersistentSubscriptionInfo,
  PersistentSubscriptionSettings,
  ReplayParkedOptions,
} from "./persistent/management.js";
export type {
  AckOptions,
  NackAction,
  NackOptions,
  PersistentEvent,
  PersistentSubscribeOptions,
  PersistentSubscription,
  PersistentSubscriptionEvents,
} from "./persistent/subscription.js";
export {
  ChorusError,
  WrongExpectedVersionError,
  StreamNotFoundError,
  StreamDeletedError,
  AccessDeniedError,
  NotAuthenticatedError,
  NotLeaderError,
  NotHandledError,
  TimeoutError,
  DiscoveryError,
  ConnectionError,
  ClientClosedError,
  PersistentSubscriptionExistsError,
  PersistentSubscriptionNotFoundError,
  MaxSubscribersReachedError,
  SubscriptionDroppedError,
  InvalidArgumentError,
  StorageFullError,
  WrongPartitionError,
  ServerError,
  type ChorusErrorCode,
  type DiscoveryCause,
  type LeaderEndpoints,
  type NotHandledReason,
} from "./errors.js";
export type {
  Credentials,
  Direction,
  Endpoint,
  ExpectedVersion,
  GossipSeed,
  Logger,
  MemberInfo,
  NodePreference,
  OperationOptions,
  Random,
  RecordedEvent,
  ResolvedEvent,
  TimerHandle,
  Timers,
  VNodeState,
} from "./types.js";
