import type { Logger } from "pino";
import { NotLeaderError } from "../node-types.js";
import { ReaderGone, StoreError, type StoredEvent, type StreamStore } from "../streams/types.js";

/** Where a subscription starts. AFTER is exclusive. */
export type SubscriptionStart =
  | { readonly kind: "start" }
  | { readonly kind: "end" }
  | { readonly kind: "after"; readonly value: number };

export type SubscriptionTarget =
  | { readonly kind: "stream"; readonly streamId: string }
  | {
      readonly kind: "all";
      /** undefined: every event. */
      readonly filter?: (event: StoredEvent) => boolean;
      /**
       * With a filter: send a checkpoint (events() with no events) once this many records
       * were examined with no match. Undefined: at most one every `checkpointIntervalMs`,
       * and one at the end of history.
       */
      readonly checkpointInterval?: number;
    };

/**
 * Why a subscription ended. NOT_READY: the storage is out of reach for now (a shared database
 * that went away); the client subscribes again from where it was, as after a lost connection.
 * NOT_LEADER: this node cannot serve it now, another can (an instance cut off from its shared
 * database); the client subscribes again from where it was, on another node.
 */
export type DropCode =
  | "STREAM_DELETED"
  | "SHUTTING_DOWN"
  | "INTERNAL"
  | "INVALID_ARGUMENT"
  | "UNSUBSCRIBED"
  | "NOT_READY"
  | "NOT_LEADER";

/**
 * Where a subscription delivers. The transport implements it; the subscription never buffers
 * more than one store page, and asks `canSend()` before each read so a slow reader stops it.
 */
export interface SubscriptionSink {
  confirmed(headPosition: number): void;
  /** `checkpointPosition`: filtered $all only; resume AFTER it. */
  events(events: StoredEvent[], checkpointPosition: number | undefined): void;
  caughtUp(position: number): void;
  dropped(code: DropCode, message: string, streamId?: string): void;
  /** False while the transport's outgoing buffer is above its high-water mark. */
  canSend(): boolean;
  /** Calls `resume` once when the transport can take more (after canSend() returned false). */
  whenWritable(resume: () => void): void;
}

export interface SubscriptionOptions {
  readonly store: StreamStore;
  readonly target: SubscriptionTarget;
  readonly start: SubscriptionStart;
  readonly initialCredit: number;
  readonly sink: SubscriptionSink;
  readonly logger: Logger;
  /** Largest number of events read (and sent) in one go. */
  readonly pageSize?: number;
  /** Upper bound of records one filtered $all read examines. */
  readonly maxScan?: number;
  /** Least time between two event-less checkpoint messages of a filtered $all subscription. */
  readonly checkpointIntervalMs?: number;
  /** Injectable clock (ms). */
  readonly now?: () => number;
  /**
   * Whether this node may not have committed yet what the cluster has: a follower or a
   * read-only replica, or (given a $all position) a leader that holds that position in its
   * log but has not committed it yet. A resume point beyond what this node has is then waited
   * for (the subscription is confirmed at once and continues when the node gets there)
   * instead of refused. Default: never (a single node's log is the whole log).
   */
  readonly mayLag?: (position?: number) => boolean;
}

/** Outstanding credit never grows beyond this, whatever the client grants. */
export const MAX_CREDIT = 1_000_000;

/**
 * A catch-up subscription that turns live: it reads history in pages from the store, then
 * follows the committed tail (woken by `store.onCommit`), always reading from its own cursor, so
 * nothing is held in memory beyond one page, nothing repeats and nothing is skipped. Delivery
 * is limited by credit (events the client may receive) and by the transport's buffer.
 */
