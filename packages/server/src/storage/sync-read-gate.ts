/**
 * Whether a stream read may read the log file synchronously, on the event loop's thread.
 *
 * A stream read walks its events through their back-links, one small read per event whose
 * neighbours in the log belong to other streams (an aggregate's events, written among
 * everyone else's). Each such read on the thread pool (`Log.read`) costs a hand-off to another
 * thread and back: about 50 µs of CPU and wait per event on a two-core VM, against 2–8 µs for
 * `Log.readSync` when the bytes are in the operating system's page cache, which is where a
 * recently written or recently read log is.
 *
 * A synchronous read that waits for the disk stalls the whole process instead (other
 * clients, heartbeats, elections). So every synchronous read is timed, and stream reads go
 * back to the thread pool for SYNC_READS_PAUSE_MS when the disk shows: after one read of
 * VERY_SLOW_SYNC_READ_MS, or two of SLOW_SYNC_READ_MS within SLOW_READS_WINDOW_MS. A single
 * read of a few ms from memory happens on a busy VM (the thread is preempted, or the copy
 * faults pages in: about 1 in 2,000 reads here), while a walk over a log that is not in
 * memory meets slow reads one after another. The process stalls for at most about two slow
 * reads per pause, and stream reads give the event loop a turn at least every SLICE_MS
 * (fair-turns.ts) however they read.
 *
 * A disk that stays slow would still stall the process once a second, and one slow enough
 * (a read taking longer than an election timeout) would cost a cluster leader its leadership
 * each time. So a pause that follows the end of the last one within SLOW_AGAIN_WITHIN_MS is
 * twice as long as that one, up to MAX_SYNC_READS_PAUSE_MS: against such a disk, one stall a
 * minute. Once reads have gone on synchronously for SLOW_AGAIN_WITHIN_MS without a pause, the
 * next pause is SYNC_READS_PAUSE_MS again.
 */
import { performance } from "node:perf_hooks";

/** A synchronous read this slow may have come from the disk. */
export const SLOW_SYNC_READ_MS = 2;
/** Two slow reads this close together: the disk is being read. */
export const SLOW_READS_WINDOW_MS = 100;
/** A synchronous read this slow came from the disk (or a disk that is busy). */
export const VERY_SLOW_SYNC_READ_MS = 10;
/** How long stream reads stay on the thread pool once the disk shows. */
export const SYNC_READS_PAUSE_MS = 1_000;
/** A pause this soon after the last one ended: the disk is still slow, pause twice as long. */
export const SLOW_AGAIN_WITHIN_MS = 10_000;
/** The longest pause. */
export const MAX_SYNC_READS_PAUSE_MS = 60_000;

export interface SyncReadGateOptions {
  /** Milliseconds of a monotonic clock (default performance.now). */
  readonly now?: () => number;
}

export class SyncReadGate {
  readonly #now: () => number;
  /** Synchronous reads are allowed again from this time. */
  #pausedUntil = -Infinity;
  /** How long the last pause was. */
  #pauseMs = 0;
  /** When the last slow read ended. */
  #lastSlowAt = -Infinity;
  #pauses = 0;

  constructor(options: SyncReadGateOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
  }

  /** True when the next read may be synchronous. */
  get open(): boolean {
    return this.#now() >= this.#pausedUntil;
  }

  /** How many times slow reads have paused synchronous reads. */
  get pauses(): number {
    return this.#pauses;
  }

  /** Runs `read` (a synchronous read) and times it: slow ones pause synchronous reads. */
  read<T>(read: () => T): T {
    const start = this.#now();
    try {
      return read();
    } finally {
      this.#took(start, this.#now());
    }
  }

  #took(start: number, end: number): void {
    const ms = end - start;
    if (ms < SLOW_SYNC_READ_MS) return;
    if (ms >= VERY_SLOW_SYNC_READ_MS || end - this.#lastSlowAt <= SLOW_READS_WINDOW_MS) {
      this.#pauseMs =
        end - this.#pausedUntil < SLOW_AGAIN_WITHIN_MS
          ? Math.min(this.#pauseMs * 2, MAX_SYNC_READS_PAUSE_MS)
          : SYNC_READS_PAUSE_MS;
      this.#pausedUntil = end + this.#pauseMs;
      this.#pauses++;
    }
    this.#lastSlowAt = end;
  }
}
