/**
 * One persistent subscription group at run time (on the leader). It ties together the pieces,
 * each in its own module:
 *
 * - source.ts: reads the source (a stream or $all) from the checkpoint;
 * - dispatch.ts: who holds which event (queue, consumers' buffers, delayed retries), with the
 *   strategy functions of strategies.ts;
 * - delays.ts: the delayed retries' queue and their one timer;
 * - acks.ts: ack durability (the acks stream);
 * - checkpoint.ts: when and where checkpoints go;
 * - parking.ts: parked events and their replay.
 *
 * "Done" means durable: an event leaves the group's memory (and may be passed by the
 * checkpoint) only once the acks record holding it is committed.
 * See docs/persistent-subscriptions-design.md.
 */
import type { Logger } from "pino";
import { METADATA_EVENT_TYPE, metadataStreamOf } from "@chorus/protocol";
import { eventBytes } from "../streams/page-bytes.js";
import type { StoredEvent, StreamStore } from "../streams/types.js";
import { AckLog, MAX_ACKS_PER_RECORD } from "./acks.js";
import { CheckpointClock, checkpointCandidate, readCheckpoint } from "./checkpoint.js";
import {
  acksStream,
  checkpointStream,
  newEntry,
  parkedStream,
  streamEnd,
  systemEvent,
  type Consumer,
  type ConsumerHandle,
  type ConsumerOptions,
  type ConsumerSink,
  type DropCode,
  type Entry,
  type GroupKey,
  type InitialCursor,
  type NackAction,
  type ReadPoint,
} from "./common.js";
import { DueTimer } from "./delays.js";
import { Dispatcher } from "./dispatch.js";
import { OwnStream } from "./own-stream.js";
import { parkedCopy, Parking } from "./parking.js";
import type { GroupSettings } from "./settings.js";
import { Source } from "./source.js";

export {
  acksStream,
  checkpointStream,
  groupBase,
  MAX_RETRY_DELAY_MS,
  parkedStream,
  type ConsumerHandle,
  type ConsumerOptions,
  type ConsumerSink,
  type DropCode,
  type GroupKey,
  type InitialCursor,
  type NackAction,
} from "./common.js";
export { fromParkedCopy } from "./parking.js";

export interface ConsumerInfo {
  name: string;
  connection: string;
  inFlight: number;
  bufferSize: number;
  delivered: number;
  acked: number;
}

export interface GroupInfo {
  streamId: string;
  group: string;
  settings: GroupSettings;
  status: "Live" | "Idle";
  consumers: ConsumerInfo[];
  inFlight: number;
  /** Events read ahead and not yet done (handed out or waiting), and their bytes. */
  bufferedEvents: number;
  bufferedBytes: number;
  parkedCount: number;
  lastCheckpoint: number | undefined;
  deliveryRate: number;
  ackRate: number;
  totalDelivered: number;
  totalAcked: number;
  totalParked: number;
}

export interface GroupDependencies {
  readonly store: StreamStore;
  readonly logger: Logger;
  /** Called once when the group stops on its own (a write failed): the service forgets it. */
  readonly onFailed: (err: unknown) => void;
  /** Default REJOIN_GRACE_MS; 0 for a group just created (nobody holds its events). */
  readonly rejoinGraceMs?: number;
  /**
   * A group just created: no consumer can hold events of it from before (so no claim of an
   * event it has not read is accepted). Otherwise the group is rebuilt from the log, and any
   * event committed before it was rebuilt may be out at a consumer of its previous run.
   */
  readonly fresh?: boolean;
  /** Wall-clock ms (the due times of delayed retries are recorded in it). */
  readonly nowMs?: () => number;
}

/**
 * A group rebuilt from the log (a new leader, a restart) waits this long after its first
 * consumer joins before it hands anything out, so the consumers that held events before can
 * join again and claim them (instead of those events going to whoever joined first).
 */
export const REJOIN_GRACE_MS = 500;
/** Events per second, averaged over this window. */
const RATE_WINDOW_MS = 10_000;

/**
 * Bytes of events a group reads ahead of its consumers at most, whatever its buffer sizes say
 * in events: 500 events (the default historyBufferSize) of 1 MiB each would be 500 MiB, for
 * each group. The group reads on once what it holds drops below this (by a read's page, 4 MiB,
 * at most beyond it).
 */
export const GROUP_BUFFER_BYTES = 32 * 1024 * 1024;

