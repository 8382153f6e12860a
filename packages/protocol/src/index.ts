export { chorus } from "./gen/chorus.js";
export { wireBigInt, wireNumber, type WireInt } from "./wire-int.js";
export { scanAppendFrame, type AppendFrameScan } from "./append-scan.js";
export {
  eventValueSpans,
  objectMembers,
  objectValueSpans,
  type EventSpans,
  type ObjectMember,
  type Span,
} from "./json-spans.js";
export {
  DEFAULT_MAX_FRAME_BYTES,
  FrameError,
  decodeFrame,
  decodeInternalFrame,
  encodeInternalFrame,
  type InternalFrame,
  type InternalFrameInit,
  encodeAppendSuccess,
  encodeFrame,
  messageBytes,
  MAX_FRAME_BYTES_HEADER,
  NODE_PARTITION_HEADER,
  NODE_PARTITIONS_HEADER,
  type Frame,
  type FrameBodyKind,
  type FrameInit,
} from "./frame.js";
export {
  MAX_EVENT_TYPE_BYTES,
  MAX_STREAM_NAME_BYTES,
  METADATA_EVENT_TYPE,
  eventTypeProblem,
  isMetadataStream,
  isSystemStream,
  isUuid,
  metadataStreamOf,
  streamNameProblem,
} from "./validation.js";
export {
  frameBodyOf,
  isInProcessNode,
  type InProcessClientEnd,
  type InProcessNode,
  type InProcessOpenResult,
  type InProcessServerEnd,
} from "./in-process.js";
export {
  PARTITION_NAME_PATTERN,
  partitionKeyOf,
  partitionListProblem,
  partitionNameProblem,
  partitionOf,
  partitionWeight,
} from "./partition.js";
export {
  WebSocketOutbox,
  socketOfWebSocket,
  type OutboxSocket,
  type WebSocketOutboxOptions,
} from "./ws-outbox.js";
