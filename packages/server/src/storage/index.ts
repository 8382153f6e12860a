/**
 * Storage: the log (segment files or memory), the record codec, the stream index and the
 * StreamStore built over them. `createDiskStore` backs `--db`, `createMemoryStore` `--mem-db`.
 */
import { join } from "node:path";
import { DiskLog, DEFAULT_SEGMENT_BYTES } from "./disk-log.js";
import { EVENT_ID_INDEX_FILE, LmdbEventIdIndex } from "./index/lmdb-event-id-index.js";
import type { Logger } from "./log.js";
import { MemoryLog } from "./memory-log.js";
import { LogStore } from "./store.js";

export { DEFAULT_SEGMENT_BYTES } from "./disk-log.js";
export {
  DEFAULT_COMMIT_CHECKPOINT_EVERY_MS,
  DEFAULT_IDEMPOTENCY_WINDOW,
  DEFAULT_MAX_SCAN,
  DEFAULT_SNAPSHOT_EVERY_BYTES,
  DEFAULT_STORAGE_FULL_PROBE_EVERY_MS,
  LogStore,
} from "./store.js";
export { TruncatedError } from "./store.js";
export type { LogStoreOptions, LogStoreStats, StoredHardState } from "./store.js";
export { isReplicatedLog, isTruncatedError } from "./replicated-log.js";
export type { RawBatches, ReplicatedLog, ReplicatedStore } from "./replicated-log.js";
export type { EpochEntry } from "./stream-index.js";
export { encodeEpoch } from "./record.js";
export type { Checkpoint, Log, Logger } from "./log.js";
export { SOFT_DELETED_KEY } from "./stream-index.js";
export { MemoryEventIdIndex } from "./index/event-id-index.js";
export type { EventIdHit, EventIdIndex } from "./index/event-id-index.js";
export { EVENT_ID_INDEX_FILE, LmdbEventIdIndex } from "./index/lmdb-event-id-index.js";

export interface DiskStoreOptions {
  /** Directory of the log; created when missing. */
  dir: string;
  logger?: Logger;
  /** Size of one segment file (default 256 MiB). */
  segmentBytes?: number;
  /**
   * Recent event ids kept in memory in front of the on-disk event-id index (default 100,000):
   * a cache; idempotency of `any` / `stream_exists` appends does not depend on it.
   */
  idempotencyWindow?: number;
  /** Write an index snapshot every this many bytes of log (default 64 MiB), and on close. */
  snapshotEveryBytes?: number;
  /** false: a cluster moves the commit position with setCommitPosition(). Default true. */
  autoCommit?: boolean;
  /** autoCommit false: the latest commit position reaches the checkpoint within this (default 100). */
  commitCheckpointEveryMs?: number;
  /** With a full disk, how often free space is looked for; writes resume then (default 1000). */
  storageFullProbeEveryMs?: number;
  nowMs?: () => number;
}

export interface MemoryStoreOptions {
  logger?: Logger;
  idempotencyWindow?: number;
  autoCommit?: boolean;
  commitCheckpointEveryMs?: number;
  nowMs?: () => number;
}

export function createDiskStore(options: DiskStoreOptions): LogStore {
  const log = new DiskLog({
    dir: options.dir,
    segmentBytes: options.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    ...(options.logger !== undefined && { logger: options.logger }),
  });
  const eventIdIndex = new LmdbEventIdIndex({
    path: join(options.dir, EVENT_ID_INDEX_FILE),
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
  });
  return new LogStore(log, { ...options, eventIdIndex });
}

export function createMemoryStore(options: MemoryStoreOptions = {}): LogStore {
  // Snapshots in memory only help reopening the same object; keep them to close().
  return new LogStore(new MemoryLog(), {
    ...options,
    snapshotEveryBytes: Number.POSITIVE_INFINITY,
  });
}