/** Counts in one-second buckets, for a rate over the last RATE_WINDOW_MS. */
class RateMeter {
  readonly #buckets = new Map<number, number>();
  constructor(private readonly now: () => number) {}
  add(n: number): void {
    const second = Math.floor(this.now() / 1000);
    this.#buckets.set(second, (this.#buckets.get(second) ?? 0) + n);
    for (const s of this.#buckets.keys())
      if (s <= second - RATE_WINDOW_MS / 1000) this.#buckets.delete(s);
  }
  perSecond(): number {
    const now = this.now();
    const from = Math.floor((now - RATE_WINDOW_MS) / 1000);
    let sum = 0;
    for (const [s, n] of this.#buckets) if (s > from) sum += n;
    return sum / (RATE_WINDOW_MS / 1000);
  }
}

export class Group {
  readonly key: GroupKey;
  #settings: GroupSettings;
  readonly #d: GroupDependencies;
  readonly #now: () => number;
  readonly #initial: InitialCursor;

  readonly #source: Source;
  /** Events read and not yet durably done, in read order (so the first is the lowest). */
  readonly #pending = new Map<number, Entry>();
  /** Their bytes (`eventBytes`), bounded by GROUP_BUFFER_BYTES. */
  #pendingBytes = 0;
  /** Parked events being replayed; never part of the checkpoint. */
  readonly #replays = new Map<number, Entry>();
  readonly #dispatcher: Dispatcher;
  readonly #delayTimer: DueTimer;
  readonly #acks = new AckLog();
  readonly #cp = new CheckpointClock();
  readonly #parking = new Parking();

  /** Positions not read yet that a rejoining consumer says it holds. */
  readonly #claims = new Map<number, Consumer>();
  /**
   * Events below this position may be out at consumers of the group's previous run (another
   * leader, or before an update): what a rejoining consumer may claim beyond what this run
   * has read. -1 for a group just created.
   */
  #claimBound = -1;

  /** The group's own streams, written with the revision expected (own-stream.ts). */
  readonly #own: { acks: OwnStream; checkpoint: OwnStream; parked: OwnStream };
  /** Checkpoints and replay ends being written (they also write metadata): `settled()` waits. */
  readonly #sideWrites = new Set<Promise<void>>();

  #flushing = false;
  #flushScheduled = false;
  /** Waiting for the parked copies and acks queued now to be written (`#flushed`). */
  #flushWaiters: (() => void)[] = [];
  #checkpointing = false;
  /**
   * A replay's round is being finished (#finishReplay): one at a time. An event done while
   * the round's end is written would otherwise start a second finish, whose end clears the
   * next round's and offers a third round ahead of the rest of the second.
   */
  #finishingReplay = false;
  #checkpointTimer: NodeJS.Timeout | undefined;

  /** Set by load(): how long to wait for rejoining consumers; then cleared. */
  #graceMs = 0;
  #holdUntilMs: number | undefined;
  #holdTimer: NodeJS.Timeout | undefined;
  #reading = false;
  #stopped = false;
  #unlisten: (() => void) | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #nextConsumerId = 1;

  readonly #deliveries: RateMeter;
  readonly #ackRate: RateMeter;
  #totalDelivered = 0;
  #totalAcked = 0;
  #totalParked = 0;

  constructor(
    deps: GroupDependencies,
    key: GroupKey,
    settings: GroupSettings,
    initial: InitialCursor,
  ) {
    this.#d = deps;
    this.key = key;
    this.#settings = settings;
    this.#initial = initial;
    this.#now = deps.nowMs ?? (() => performance.timeOrigin + performance.now());
    this.#source = new Source(key.streamId, settings.filter);
    this.#dispatcher = new Dispatcher(() => this.#settings);
    this.#delayTimer = new DueTimer(this.#now, () => this.#delaysDue());
    this.#deliveries = new RateMeter(this.#now);
    this.#ackRate = new RateMeter(this.#now);
    this.#own = {
      acks: new OwnStream(acksStream(key)),
      checkpoint: new OwnStream(checkpointStream(key)),
      parked: new OwnStream(parkedStream(key)),
    };
  }

  get settings(): GroupSettings {
    return this.#settings;
  }

  get consumerCount(): number {
    return this.#dispatcher.consumers.length;
  }

  // ---------------------------------------------------------------- loading

  /** Rebuilds the group's position from its checkpoint and the acks after it. */
  async load(): Promise<void> {
    const store = this.#d.store;
    this.#graceMs = this.#d.rejoinGraceMs ?? REJOIN_GRACE_MS;
    this.#claimBound = this.#d.fresh === true ? -1 : store.commitPosition;
    await this.#parking.load(store, this.key);
    const { checkpoint, acksFrom, last } = await readCheckpoint(store, this.key);
    this.#own.checkpoint.loaded(last);
    this.#cp.checkpoint = checkpoint;
    this.#source.start(checkpoint, this.#initial);
    await this.#acks.load(
      store,
      this.key,
      acksFrom,
      checkpoint?.position ?? -1,
      this.#parking.from,
    );
    this.#own.acks.loaded(this.#acks.lastRevision);
    this.#own.parked.loaded(
      await this.#parking.countWaiting(store, this.key, this.#acks.replayedDone.size),
    );
  }

  // ---------------------------------------------------------------- consumers

  /** Adds a consumer; throws when the group is full (the caller maps it). */
  addConsumer(sink: ConsumerSink, options: ConsumerOptions): ConsumerHandle {
    if (this.#stopped) throw new Error("the group has stopped");
    const id = `${this.#nextConsumerId++}`;
    const consumer: Consumer = {
      id,
      hashKey: options.name !== "" ? `name:${options.name}` : `id:${id}`,
      sink,
      options,
      inflight: new Set(),
      delivered: 0,
      acked: 0,
      closed: false,
      ack: (positions) => this.#ack(consumer, positions),
      nack: (positions, action, reason, delayMs) =>
        this.#nack(consumer, positions, action, reason, delayMs ?? 0),
      close: () => this.#removeConsumer(consumer),
    };
    this.#dispatcher.addConsumer(consumer);
    for (const p of options.held ?? []) this.#claim(consumer, p);
    if (this.#dispatcher.consumers.length === 1) this.#startRunning();
    if (this.#graceMs > 0 && this.#holdUntilMs === undefined) {
      this.#holdUntilMs = this.#now() + this.#graceMs;
      this.#holdTimer = setTimeout(() => {
        this.#holdTimer = undefined;
        this.#graceMs = 0;
        this.#dispatch();
      }, this.#graceMs);
      this.#holdTimer.unref();
    }
    // After the caller has confirmed the subscription: events never arrive before it.
    setImmediate(() => {
      this.#dispatch();
      void this.#fill();
    });
    return consumer;
  }

  /**
   * A rejoining consumer holds the event at `position`: it stays outstanding there (its ack
   * follows) instead of going to another consumer. Events handed elsewhere meanwhile stay there.
   */
  #claim(c: Consumer, position: number): void {
    const entry = this.#find(position);
    if (entry) {
      // Only an event that may be out at this consumer: one this run has handed out (and got
      // back), or one a previous run may have handed out. Never one out at another consumer.
      if (entry.state !== "queued") return;
      if (!entry.sent && entry.event.position >= this.#claimBound) return;
      this.#dispatcher.release(entry);
      this.#dispatcher.assign(entry, c, this.#now());
      entry.sent = true;
    } else if (this.#claimable(position)) {
      this.#claims.set(position, c);
    }
  }

  /**
   * Whether an event this run has not read yet may be out at a consumer: a previous run could
   * have handed it out (it was committed before this run began and lies beyond the checkpoint)
   * and it is not done (acknowledged, skipped or parked).
   */
  #claimable(position: number): boolean {
    return (
      Number.isSafeInteger(position) &&
      this.#source.ahead(position) &&
      position > (this.#cp.checkpoint?.position ?? -1) &&
      position < this.#claimBound &&
      !this.#acks.isDoneAhead(position)
    );
  }

  #startRunning(): void {
    // Commits went unobserved while the group had no consumers.
    this.#source.caughtUp = false;
    this.#unlisten ??= this.#d.store.onCommit(() => {
      this.#source.committed();
      void this.#fill();
    });
    if (this.#sweep === undefined && this.#settings.messageTimeoutMs > 0) {
      const every = Math.min(1_000, Math.max(10, Math.floor(this.#settings.messageTimeoutMs / 4)));
      this.#sweep = setInterval(() => this.#timeouts(), every);
      this.#sweep.unref();
    }
  }

  #removeConsumer(c: Consumer): void {
    if (c.closed) return;
    c.closed = true;
    // Its outstanding events go to the others (not a retry the application asked for).
    this.#dispatcher.removeConsumer(c);
    for (const [p, owner] of this.#claims) if (owner === c) this.#claims.delete(p);
    if (this.#dispatcher.consumers.length === 0) this.#stopRunning();
    this.#dispatch();
  }

  #stopRunning(): void {
    this.#unlisten?.();
    this.#unlisten = undefined;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  /** Ends the group's run: every consumer is dropped with `code`. Idempotent. */
  stop(code: DropCode, message: string): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#releaseFlushWaiters();
    this.#stopRunning();
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    if (this.#checkpointTimer) clearTimeout(this.#checkpointTimer);
    this.#checkpointTimer = undefined;
    this.#delayTimer.close();
    for (const c of this.#dispatcher.clearConsumers()) {
      c.closed = true;
      c.sink.dropped(code, message);
    }
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Resolves once the writes to the group's own streams begun so far have finished: after
   * stop(), nothing of this run is written after that (a group loaded next finds it all).
   */
  async settled(): Promise<void> {
    await Promise.all([
      this.#own.acks.idle(),
      this.#own.checkpoint.idle(),
      this.#own.parked.idle(),
      ...this.#sideWrites,
    ]);
  }

  /** Runs `work` (which handles its own errors), tracked until it ends. */
  #side(work: Promise<void>): Promise<void> {
    this.#sideWrites.add(work);
    void work.finally(() => this.#sideWrites.delete(work));
    return work;
  }

  // ---------------------------------------------------------------- reading

  #cap(): number {
    return this.#source.caughtUp ? this.#settings.liveBufferSize : this.#settings.historyBufferSize;
  }

  async #fill(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      while (
        !this.#stopped &&
        this.#dispatcher.consumers.length > 0 &&
        !this.#source.caughtUp &&
        this.#pending.size < this.#cap() &&
        this.#pendingBytes < GROUP_BUFFER_BYTES
      ) {
        const room = Math.min(this.#settings.readBatchSize, this.#cap() - this.#pending.size);
        const commits = this.#source.commits;
        const { events, next, end, skipped } = await this.#source.read(
          this.#d.store,
          Math.max(1, room),
        );
        if (this.#stopped) return;
        for (const e of events) this.#take(e);
        // After the events: what the read scanned past counts as read, so the checkpoint
        // moves over events the filter left out (they count towards it like done ones).
        this.#source.advance(next);
        this.#cp.doneSince += skipped;
        if (end && commits === this.#source.commits) this.#source.caughtUp = true;
        this.#dispatch();
        this.#maybeCheckpoint();
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#reading = false;
    }
  }

  #take(e: StoredEvent): void {
    const read = this.#source.accept(e);
    if (read === undefined) return;
    if (this.#acks.takeDoneAhead(e.position)) {
      // Done before (acks stream, or acknowledged ahead of the read): never again.
      this.#cp.doneSince++;
      return;
    }
    const entry = newEntry(e, read.point, read.prev);
    this.#pending.set(e.position, entry);
    this.#pendingBytes += eventBytes(e);
    // A delayed retry a previous run recorded: its retry count, and not before its due time.
    const delay = this.#acks.takeDelay(e.position);
    this.#acks.forgetDelaysBefore(e.position);
    if (delay) entry.retryCount = delay.retryCount;
    const claimant = this.#claims.get(e.position);
    if (claimant !== undefined) this.#claims.delete(e.position);
    // Claims of positions the read has passed were not events of this source: forget them.
    if (this.#claims.size > 0)
      for (const p of this.#claims.keys()) if (p < e.position) this.#claims.delete(p);
    // A delay not yet over wins over a claim: nobody was handed the event since its nack (a
    // claimant is re-sending that nack, which is then confirmed at once).
    if (delay && delay.dueMs > this.#now()) {
      this.#dispatcher.delay(entry, delay.dueMs);
      this.#armDelays();
      return;
    }
    if (claimant !== undefined && !claimant.closed) {
      entry.sent = true;
      this.#dispatcher.assign(entry, claimant, this.#now());
      return;
    }
    this.#dispatcher.enqueue(entry);
  }

  // ---------------------------------------------------------------- dispatch

  #dispatch(): void {
    if (this.#stopped || this.#holdTimer !== undefined) return;
    const out = this.#dispatcher.dispatch(this.#now());
    for (const [c, entries] of out) {
      c.delivered += entries.length;
      this.#totalDelivered += entries.length;
      this.#deliveries.add(entries.length);
      c.sink.deliver(
        entries.map((e) => e.event),
        entries.map((e) => e.retryCount),
      );
    }
  }

  #timeouts(): void {
    if (this.#stopped) return;
    const expired = this.#dispatcher.expired(this.#now());
    for (const entry of expired) this.#retry(entry, "message timeout", 0, undefined);
    if (expired.length > 0) this.#dispatch();
  }

  /**
   * A retry the application asked for (nack retry, message timeout): counted, then parked past
   * maxRetryCount. With a delay (and the consumer that asked, to confirm it to), the event
   * waits until the delay is durable and then until its due time.
   */
  #retry(
    entry: Entry,
    reason: string,
    delayMs: number,
    asker: Consumer | undefined,
  ): "parked" | "delayed" | "queued" {
    entry.retryCount++;
    if (entry.retryCount > this.#settings.maxRetryCount) {
      this.#park(entry, `${reason}; retried ${entry.retryCount - 1} times (maxRetryCount)`);
      return "parked";
    }
    if (delayMs > 0 && asker !== undefined) {
      // Not handed out before the delay is durable: its due time is set once it is.
      this.#dispatcher.delay(entry, Infinity);
      this.#acks.addDelay(
        entry,
        {
          position: entry.event.position,
          dueMs: this.#now() + delayMs,
          retryCount: entry.retryCount,
        },
        delayMs,
        asker,
      );
      this.#scheduleFlush();
      return "delayed";
    }
    this.#dispatcher.requeue(entry);
    return "queued";
  }

  #armDelays(): void {
    this.#delayTimer.arm(this.#dispatcher.nextDueMs());
  }

  #delaysDue(): void {
    if (this.#stopped) return;
    const due = this.#dispatcher.releaseDue(this.#now());
    if (due.length > 0) this.#dispatch();
    this.#armDelays();
  }

  // ---------------------------------------------------------------- acks and nacks

  #find(position: number): Entry | undefined {
    return this.#pending.get(position) ?? this.#replays.get(position);
  }

  #ack(c: Consumer, positions: readonly number[]): void {
    if (this.#stopped) return;
    const confirmed: number[] = [];
    for (const p of positions) {
      const entry = this.#find(p);
      if (entry === undefined) {
        if (this.#claims.get(p) === c || this.#claimable(p)) {
          // Not read here yet, and a previous run of the group may have handed it out (a
          // client re-sending its ack after a failover; its held positions are capped at its
          // buffer size, so the ack need not come with a claim): recorded, so it is skipped
          // when it is read and never delivered again.
          if (this.#claims.get(p) === c) this.#claims.delete(p);
          this.#acks.add(p, undefined, c);
        } else if (this.#isDone(p)) {
          // Done already (its ack is durable): nothing to write.
          confirmed.push(p);
        }
        // Otherwise an event this group never handed out: ignored, nothing recorded.
        continue;
      }
      if (entry.state !== "finishing") {
        c.acked++;
        this.#totalAcked++;
        this.#ackRate.add(1);
      }
      this.#finish(entry, c);
    }
    if (confirmed.length > 0) c.sink.acked(confirmed);
    this.#scheduleFlush();
    this.#dispatch();
  }

  /**
   * An event this group has no entry for is done when the read has passed it (events read
   * leave memory only once done) or its ack is durable ahead of the read.
   */
  #isDone(position: number): boolean {
    return this.#source.passed(position) || this.#acks.isDoneAhead(position);
  }

  #finish(entry: Entry, waiter: Consumer | undefined): void {
    if (entry.state !== "finishing") {
      this.#dispatcher.finish(entry);
      this.#acks.add(entry.event.position, entry, undefined);
    }
    if (waiter) (entry.waiters ??= []).push(waiter);
  }

  #nack(
    c: Consumer,
    positions: readonly number[],
    action: NackAction,
    reason: string,
    delayMs: number,
  ): void {
    if (this.#stopped) return;
    const immediate: number[] = [];
    for (const p of positions) {
      const entry = this.#find(p);
      if (entry === undefined || entry.state === "finishing") {
        if (entry) (entry.waiters ??= []).push(c);
        // Done already, or never handed out here: nothing to do, nothing recorded.
        else immediate.push(p);
        continue;
      }
      if (entry.consumer !== c && (action === "retry" || action === "stop")) {
        // Not out at this consumer (given back, or handed to another since): nothing to hand back.
        immediate.push(p);
        continue;
      }
      switch (action) {
        case "skip":
          this.#finish(entry, c);
          break;
        case "park":
          (entry.waiters ??= []).push(c);
          this.#park(entry, reason || "parked by the consumer");
          break;
        case "retry":
          // A delayed retry is confirmed once its due time is durable; any other at once.
          if (this.#retry(entry, reason || "retry asked by the consumer", delayMs, c) !== "delayed")
            immediate.push(p);
          break;
        case "stop":
          immediate.push(p);
          break;
      }
    }
    if (immediate.length > 0) c.sink.acked(immediate);
    this.#scheduleFlush();
    if (action === "stop") {
      this.#removeConsumer(c);
      c.sink.dropped("UNKNOWN", `the consumer stopped: ${reason || "nack stop"}`);
      return;
    }
    this.#dispatch();
  }

  #park(entry: Entry, reason: string): void {
    this.#dispatcher.finish(entry);
    this.#parking.queue.push({ entry, reason });
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#flushing) return;
    if (!this.#acks.hasBatch && this.#parking.queue.length === 0) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#flush();
    });
  }

  #releaseFlushWaiters(): void {
    for (const resolve of this.#flushWaiters.splice(0)) resolve();
  }

  /**
   * Resolves once the events parked so far have their copies and acks records written (at
   * once when nothing waits to be written), or the group stops.
   */
  #flushed(): Promise<void> {
    const pending =
      this.#flushing ||
      this.#flushScheduled ||
      this.#parking.queue.length > 0 ||
      this.#acks.hasBatch;
    if (!pending || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.#flushWaiters.push(resolve);
      this.#scheduleFlush();
    });
  }

  /** Writes parked copies, then one acks record; one write at a time, so batches grow under load. */
  async #flush(): Promise<void> {
    if (this.#flushing || this.#stopped) return;
    this.#flushing = true;
    try {
      while (!this.#stopped && (this.#acks.hasBatch || this.#parking.queue.length > 0)) {
        if (this.#parking.queue.length > 0) {
          const parked = this.#parking.queue.splice(0, MAX_ACKS_PER_RECORD);
          await this.#own.parked.append(
            this.#d.store,
            parked.map(({ entry, reason }) => parkedCopy(entry.event, reason)),
          );
          if (this.#stopped) return;
          this.#parking.count += parked.length;
          this.#totalParked += parked.length;
          for (const { entry } of parked) this.#acks.add(entry.event.position, entry, undefined);
        }
        if (!this.#acks.hasBatch) continue;
        const batch = this.#acks.takeBatch();
        await this.#own.acks.append(
          this.#d.store,
          [systemEvent("Acked", AckLog.recordOf(batch))],
          (revision) => {
            const replayedNow = this.#acks.written(batch, revision, this.#parking.from);
            this.#parking.count = Math.max(0, this.#parking.count - replayedNow);
          },
        );
        if (this.#stopped) return;
        this.#done(batch.entries, batch.positions);
        for (const [c, positions] of batch.waiters) if (!c.closed) c.sink.acked(positions);
        for (const e of batch.entries) {
          for (const c of e.waiters ?? []) if (!c.closed) c.sink.acked([e.event.position]);
          e.waiters = undefined;
        }
        if (batch.delayed.length > 0) {
          // Delayed retries count from now, once their nack is durable and confirmed (rounded
          // up to the next whole millisecond, the timers' grain).
          const confirmedMs = Math.ceil(this.#now());
          for (const d of batch.delayed)
            this.#dispatcher.setDue(d.entry, Math.max(d.record.dueMs, confirmedMs + d.delayMs));
          this.#armDelays();
        }
        // Every event parked so far has its copy and its acks record written.
        if (this.#parking.queue.length === 0) this.#releaseFlushWaiters();
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#flushing = false;
      this.#releaseFlushWaiters();
    }
    this.#maybeCheckpoint();
    void this.#fill();
    this.#dispatch();
  }

  #done(entries: readonly Entry[], positions: readonly number[]): void {
    const known = new Set<number>();
    for (const e of entries) {
      known.add(e.event.position);
      if (e.replay) {
        this.#replays.delete(e.event.position);
        continue;
      }
      this.#forget(e);
      this.#cp.doneSince++;
    }
    // Acknowledged before this leader read them: skip them when they are read. One that was
    // read while its ack was being written is finished now (its ack is already durable).
    for (const p of positions) {
      if (known.has(p)) continue;
      const entry = this.#pending.get(p);
      if (entry) {
        if (entry.state !== "finishing") {
          this.#dispatcher.release(entry);
          this.#forget(entry);
          this.#cp.doneSince++;
        }
      } else if (!this.#source.passed(p)) {
        this.#acks.markDoneAhead(p);
      }
    }
    if (this.#replays.size === 0 && this.#parking.replayEnd !== undefined)
      void this.#side(this.#finishReplay());
  }

  /** A read event is done: the group no longer holds it. */
  #forget(entry: Entry): void {
    if (this.#pending.delete(entry.event.position)) this.#pendingBytes -= eventBytes(entry.event);
  }

  #fail(err: unknown): void {
    if (this.#stopped) return;
    this.#d.logger.warn(
      { err, stream: this.key.streamId, group: this.key.group },
      "persistent subscription group stopped",
    );
    this.#d.onFailed(err);
  }

  // ---------------------------------------------------------------- checkpoints

  #maybeCheckpoint(force = false): void {
    if (this.#stopped || this.#checkpointing) return;
    const cp = checkpointCandidate(this.#pending.values().next().value, this.#source.lastRead);
    const s = this.#settings;
    const decision = this.#cp.decide(cp, s, this.#now(), force);
    if (decision === "none") return;
    if (decision === "wait") {
      this.#checkpointTimer ??= setTimeout(() => {
        this.#checkpointTimer = undefined;
        this.#maybeCheckpoint(this.#cp.doneSince >= s.minCheckpointCount);
      }, s.checkpointAfterMs + 1);
      this.#checkpointTimer.unref();
      return;
    }
    void this.#side(this.#writeCheckpoint(cp));
  }

  async #writeCheckpoint(cp: ReadPoint): Promise<void> {
    this.#checkpointing = true;
    // The events `cp` covers: those done by now. One done while the records below are written
    // is past `cp` and counts toward the next checkpoint.
    const done = this.#cp.doneSince;
    try {
      const carry = this.#acks.passCheckpoint(cp.position);
      if (carry) {
        // The records that name replayed events go with this checkpoint: name them again in
        // one record after it, so an unfinished replay still skips them after a leader change.
        await this.#own.acks.append(
          this.#d.store,
          [systemEvent("Acked", { positions: [], replayed: carry })],
          (revision) => this.#acks.carried(revision),
        );
        if (this.#stopped) return;
      }
      const acksFrom = this.#acks.acksFrom;
      await this.#own.checkpoint.append(this.#d.store, [
        systemEvent("Checkpoint", {
          point: cp.point,
          position: cp.position,
          ...(cp.next !== undefined && { next: cp.next }),
          acksFrom,
        }),
      ]);
      if (this.#stopped) return;
      this.#cp.written(cp, done, this.#now());
      this.#acks.checkpointed(cp.position);
      if (acksFrom > 0) {
        await this.#setMetadata(acksStream(this.key), { truncateBefore: acksFrom });
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#checkpointing = false;
    }
    // Events finished while this checkpoint was written may allow the next one.
    this.#maybeCheckpoint();
  }

  async #setMetadata(streamId: string, metadata: Record<string, unknown>): Promise<void> {
    const current = (await this.#d.store.getMetadata(streamId)) ?? {};
    await this.#d.store.append(metadataStreamOf(streamId), { kind: "any" }, [
      systemEvent(METADATA_EVENT_TYPE, { ...current, ...metadata }),
    ]);
  }

  /** Writes the bounds of the group's system streams (called once, when the group is created). */
  async initStreams(): Promise<void> {
    await this.#setMetadata(checkpointStream(this.key), { maxCount: 2 });
  }

  // ---------------------------------------------------------------- parked events

  /**
   * Offers parked events (up to `stopAt` of them; 0: all) to the consumers again, in rounds of
   * what the group may hold read ahead (historyBufferSize events, GROUP_BUFFER_BYTES): a
   * group with a million parked events does not read them all into memory at once. Returns
   * how many parked events wait for a replay now (at most `stopAt`): what this one offers,
   * unless some of them are parked again while it runs (those wait for the next replay).
   */
  async replayParked(stopAt: number): Promise<number> {
    if (this.#replaying()) return 0;
    // An event parked a moment ago is counted as soon as its copy is written, but the group
    // holds it until its acks record is written too: read before that, it would look still
    // in hand (`known`), be left out, and the cursor would move past its copy unreplayed.
    await this.#flushed();
    if (this.#stopped || this.#replaying()) return 0;
    const left = stopAt > 0 ? stopAt : Number.MAX_SAFE_INTEGER;
    const waiting = Math.min(left, this.#parking.count);
    // Taken now, before the read below: a second request meanwhile finds the replay running.
    const rest = { left, until: Number.MAX_SAFE_INTEGER };
    this.#parking.replayRest = rest;
    try {
      rest.until = (await streamEnd(this.#d.store, parkedStream(this.key))).last + 1;
    } catch (err) {
      this.#parking.replayRest = undefined;
      throw err;
    }
    await this.#replayRound();
    return waiting;
  }

  /** A replay runs: a round is out, or the next is about to be read. */
  #replaying(): boolean {
    return this.#parking.replayEnd !== undefined || this.#parking.replayRest !== undefined;
  }

  /** Reads the replay's next round and offers it; ends the replay when nothing is left. */
  async #replayRound(): Promise<void> {
    const rest = this.#parking.replayRest;
    if (rest === undefined || this.#stopped) return;
    let read;
    try {
      read =
        rest.left > 0
          ? await this.#parking.readReplay(
              this.#d.store,
              this.key,
              {
                limit: Math.min(rest.left, this.#settings.historyBufferSize),
                maxBytes: GROUP_BUFFER_BYTES,
                until: rest.until,
              },
              this.#acks.replayedDone,
              (position) => this.#find(position) !== undefined,
            )
          : undefined;
    } catch (err) {
      this.#parking.replayRest = undefined;
      throw err;
    }
    if (read === undefined || this.#stopped) {
      this.#parking.replayRest = undefined;
      return;
    }
    rest.left -= read.events.length;
    this.#parking.replayEnd = read.end;
    const replayed: Entry[] = [];
    for (const { parkedRevision, ...e } of read.events) {
      const point = this.#source.isAll ? e.position : e.revision;
      const entry = newEntry(e, point, { point: -1, position: -1 }, { parkedRevision });
      this.#replays.set(e.position, entry);
      replayed.push(entry);
    }
    // Parked events go first, in the order they were parked.
    this.#dispatcher.enqueueFirst(replayed);
    if (this.#replays.size === 0) await this.#side(this.#finishReplay());
    this.#dispatch();
  }

  /**
   * Every event of the replay's round is done: move the parked stream's start past them, and
   * read the next round (after a turn: a round whose events were all done already finishes
   * at once, and the next must not grow the stack).
   */
  async #finishReplay(): Promise<void> {
    const end = this.#parking.replayEnd;
    if (end === undefined || this.#stopped || this.#finishingReplay) return;
    this.#finishingReplay = true;
    try {
      await this.#setMetadata(parkedStream(this.key), { truncateBefore: end });
      this.#parking.replayFinished(end, this.#acks.replayFinished(end));
    } catch (err) {
      this.#parking.replayRest = undefined;
      this.#fail(err);
    } finally {
      this.#parking.replayEnd = undefined;
      this.#finishingReplay = false;
    }
    if (this.#parking.replayRest === undefined || this.#stopped) return;
    setImmediate(() => {
      this.#replayRound().catch((err: unknown) => this.#fail(err));
    });
  }

  // ---------------------------------------------------------------- info

  info(): GroupInfo {
    const consumers = this.#dispatcher.consumers;
    let inFlight = 0;
    for (const c of consumers) inFlight += c.inflight.size;
    return {
      streamId: this.key.streamId,
      group: this.key.group,
      settings: this.#settings,
      status: consumers.length > 0 ? "Live" : "Idle",
      consumers: consumers.map((c) => ({
        name: c.options.name,
        connection: c.options.connection,
        inFlight: c.inflight.size,
        bufferSize: c.options.bufferSize,
        delivered: c.delivered,
        acked: c.acked,
      })),
      inFlight,
      bufferedEvents: this.#pending.size,
      bufferedBytes: this.#pendingBytes,
      parkedCount: this.#parking.count,
      lastCheckpoint: this.#cp.checkpoint?.point,
      deliveryRate: this.#deliveries.perSecond(),
      ackRate: this.#ackRate.perSecond(),
      totalDelivered: this.#totalDelivered,
      totalAcked: this.#totalAcked,
      totalParked: this.#totalParked,
    };
  }
}