export class Subscription {
  readonly #o: SubscriptionOptions;
  readonly #pageSize: number;
  readonly #maxScan: number;
  readonly #checkpointIntervalMs: number;
  readonly #now: () => number;
  /** Stream: next revision to read. $all: next position to read (inclusive). */
  #cursor = 0;
  /** $all: events at or before this position are skipped (resuming AFTER an event's position). */
  #skipThrough = -1;
  #credit: number;
  #running = false;
  #dirty = true;
  #closed = false;
  /** Aborts on close: a read of this subscription still waiting for its turn is dropped. */
  readonly #left = new AbortController();
  #caughtUp = false;
  #waitingForTransport = false;
  #lastCheckpointAt = Number.NEGATIVE_INFINITY;
  /** Records examined since the last match or checkpoint (with a checkpoint interval). */
  #sinceCheckpoint = 0;
  #unlisten: (() => void) | undefined;
  /** Set once the start point is resolved: no reading before. */
  #started = false;
  /** Called on close: ends a wait for the node to reach the resume point. */
  #onClose: (() => void) | undefined;
  /**
   * Stream resumed AFTER this revision on a node that may lag: caught-up is reported only once
   * this node's stream has reached it (else the client would hear "caught up" from a node that
   * is behind what it has already seen).
   */
  #resumeRevision: number | undefined;

