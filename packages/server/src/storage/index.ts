/**
 * Storage: the log (segment files or memory), the record codec, the stream index and the
 * StreamStore built over them. `createDiskStore` backs `--db`, `createMemoryStore` `--mem-db`.
 */
import { join } from "node:path";
import {
  DiskLog,
  DEFAULT_PREALLOCATE_BYTES,
  DEFAULT_SEGMENT_BYTES,
  DEFAULT_TAIL_CACHE_BYTES,
} from "./disk-log.js";
import { MemoryKv } from "./index/kv.js";
import { LmdbKv } from "./index/lmdb-kv.js";
import type { Logger } from "./log.js";
import { MemoryLog } from "./memory-log.js";
import { LogStore, type LogStoreOptions } from "./store.js";

export { DEFAULT_SEGMENT_BYTES } from "./disk-log.js";
export {
  DEFAULT_CHECKPOINT_EVERY_MS,
  DEFAULT_IDEMPOTENCY_WINDOW,
  DEFAULT_MAX_SCAN,
  DEFAULT_STORAGE_FULL_PROBE_EVERY_MS,
  LogStore,
} from "./store.js";
export { TruncatedError } from "./store.js";
export type { LogStoreOptions, LogStoreStats } from "./store.js";
export { isReplicatedLog, isTruncatedError } from "./replicated-log.js";
export type {
  EpochEntry,
  RawBatches,
  ReplicatedLog,
  ReplicatedStore,
  StoredHardState,
} from "./replicated-log.js";
export { encodeEpoch } from "./record.js";
export type { Checkpoint, Log, Logger } from "./log.js";
export { SOFT_DELETED_KEY } from "../streams/metadata.js";
export { DEFAULT_STREAM_CACHE } from "./index/stream-cache.js";

/**
 * The index's file in a data directory (LMDB; its lock file is `index.mdb-lock`, its event-id
 * runs are in `index-ids/`).
 */
export const INDEX_FILE = "index.mdb";
/** Index files of older versions: derived data, removed at open (the index is rebuilt). */
const OBSOLETE_INDEX_FILES = ["index.snapshot", "event-ids.mdb", "event-ids.mdb-lock"];

export interface DiskStoreOptions {
  /** Directory of the log; created when missing. */
  dir: string;
  logger?: Logger;
  /** Size of one segment file (default 256 MiB). */
  segmentBytes?: number;
  /**
   * Zeros kept written ahead of the log's end, so an append's fdatasync has no file size to
   * write (default 4 MiB; 0: none). See DiskLog.preallocate.
   */
  preallocateBytes?: number;
  /**
   * The log's last bytes kept in memory, so reads of its tail need no file read (default
   * 4 MiB; 0: none). See TailCache.
   */
  tailCacheBytes?: number;
  /**
   * Recent event ids kept in memory in front of the on-disk event-id index (default 100,000):
   * a cache; idempotency of `any` / `stream_exists` appends does not depend on it.
   */
  idempotencyWindow?: number;
  /** Stream states kept in memory (default 100,000); every stream's index is on disk. */
  streamCache?: number;
  /** How the index is written in the background (tests). */
  indexFlush?: LogStoreOptions["indexFlush"];
  /** false: a cluster moves the commit position with setCommitPosition(). Default true. */
  autoCommit?: boolean;
  /** The durable end and the commit position reach the checkpoint within this (default 100). */
  checkpointEveryMs?: number;
  /** With a full disk, how often free space is looked for; writes resume then (default 1000). */
  storageFullProbeEveryMs?: number;
  nowMs?: () => number;
  /** Told how long each log sync (fdatasync) of the write loop took, in seconds. */
  onSync?: (seconds: number) => void;
}

export interface MemoryStoreOptions {
  logger?: Logger;
  idempotencyWindow?: number;
  streamCache?: number;
  indexFlush?: LogStoreOptions["indexFlush"];
  autoCommit?: boolean;
  checkpointEveryMs?: number;
  nowMs?: () => number;
}

export function createDiskStore(options: DiskStoreOptions): LogStore {
  const log = new DiskLog({
    dir: options.dir,
    segmentBytes: options.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    preallocateBytes: options.preallocateBytes ?? DEFAULT_PREALLOCATE_BYTES,
    tailCacheBytes: options.tailCacheBytes ?? DEFAULT_TAIL_CACHE_BYTES,
    ...(options.logger !== undefined && { logger: options.logger }),
  });
  const logger = options.logger;
  const index = new LmdbKv(join(options.dir, INDEX_FILE), {
    obsolete: OBSOLETE_INDEX_FILES.map((f) => join(options.dir, f)),
    ...(logger !== undefined && {
      onMergeError: (err: Error) =>
        logger.warn(
          { err },
          "merging event-id runs of the index failed; retrying at the next write",
        ),
      onDiscard: (reason: string) =>
        logger.warn({ reason }, "the index is emptied and rebuilt from the log"),
    }),
  });
  return new LogStore(log, { ...options, index });
}

export function createMemoryStore(options: MemoryStoreOptions = {}): LogStore {
  return new LogStore(new MemoryLog(), { ...options, index: new MemoryKv() });
}
