/**
 * The byte-level log: one logical, append-only byte space (on disk: chopped into segment
 * files). It knows nothing about records beyond bytes; the store above encodes records,
 * assigns positions and decides what is committed.
 *
 * Operations a cluster needs are here on purpose: appending raw record bytes at a given
 * position (`write`), and cutting the log back to a position (`truncate`).
 */
export interface Log {
  /** Opens (creating if needed) and finds the end. */
  open(): Promise<void>;
  /** Bytes written so far (durable only after `sync`). */
  readonly end: number;
  /** Bytes the log occupies on its medium (0 in memory). */
  readonly sizeOnDisk: number;
  /** Reads up to `length` bytes at `position` (fewer at the end of the log). */
  read(position: number, length: number): Promise<Buffer>;
  /**
   * `read`, synchronously (the consensus core's log view is synchronous). Blocks the event
   * loop on disk: for bounded replication reads and header probes only.
   */
  readSync(position: number, length: number): Buffer;
  /**
   * `read` when this process still holds all of those bytes as it wrote them (the memory log
   * always; a disk log while they are in its tail cache); otherwise undefined. Every record
   * reached `write` with its CRC computed from these very bytes or checked on receipt, so a
   * reader of held bytes checks their framing only: the CRC guards what comes back from a
   * disk.
   */
  readHeld(position: number, length: number): Buffer | undefined;
  /** Writes `data` at `position`, which must equal `end`. */
  write(position: number, data: Buffer): Promise<void>;
  /**
   * Makes everything written so far durable. `background`: the caller has more work queued
   * behind this sync (a group commit of several writes), so a disk log syncs off the event
   * loop's thread and lets it gather the next group meanwhile.
   */
  sync(background?: boolean): Promise<void>;
  /** Cuts the log back to `position` (durably). */
  truncate(position: number): Promise<void>;
  /**
   * At open: makes the bytes from `position` to the end durable whatever wrote them (a
   * process that crashed after its writes, before its fsync, leaves them in the page cache
   * only): fdatasync of every segment holding bytes at or past `position`, and the directory.
   */
  syncFrom(position: number): Promise<void>;
  /** Where `position` is, for error messages: e.g. "chunk-000001.log at offset 12 in /data". */
  describePosition(position: number): string;
  /** The byte offset of `position` in its file, where a disk's sectors fall (in memory: itself). */
  fileOffset(position: number): number;
  /** Bytes the medium can still take (free space of the file system; Infinity in memory). */
  availableBytes(): Promise<number>;
  close(): Promise<void>;

  /**
   * The checkpoint: the last position known durable and the last commit position, written
   * lazily (no fsync unless `sync`), so either may lag; neither is ever ahead (`durable` of
   * fsync'd data, `commit` of what was committed). Each is null when unknown or damaged.
   */
  readCheckpoint(): Promise<Checkpoint>;
  writeCheckpoint(checkpoint: { durable: number; commit: number }, sync: boolean): Promise<void>;
  /** Consensus hard state (opaque bytes), written atomically and durably. null when none. */
  readHardState(): Promise<Buffer | null>;
  writeHardState(data: Buffer): Promise<void>;
}

export interface Checkpoint {
  /** Last position known durable (fsync'd). */
  readonly durable: number | null;
  /** Last commit position recorded (the consensus commit when autoCommit is false). */
  readonly commit: number | null;
}

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** What an operator can do about a damaged log; ends every CORRUPTED message of recovery. */
export const RECOVERY_ADVICE =
  "Refusing to open rather than drop or guess data. A cluster member: move its data " +
  "directory aside and restart it empty, it re-syncs from the cluster. A single node: " +
  "restore the data directory from a backup.";

export const silentLogger: Logger = Object.freeze({
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
});