  constructor(options: SubscriptionOptions) {
    this.#o = options;
    this.#pageSize = Math.max(1, options.pageSize ?? 4096);
    this.#maxScan = Math.max(1, options.maxScan ?? 16_384);
    this.#checkpointIntervalMs = options.checkpointIntervalMs ?? 1_000;
    this.#now = options.now ?? Date.now;
    this.#credit = Math.min(MAX_CREDIT, Math.max(0, options.initialCredit));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves the start point, confirms, and begins delivering. Errors drop the subscription. */
  async start(): Promise<void> {
    const { store, target, start } = this.#o;
    try {
      // Listen before resolving the start so no commit between the two is missed.
      this.#unlisten = store.onCommit(() => this.#kick());
      let confirmed = false;
      if (target.kind === "all") {
        if (start.kind === "after") {
          const p = start.value;
          // Resuming on a node that has not committed that far yet (a follower that is behind):
          // confirm, wait until it has, then go on. The connection's heartbeat bounds the wait.
          if (p >= store.commitPosition && this.#o.mayLag?.(p) === true) {
            this.#o.sink.confirmed(store.commitPosition);
            confirmed = true;
            await this.#untilCommitted(p + 1);
            if (this.#closed) return;
          }
          await this.#resolveAfterPosition(p);
        } else this.#cursor = start.kind === "start" ? 0 : store.commitPosition;
      } else if (start.kind === "start") {
        this.#cursor = 0;
      } else if (start.kind === "after") {
        this.#cursor = start.value + 1;
        if (this.#o.mayLag?.() === true) this.#resumeRevision = start.value;
      } else {
        this.#cursor = await this.#streamEnd(target.streamId);
      }
      if (this.#closed) return;
      if (!confirmed) this.#o.sink.confirmed(store.commitPosition);
      this.#started = true;
      this.#kick();
    } catch (err) {
      this.#fail(err);
    }
  }

  grant(credit: number): void {
    if (this.#closed || credit <= 0) return;
    this.#credit = Math.min(MAX_CREDIT, this.#credit + credit);
    this.#kick();
  }

  /** Stops without telling the client (unsubscribe, connection gone). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#left.abort(new ReaderGone("the subscription ended"));
    this.#unlisten?.();
    this.#unlisten = undefined;
    this.#onClose?.();
    this.#onClose = undefined;
  }

  /** Resolves once the commit position is at least `position`, or the subscription closed. */
  #untilCommitted(position: number): Promise<void> {
    const store = this.#o.store;
    return new Promise<void>((resolve) => {
      if (this.#closed || store.commitPosition >= position) {
        resolve();
        return;
      }
      const done = (): void => {
        off();
        this.#onClose = undefined;
        resolve();
      };
      const off = store.onCommit((commit) => {
        if (commit >= position) done();
      });
      this.#onClose = done;
    });
  }

  /** Stops and tells the client why. */
  drop(code: DropCode, message: string, streamId?: string): void {
    if (this.#closed) return;
    this.close();
    this.#o.sink.dropped(code, message, streamId);
  }

  /**
   * Log positions are record offsets, so "after p" depends on what p is: an event's position
   * (read from p, skip that event) or a checkpoint, which this server reports as the next
   * record's offset minus one (read from p + 1). Only one of the two is a record boundary.
   */
  async #resolveAfterPosition(p: number): Promise<void> {
    const probe = async (from: number): Promise<boolean> => {
      try {
        await this.#o.store.readAll({
          direction: "forwards",
          fromPosition: from,
          maxCount: 1,
          maxScan: 1,
          signal: this.#left.signal,
        });
        return true;
      } catch (err) {
        if (err instanceof StoreError && err.code === "INVALID_ARGUMENT") return false;
        throw err;
      }
    };
    if (await probe(p + 1)) {
      this.#cursor = p + 1;
    } else if (await probe(p)) {
      this.#cursor = p;
      this.#skipThrough = p;
    } else {
      const commit = this.#o.store.commitPosition;
      throw new StoreError(
        "INVALID_ARGUMENT",
        p >= commit
          ? `position ${p} is beyond the end of this log (commit position ${commit})`
          : `position ${p} is neither an event position nor a checkpoint of this log (commit position ${commit})`,
      );
    }
  }

  async #streamEnd(streamId: string): Promise<number> {
    try {
      const r = await this.#o.store.readStream(streamId, {
        direction: "backwards",
        fromRevision: "end",
        maxCount: 1,
        signal: this.#left.signal,
      });
      return r.lastRevision + 1;
    } catch (err) {
      if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") return 0;
      throw err;
    }
  }

  #kick(): void {
    this.#dirty = true;
    if (this.#running || this.#closed || !this.#started) return;
    this.#running = true;
    this.#pump().then(
      () => {
        this.#running = false;
        // A kick that landed while the pump was finishing must not be lost.
        if (
          this.#dirty &&
          !this.#closed &&
          !this.#waitingForTransport &&
          !(this.#credit <= 0 && this.#caughtUp)
        ) {
          this.#kick();
        }
      },
      (err: unknown) => {
        this.#running = false;
        this.#fail(err);
      },
    );
  }

  async #pump(): Promise<void> {
    const { sink } = this.#o;
    while (!this.#closed) {
      if (this.#credit <= 0 && this.#caughtUp) return; // credit() kicks us again
      if (!sink.canSend()) {
        if (!this.#waitingForTransport) {
          this.#waitingForTransport = true;
          sink.whenWritable(() => {
            this.#waitingForTransport = false;
            this.#kick();
          });
        }
        return;
      }
      if (!this.#dirty) return; // onCommit kicks us again
      this.#dirty = false;
      // With no credit, still look for the end (to report caught-up), reading nothing.
      if (this.#credit <= 0) {
        const atEnd = await this.#atEnd();
        if (this.#closed) return;
        if (atEnd) this.#reportCaughtUp();
        continue; // credit may have arrived meanwhile; the loop head decides
      }
      const more = await this.#readOnce();
      if (more) this.#dirty = true;
    }
  }

  /** True when nothing is left to read right now. */
  async #atEnd(): Promise<boolean> {
    const { target, store } = this.#o;
    if (target.kind === "all") return this.#cursor >= store.commitPosition;
    const end = await this.#streamEnd(target.streamId);
    return end <= this.#cursor && this.#reached(end - 1);
  }

  /** False while this node's stream (last revision `last`) is behind the resume point. */
  #reached(last: number): boolean {
    if (this.#resumeRevision === undefined) return true;
    if (last < this.#resumeRevision) return false;
    this.#resumeRevision = undefined;
    return true;
  }

  /** Reads and delivers one page; returns true when more may be waiting. */
  async #readOnce(): Promise<boolean> {
    const { target, store, sink } = this.#o;
    const maxCount = Math.min(this.#credit, this.#pageSize);
    if (target.kind === "stream") {
      let events: StoredEvent[] = [];
      let endOfStream = true;
      let lastRevision = -1;
      try {
        const r = await store.readStream(target.streamId, {
          direction: "forwards",
          fromRevision: this.#cursor,
          maxCount,
          signal: this.#left.signal,
        });
        events = r.events;
        endOfStream = r.endOfStream;
        lastRevision = r.lastRevision;
      } catch (err) {
        // Not there yet (or soft-deleted): wait for it to be written.
        if (!(err instanceof StoreError && err.code === "STREAM_NOT_FOUND")) throw err;
      }
      if (this.#closed) return false;
      const last = events[events.length - 1];
      if (last) {
        this.#cursor = last.revision + 1;
        this.#credit -= events.length;
        sink.events(events, undefined);
      }
      if (endOfStream) {
        // On a node behind the resume point, wait for it (commits kick us) before caught-up.
        if (this.#reached(lastRevision)) this.#reportCaughtUp();
        return false;
      }
      return events.length > 0;
    }

    const filtered = target.filter !== undefined;
    const interval = filtered ? target.checkpointInterval : undefined;
    // With an interval, a read stops where the next checkpoint falls due.
    const maxScan =
      interval === undefined
        ? this.#maxScan
        : Math.max(1, Math.min(this.#maxScan, interval - this.#sinceCheckpoint));
    const r = await store.readAll({
      direction: "forwards",
      fromPosition: this.#cursor,
      maxCount,
      ...(filtered ? { filter: target.filter, maxScan } : {}),
      signal: this.#left.signal,
    });
    if (this.#closed) return false;
    const skip = this.#skipThrough;
    if (skip >= 0) {
      this.#skipThrough = -1;
      r.events = r.events.filter((e) => e.position > skip);
    }
    const moved = r.nextPosition > this.#cursor;
    this.#cursor = Math.max(this.#cursor, r.nextPosition);
    // Resume AFTER the last examined position: positions are integers, so cursor - 1.
    const checkpoint = filtered && this.#cursor > 0 ? this.#cursor - 1 : undefined;
    if (r.events.length > 0) {
      this.#credit -= r.events.length;
      this.#lastCheckpointAt = this.#now();
      this.#sinceCheckpoint = 0;
      sink.events(r.events, checkpoint);
    } else if (interval !== undefined) {
      // Records without events (none visible, or only other kinds) count too.
      this.#sinceCheckpoint += r.scanned ?? 0;
      if (this.#sinceCheckpoint >= interval && moved && checkpoint !== undefined) {
        this.#sinceCheckpoint = 0;
        sink.events([], checkpoint);
      }
    } else if (filtered && moved && checkpoint !== undefined) {
      const now = this.#now();
      if (r.endOfStream || now - this.#lastCheckpointAt >= this.#checkpointIntervalMs) {
        this.#lastCheckpointAt = now;
        sink.events([], checkpoint);
      }
    }
    if (r.endOfStream) {
      this.#reportCaughtUp();
      return false;
    }
    return r.events.length > 0 || moved;
  }

  #reportCaughtUp(): void {
    if (this.#caughtUp || this.#closed) return;
    this.#caughtUp = true;
    const { target, store } = this.#o;
    this.#o.sink.caughtUp(
      target.kind === "all" ? Math.max(0, this.#cursor - 1) : store.commitPosition,
    );
  }

  #fail(err: unknown): void {
    if (this.#closed) return;
    if (err instanceof StoreError && err.code === "STREAM_DELETED") {
      const streamId = this.#o.target.kind === "stream" ? this.#o.target.streamId : undefined;
      this.drop("STREAM_DELETED", err.message, streamId);
    } else if (err instanceof StoreError && err.code === "INVALID_ARGUMENT") {
      this.drop("INVALID_ARGUMENT", err.message);
    } else if (err instanceof StoreError && err.code === "STORE_CLOSED") {
      this.drop("SHUTTING_DOWN", "the node is shutting down");
    } else if (err instanceof StoreError && err.code === "UNAVAILABLE") {
      this.#o.logger.warn(
        { err: err.message },
        "subscription dropped: the storage is unavailable; its client subscribes again",
      );
      this.drop("NOT_READY", err.message);
    } else if (err instanceof NotLeaderError) {
      this.drop("NOT_LEADER", err.message);
    } else {
      this.#o.logger.error({ err }, "subscription failed");
      this.drop("INTERNAL", "internal error");
    }
  }
}
