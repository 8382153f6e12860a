/**
 * One persistent subscription group at run time (on the leader): reads its source (a stream
 * or $all) from its checkpoint, hands events to its consumers by the group's strategy within
 * each consumer's buffer, retries, parks, and makes acknowledgements durable.
 *
 * Durable state (docs/persistent-subscriptions-design.md):
 * - `{base}-checkpoint`: `Checkpoint {point, position, acksFrom}`. Every event up to `point`
 *   (revision, or position for $all) is done; acknowledgements of later events are in the acks
 *   stream from revision `acksFrom`.
 * - `{base}-acks`: `Acked {positions}`: events done beyond the checkpoint (acknowledged,
 *   skipped or parked). A new leader skips them, so an acknowledged event never comes back.
 * - `{base}-parked`: copies of parked events, with their origin in the metadata.
 *
 * "Done" means durable: an event leaves the group's memory (and may be passed by the
 * checkpoint) only once the acks record holding it is committed.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { METADATA_EVENT_TYPE, metadataStreamOf } from "@chorus/protocol";
import { eventFilter } from "../streams/filters.js";
import {
  StoreError,
  type NewEvent,
  type StoredEvent,
  type StreamStore,
  type WriteResult,
} from "../streams/types.js";
import { firstWithRoom, nextRoundRobin, pinnedOwner } from "./strategies.js";
import type { GroupSettings } from "./settings.js";

export type NackAction = "park" | "retry" | "skip" | "stop";

/** Why a consumer's subscription ends. */
export type DropCode =
  "NOT_LEADER" | "PERSISTENT_SUBSCRIPTION_NOT_FOUND" | "SHUTTING_DOWN" | "INTERNAL" | "UNKNOWN";

/** Where the group's consumer sees its events and confirmations. */
export interface ConsumerSink {
  deliver(events: StoredEvent[], retryCounts: number[]): void;
  /** These acks / nacks are durable (or needed nothing durable). */
  acked(positions: number[]): void;
  dropped(code: DropCode, message: string): void;
}

export interface ConsumerOptions {
  readonly bufferSize: number;
  readonly name: string;
  readonly connection: string;
  /** Events the consumer already holds from before a reconnect (their positions). */
  readonly held?: readonly number[];
}

/** The handle a connection holds for one consumer. */
export interface ConsumerHandle {
  readonly id: string;
  ack(positions: readonly number[]): void;
  nack(positions: readonly number[], action: NackAction, reason: string): void;
  /** Leaves the group; its outstanding events go to other consumers. */
  close(): void;
}

export interface GroupKey {
  /** The source stream, or "$all". */
  readonly streamId: string;
  readonly group: string;
}

export function groupBase(key: GroupKey): string {
  return `$persistent-${key.streamId}::${key.group}`;
}

export function checkpointStream(key: GroupKey): string {
  return `${groupBase(key)}-checkpoint`;
}

export function acksStream(key: GroupKey): string {
  return `${groupBase(key)}-acks`;
}

export function parkedStream(key: GroupKey): string {
  return `${groupBase(key)}-parked`;
}

/** Where reading starts when there is no checkpoint, fixed when the group is created. */
export interface InitialCursor {
  /** Revision (stream) or position ($all), inclusive. */
  readonly from: number;
}

interface Entry {
  readonly event: StoredEvent;
  /** Revision (stream groups) or position ($all groups). */
  readonly point: number;
  /** The point and position of the event read just before this one (for the checkpoint). */
  readonly prevPoint: number;
  readonly prevPosition: number;
  state: "queued" | "inflight" | "finishing";
  consumer: Consumer | undefined;
  deadlineMs: number;
  retryCount: number;
  readonly replay: boolean;
  /** A replayed event: the revision of its copy in the parked stream; else -1. */
  readonly parkedRevision: number;
  /** Handed to a consumer (or claimed by one) at least once by this group. */
  sent: boolean;
  /** Consumers waiting to hear that this event's ack / nack is durable. */
  waiters: Consumer[] | undefined;
}

interface Consumer extends ConsumerHandle {
  /** What Pinned hashes: the consumer's name when it has one, so it gets its streams back. */
  readonly hashKey: string;
  readonly sink: ConsumerSink;
  readonly options: ConsumerOptions;
  readonly inflight: Set<Entry>;
  delivered: number;
  acked: number;
  closed: boolean;
}

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
  readonly nowMs?: () => number;
}

const ALL = "$all";
const MAX_SCAN = 16_384;
/** Largest number of positions in one acks record. */
const MAX_ACKS_PER_RECORD = 8_192;
/**
 * A group rebuilt from the log (a new leader, a restart) waits this long after its first
 * consumer joins before it hands anything out, so the consumers that held events before can
 * join again and claim them (instead of those events going to whoever joined first).
 */
export const REJOIN_GRACE_MS = 500;
/** Events per second, averaged over this window. */
const RATE_WINDOW_MS = 10_000;

function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), "utf8");
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

function systemEvent(type: string, data: unknown): NewEvent {
  return { id: randomUUID(), type, isJson: true, data: json(data), metadata: new Uint8Array(0) };
}

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
  readonly #isAll: boolean;
  readonly #filter: ((e: StoredEvent) => boolean) | undefined;
  readonly #initial: InitialCursor;

  /** Read position: the next revision, or the $all position to read from. */
  #from = 0;
  /** $all: events at or before this position were read already (the checkpoint's event). */
  #skipThrough = -1;
  #lastRead = { point: -1, position: -1 };
  #caughtUp = false;
  /** Counts commits seen, so a read that raced a commit does not mark the group caught up. */
  #commits = 0;
  /** Events read and not yet durably done, in read order (so the first is the lowest). */
  readonly #pending = new Map<number, Entry>();
  /** Parked events being replayed; never part of the checkpoint. */
  readonly #replays = new Map<number, Entry>();
  /** Waiting for a consumer, in order. */
  #queue: Entry[] = [];
  /** Positions beyond the read cursor already done (from the acks stream, or acked early). */
  readonly #doneAhead = new Set<number>();

  readonly #consumers: Consumer[] = [];
  /** Positions not read yet that a rejoining consumer says it holds. */
  readonly #claims = new Map<number, Consumer>();
  /**
   * Events below this position may be out at consumers of the group's previous run (another
   * leader, or before an update): what a rejoining consumer may claim beyond what this run
   * has read. -1 for a group just created.
   */
  #claimBound = -1;
  #rr = -1;
  /** Pinned: how many events of a stream are out at which consumer. */
  readonly #streamOut = new Map<string, { consumer: Consumer; count: number }>();
  readonly #ownerCache = new Map<string, Consumer | undefined>();

  #ackBatch: { positions: number[]; entries: Entry[]; waiters: Map<Consumer, number[]> } = {
    positions: [],
    entries: [],
    waiters: new Map(),
  };
  #parkBatch: { entry: Entry; reason: string }[] = [];
  #flushing = false;
  #flushScheduled = false;
  /**
   * Acks records not yet passed by the checkpoint: their revision, highest position, and
   * whether they hold replayed parked events (`replayed`).
   */
  readonly #ackRecords: { revision: number; maxPosition: number; replayed: boolean }[] = [];
  /**
   * Revisions of parked copies (at or after the replay cursor) whose replay is durably done:
   * a replay interrupted by a leader change (or an update) never offers them again.
   */
  readonly #replayedDone = new Set<number>();
  #nextAcksRevision = 0;

  #checkpoint: { point: number; position: number } | undefined;
  #checkpointing = false;
  #checkpointTimer: NodeJS.Timeout | undefined;
  #doneSinceCheckpoint = 0;
  #lastCheckpointMs = 0;

  #parkedCount = 0;
  #parkedFrom = 0;
  #replayEnd: number | undefined;

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
  readonly #acks: RateMeter;
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
    this.#isAll = key.streamId === ALL;
    this.#filter = this.#isAll ? eventFilter({ includeSystem: false }) : undefined;
    this.#deliveries = new RateMeter(this.#now);
    this.#acks = new RateMeter(this.#now);
  }

  get settings(): GroupSettings {
    return this.#settings;
  }

  get consumerCount(): number {
    return this.#consumers.length;
  }

  // ---------------------------------------------------------------- loading

  /** Rebuilds the group's position from its checkpoint and the acks after it. */
  async load(): Promise<void> {
    const store = this.#d.store;
    this.#graceMs = this.#d.rejoinGraceMs ?? REJOIN_GRACE_MS;
    this.#claimBound = this.#d.fresh === true ? -1 : store.commitPosition;
    // Parked events: the replay cursor is the parked stream's truncateBefore.
    const parkedMeta = await store.getMetadata(parkedStream(this.key));
    this.#parkedFrom =
      typeof parkedMeta?.truncateBefore === "number" ? parkedMeta.truncateBefore : 0;
    const cp = await this.#lastEvent(checkpointStream(this.key));
    let acksFrom = 0;
    const data = cp ? parseJson(cp.data) : undefined;
    if (cp && typeof data === "object" && data !== null) {
      const { point, position } = data as { point?: number; position?: number; acksFrom?: number };
      acksFrom = Number((data as { acksFrom?: number }).acksFrom ?? 0);
      if (Number.isSafeInteger(point) && Number.isSafeInteger(position)) {
        this.#checkpoint = { point: point as number, position: position as number };
      }
    }
    if (this.#checkpoint) {
      const { point, position } = this.#checkpoint;
      this.#lastRead = { point, position };
      if (this.#isAll) {
        this.#from = position;
        this.#skipThrough = position;
      } else {
        this.#from = point + 1;
      }
    } else {
      this.#from = this.#initial.from;
      this.#lastRead = this.#isAll
        ? { point: -1, position: -1 }
        : { point: this.#initial.from - 1, position: -1 };
    }
    // Acknowledgements beyond the checkpoint.
    let revision = acksFrom;
    for (;;) {
      let page;
      try {
        page = await store.readStream(acksStream(this.key), {
          direction: "forwards",
          fromRevision: revision,
          maxCount: 512,
        });
      } catch (err) {
        if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") break;
        throw err;
      }
      for (const e of page.events) {
        const body = parseJson(e.data) as { positions?: unknown; replayed?: unknown } | undefined;
        let max = -1;
        if (Array.isArray(body?.positions)) {
          for (const p of body.positions) {
            if (typeof p !== "number") continue;
            max = Math.max(max, p);
            if (p > (this.#checkpoint?.position ?? -1)) this.#doneAhead.add(p);
          }
        }
        let replayed = false;
        if (Array.isArray(body?.replayed)) {
          for (const r of body.replayed) {
            if (typeof r !== "number" || r < this.#parkedFrom) continue;
            this.#replayedDone.add(r);
            replayed = true;
          }
        }
        this.#ackRecords.push({ revision: e.revision, maxPosition: max, replayed });
      }
      this.#nextAcksRevision = page.lastRevision + 1;
      if (page.endOfStream) break;
      revision = page.nextRevision;
    }
    const parked = await this.#lastEvent(parkedStream(this.key));
    this.#parkedCount = parked
      ? Math.max(0, parked.revision + 1 - this.#parkedFrom - this.#replayedDone.size)
      : 0;
  }

  async #lastEvent(streamId: string): Promise<StoredEvent | undefined> {
    try {
      const r = await this.#d.store.readStream(streamId, {
        direction: "backwards",
        fromRevision: "end",
        maxCount: 1,
      });
      return r.events[0];
    } catch (err) {
      if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") return undefined;
      throw err;
    }
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
      nack: (positions, action, reason) => this.#nack(consumer, positions, action, reason),
      close: () => this.#removeConsumer(consumer),
    };
    this.#consumers.push(consumer);
    this.#ownerCache.clear();
    for (const p of options.held ?? []) this.#claim(consumer, p);
    if (this.#consumers.length === 1) this.#startRunning();
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
      this.#release(entry);
      this.#assign(entry, c);
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
      position > this.#lastRead.position &&
      (!this.#isAll || position >= this.#from) &&
      position > (this.#checkpoint?.position ?? -1) &&
      position < this.#claimBound &&
      !this.#doneAhead.has(position)
    );
  }

  #startRunning(): void {
    // Commits went unobserved while the group had no consumers.
    this.#caughtUp = false;
    this.#unlisten ??= this.#d.store.onCommit(() => {
      this.#commits++;
      this.#caughtUp = false;
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
    const i = this.#consumers.indexOf(c);
    if (i >= 0) this.#consumers.splice(i, 1);
    if (this.#rr >= this.#consumers.length) this.#rr = -1;
    for (const [p, owner] of this.#claims) if (owner === c) this.#claims.delete(p);
    this.#ownerCache.clear();
    // Its outstanding events go to the others (not a retry the application asked for).
    const back = [...c.inflight].sort((a, b) => a.point - b.point);
    for (const e of back) {
      this.#release(e);
      e.state = "queued";
    }
    this.#queue = [...back, ...this.#queue];
    if (this.#consumers.length === 0) this.#stopRunning();
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
    this.#stopRunning();
    if (this.#holdTimer) clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    if (this.#checkpointTimer) clearTimeout(this.#checkpointTimer);
    this.#checkpointTimer = undefined;
    for (const c of [...this.#consumers]) {
      c.closed = true;
      c.sink.dropped(code, message);
    }
    this.#consumers.length = 0;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  // ---------------------------------------------------------------- reading

  #cap(): number {
    return this.#caughtUp ? this.#settings.liveBufferSize : this.#settings.historyBufferSize;
  }

  async #fill(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      while (
        !this.#stopped &&
        this.#consumers.length > 0 &&
        !this.#caughtUp &&
        this.#pending.size < this.#cap()
      ) {
        const room = Math.min(this.#settings.readBatchSize, this.#cap() - this.#pending.size);
        const commits = this.#commits;
        const { events, next, end } = await this.#read(Math.max(1, room));
        if (this.#stopped) return;
        this.#from = next;
        for (const e of events) this.#take(e);
        if (end && commits === this.#commits) this.#caughtUp = true;
        this.#dispatch();
        this.#maybeCheckpoint();
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#reading = false;
    }
  }

  async #read(maxCount: number): Promise<{ events: StoredEvent[]; next: number; end: boolean }> {
    const store = this.#d.store;
    if (this.#isAll) {
      const r = await store.readAll({
        direction: "forwards",
        fromPosition: this.#from,
        maxCount,
        ...(this.#filter && { filter: this.#filter, maxScan: MAX_SCAN }),
      });
      return { events: r.events, next: r.nextPosition, end: r.endOfStream };
    }
    try {
      const r = await store.readStream(this.key.streamId, {
        direction: "forwards",
        fromRevision: this.#from,
        maxCount,
      });
      return { events: r.events, next: r.nextRevision, end: r.endOfStream };
    } catch (err) {
      // A source that does not exist (yet) or was deleted has nothing to deliver.
      if (
        err instanceof StoreError &&
        (err.code === "STREAM_NOT_FOUND" || err.code === "STREAM_DELETED")
      )
        return { events: [], next: this.#from, end: true };
      throw err;
    }
  }

  #take(e: StoredEvent): void {
    const point = this.#isAll ? e.position : e.revision;
    if (this.#isAll && e.position <= this.#skipThrough) return;
    if (point <= this.#lastRead.point && this.#lastRead.position >= 0) return;
    const prev = this.#lastRead;
    this.#lastRead = { point, position: e.position };
    if (this.#doneAhead.delete(e.position)) {
      // Done before (acks stream, or acknowledged ahead of the read): never again.
      this.#doneSinceCheckpoint++;
      return;
    }
    const entry: Entry = {
      event: e,
      point,
      prevPoint: prev.point,
      prevPosition: prev.position,
      state: "queued",
      consumer: undefined,
      deadlineMs: 0,
      retryCount: 0,
      replay: false,
      parkedRevision: -1,
      sent: false,
      waiters: undefined,
    };
    this.#pending.set(e.position, entry);
    const claimant = this.#claims.get(e.position);
    if (claimant !== undefined) this.#claims.delete(e.position);
    // Claims of positions the read has passed were not events of this source: forget them.
    if (this.#claims.size > 0)
      for (const p of this.#claims.keys()) if (p < e.position) this.#claims.delete(p);
    if (claimant !== undefined && !claimant.closed) {
      entry.sent = true;
      this.#assign(entry, claimant);
      return;
    }
    this.#queue.push(entry);
  }

  // ---------------------------------------------------------------- dispatch

  #free(c: Consumer): number {
    return c.options.bufferSize - c.inflight.size;
  }

  #dispatch(): void {
    if (this.#stopped || this.#queue.length === 0 || this.#consumers.length === 0) return;
    if (this.#holdTimer !== undefined) return;
    const consumers = this.#consumers;
    const free = consumers.map((c) => this.#free(c));
    const out = new Map<Consumer, Entry[]>();
    const rest: Entry[] = [];
    const strategy = this.#settings.consumerStrategy;
    const blocked = new Set<string>();
    let room = free.reduce((a, b) => a + Math.max(0, b), 0);
    let i = 0;
    for (; i < this.#queue.length && room > 0; i++) {
      const entry = this.#queue[i] as Entry;
      let index: number;
      if (strategy === "Pinned") {
        const streamId = entry.event.streamId;
        const owner = this.#owner(streamId);
        const out0 = this.#streamOut.get(streamId);
        index = owner ? consumers.indexOf(owner) : -1;
        // A stream moves to its new owner only when nothing of it is out at the old one.
        if (
          blocked.has(streamId) ||
          index < 0 ||
          (free[index] ?? 0) <= 0 ||
          (out0 !== undefined && out0.consumer !== owner)
        ) {
          blocked.add(streamId);
          rest.push(entry);
          continue;
        }
      } else if (strategy === "DispatchToSingle") {
        index = firstWithRoom(free);
      } else {
        index = nextRoundRobin(free, this.#rr);
        if (index >= 0) this.#rr = index;
      }
      if (index < 0) {
        rest.push(entry);
        continue;
      }
      const c = consumers[index] as Consumer;
      free[index] = (free[index] ?? 0) - 1;
      room--;
      let list = out.get(c);
      if (!list) out.set(c, (list = []));
      list.push(entry);
      this.#assign(entry, c);
      entry.sent = true;
    }
    if (out.size === 0) return;
    this.#queue = i < this.#queue.length ? rest.concat(this.#queue.slice(i)) : rest;
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

  #owner(streamId: string): Consumer | undefined {
    if (this.#ownerCache.has(streamId)) return this.#ownerCache.get(streamId);
    const owner = pinnedOwner(streamId, this.#consumers);
    if (this.#ownerCache.size > 100_000) this.#ownerCache.clear();
    this.#ownerCache.set(streamId, owner);
    return owner;
  }

  #assign(entry: Entry, c: Consumer): void {
    entry.state = "inflight";
    entry.consumer = c;
    entry.deadlineMs =
      this.#settings.messageTimeoutMs > 0
        ? this.#now() + this.#settings.messageTimeoutMs
        : Infinity;
    c.inflight.add(entry);
    const out = this.#streamOut.get(entry.event.streamId);
    if (out) out.count++;
    else this.#streamOut.set(entry.event.streamId, { consumer: c, count: 1 });
  }

  /** Takes an entry out of its consumer (or out of the queue). */
  #release(entry: Entry): void {
    const c = entry.consumer;
    if (entry.state === "inflight" && c) {
      c.inflight.delete(entry);
      const out = this.#streamOut.get(entry.event.streamId);
      if (out && --out.count <= 0) this.#streamOut.delete(entry.event.streamId);
    } else if (entry.state === "queued") {
      const i = this.#queue.indexOf(entry);
      if (i >= 0) this.#queue.splice(i, 1);
    }
    entry.consumer = undefined;
  }

  #requeue(entry: Entry): void {
    this.#release(entry);
    entry.state = "queued";
    this.#queue.push(entry);
  }

  #timeouts(): void {
    if (this.#stopped) return;
    const now = this.#now();
    let changed = false;
    for (const c of this.#consumers) {
      for (const entry of [...c.inflight]) {
        if (entry.deadlineMs > now) continue;
        changed = true;
        this.#retry(entry, "message timeout");
      }
    }
    if (changed) this.#dispatch();
  }

  /** A retry the application asked for (nack retry, message timeout): counted, then parked. */
  #retry(entry: Entry, reason: string): void {
    entry.retryCount++;
    if (entry.retryCount > this.#settings.maxRetryCount) {
      this.#park(entry, `${reason}; retried ${entry.retryCount - 1} times (maxRetryCount)`);
    } else {
      this.#requeue(entry);
    }
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
          this.#addAck(p, undefined, c);
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
        this.#acks.add(1);
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
    return position <= this.#lastRead.position || this.#doneAhead.has(position);
  }

  #finish(entry: Entry, waiter: Consumer | undefined): void {
    if (entry.state === "finishing") {
      if (waiter) (entry.waiters ??= []).push(waiter);
      return;
    }
    this.#release(entry);
    entry.state = "finishing";
    if (waiter) (entry.waiters ??= []).push(waiter);
    this.#addAck(entry.event.position, entry, undefined);
  }

  #addAck(position: number, entry: Entry | undefined, waiter: Consumer | undefined): void {
    const b = this.#ackBatch;
    b.positions.push(position);
    if (entry) b.entries.push(entry);
    if (waiter) {
      let list = b.waiters.get(waiter);
      if (!list) b.waiters.set(waiter, (list = []));
      list.push(position);
    }
  }

  #nack(c: Consumer, positions: readonly number[], action: NackAction, reason: string): void {
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
          this.#retry(entry, reason || "retry asked by the consumer");
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
    this.#release(entry);
    entry.state = "finishing";
    this.#parkBatch.push({ entry, reason });
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#flushing) return;
    if (this.#ackBatch.positions.length === 0 && this.#parkBatch.length === 0) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#flush();
    });
  }

  /** Writes parked copies, then one acks record; one write at a time, so batches grow under load. */
  async #flush(): Promise<void> {
    if (this.#flushing || this.#stopped) return;
    this.#flushing = true;
    try {
      while (
        !this.#stopped &&
        (this.#ackBatch.positions.length > 0 || this.#parkBatch.length > 0)
      ) {
        if (this.#parkBatch.length > 0) {
          const parked = this.#parkBatch.splice(0, MAX_ACKS_PER_RECORD);
          await this.#write(
            parkedStream(this.key),
            parked.map(({ entry, reason }) => this.#parkedCopy(entry.event, reason)),
          );
          this.#parkedCount += parked.length;
          this.#totalParked += parked.length;
          for (const { entry } of parked) this.#addAck(entry.event.position, entry, undefined);
        }
        const batch = this.#ackBatch;
        if (batch.positions.length === 0) continue;
        this.#ackBatch = { positions: [], entries: [], waiters: new Map() };
        // Replayed parked events are named by their parked copies too: their positions are
        // behind the checkpoint, so only this tells a new leader their replay is done.
        const replayed = batch.entries.filter((e) => e.replay).map((e) => e.parkedRevision);
        const result = await this.#write(acksStream(this.key), [
          systemEvent("Acked", {
            positions: batch.positions,
            ...(replayed.length > 0 && { replayed }),
          }),
        ]);
        if (this.#stopped) return;
        let max = -1;
        for (const p of batch.positions) max = Math.max(max, p);
        for (const r of replayed) {
          if (r < this.#parkedFrom || this.#replayedDone.has(r)) continue;
          this.#replayedDone.add(r);
          this.#parkedCount = Math.max(0, this.#parkedCount - 1);
        }
        if (result.ok) {
          this.#ackRecords.push({
            revision: result.nextExpectedVersion,
            maxPosition: max,
            replayed: replayed.length > 0,
          });
          this.#nextAcksRevision = result.nextExpectedVersion + 1;
        }
        this.#done(batch.entries, batch.positions);
        for (const [c, positions] of batch.waiters) if (!c.closed) c.sink.acked(positions);
        for (const e of batch.entries) {
          for (const c of e.waiters ?? []) if (!c.closed) c.sink.acked([e.event.position]);
          e.waiters = undefined;
        }
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#flushing = false;
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
      this.#pending.delete(e.event.position);
      this.#doneSinceCheckpoint++;
    }
    // Acknowledged before this leader read them: skip them when they are read. One that was
    // read while its ack was being written is finished now (its ack is already durable).
    for (const p of positions) {
      if (known.has(p)) continue;
      const entry = this.#pending.get(p);
      if (entry) {
        if (entry.state !== "finishing") {
          this.#release(entry);
          this.#pending.delete(p);
          this.#doneSinceCheckpoint++;
        }
      } else if (p > this.#lastRead.position) {
        this.#doneAhead.add(p);
      }
    }
    if (this.#replays.size === 0 && this.#replayEnd !== undefined) void this.#finishReplay();
  }

  #parkedCopy(e: StoredEvent, reason: string): NewEvent {
    return {
      id: randomUUID(),
      type: e.type,
      isJson: e.isJson,
      data: e.data,
      metadata: json({
        $origin: {
          streamId: e.streamId,
          revision: e.revision,
          position: e.position,
          id: e.id,
          createdMs: e.createdMs,
          metadata: Buffer.from(e.metadata).toString("base64"),
        },
        $reason: reason,
      }),
    };
  }

  async #write(streamId: string, events: NewEvent[]): Promise<WriteResult> {
    return this.#d.store.append(streamId, { kind: "any" }, events);
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

  /** The last point below every event still pending (or the last read when none is). */
  #checkpointCandidate(): { point: number; position: number } {
    const first = this.#pending.values().next();
    if (!first.done) return { point: first.value.prevPoint, position: first.value.prevPosition };
    return this.#lastRead;
  }

  #maybeCheckpoint(force = false): void {
    if (this.#stopped || this.#checkpointing) return;
    const cp = this.#checkpointCandidate();
    if (cp.position < 0 || (this.#checkpoint && cp.point <= this.#checkpoint.point)) return;
    const s = this.#settings;
    const due =
      force ||
      this.#doneSinceCheckpoint >= s.maxCheckpointCount ||
      (this.#doneSinceCheckpoint >= s.minCheckpointCount &&
        this.#now() - this.#lastCheckpointMs >= s.checkpointAfterMs);
    if (!due) {
      this.#checkpointTimer ??= setTimeout(() => {
        this.#checkpointTimer = undefined;
        this.#maybeCheckpoint(this.#doneSinceCheckpoint >= s.minCheckpointCount);
      }, s.checkpointAfterMs + 1);
      this.#checkpointTimer.unref();
      return;
    }
    void this.#writeCheckpoint(cp);
  }

  async #writeCheckpoint(cp: { point: number; position: number }): Promise<void> {
    this.#checkpointing = true;
    try {
      let dropsReplayed = false;
      while (
        this.#ackRecords.length > 0 &&
        (this.#ackRecords[0] as { maxPosition: number }).maxPosition <= cp.position
      ) {
        if (this.#ackRecords.shift()?.replayed === true) dropsReplayed = true;
      }
      if (dropsReplayed && this.#replayedDone.size > 0) {
        // The records that name replayed events go with this checkpoint: name them again in
        // one record after it, so an unfinished replay still skips them after a leader change.
        const replayed = [...this.#replayedDone].sort((a, b) => a - b);
        const carried = await this.#write(acksStream(this.key), [
          systemEvent("Acked", { positions: [], replayed }),
        ]);
        if (this.#stopped) return;
        if (carried.ok) {
          this.#ackRecords.push({
            revision: carried.nextExpectedVersion,
            maxPosition: -1,
            replayed: true,
          });
          this.#nextAcksRevision = carried.nextExpectedVersion + 1;
        }
      }
      const acksFrom = this.#ackRecords[0]?.revision ?? this.#nextAcksRevision;
      const done = this.#doneSinceCheckpoint;
      await this.#write(checkpointStream(this.key), [
        systemEvent("Checkpoint", { point: cp.point, position: cp.position, acksFrom }),
      ]);
      this.#checkpoint = cp;
      this.#doneSinceCheckpoint = Math.max(0, this.#doneSinceCheckpoint - done);
      this.#lastCheckpointMs = this.#now();
      for (const p of this.#doneAhead) if (p <= cp.position) this.#doneAhead.delete(p);
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
    await this.#write(metadataStreamOf(streamId), [
      { ...systemEvent(METADATA_EVENT_TYPE, { ...current, ...metadata }) },
    ]);
  }

  /** Writes the bounds of the group's system streams (called once, when the group is created). */
  async initStreams(): Promise<void> {
    await this.#setMetadata(checkpointStream(this.key), { maxCount: 2 });
  }

  // ---------------------------------------------------------------- parked events

  /** Offers parked events (up to `stopAt` of them; 0: all) to the consumers again. */
  async replayParked(stopAt: number): Promise<number> {
    if (this.#replayEnd !== undefined) return 0;
    const events: (StoredEvent & { parkedRevision: number })[] = [];
    let revision = this.#parkedFrom;
    const limit = stopAt > 0 ? stopAt : Number.MAX_SAFE_INTEGER;
    let last = revision - 1;
    while (events.length < limit) {
      let page;
      try {
        page = await this.#d.store.readStream(parkedStream(this.key), {
          direction: "forwards",
          fromRevision: revision,
          maxCount: Math.min(512, limit - events.length),
        });
      } catch (err) {
        if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") break;
        throw err;
      }
      for (const copy of page.events) {
        last = copy.revision;
        // Replayed and done before (by a previous leader, or before an update): not again.
        if (this.#replayedDone.has(copy.revision)) continue;
        const original = fromParkedCopy(copy);
        if (original && !this.#find(original.position))
          events.push({ ...original, parkedRevision: copy.revision });
      }
      if (page.endOfStream || page.events.length === 0) break;
      revision = page.nextRevision;
    }
    if (last < this.#parkedFrom) return 0;
    this.#replayEnd = last + 1;
    const replayed: Entry[] = [];
    for (const { parkedRevision, ...e } of events) {
      const entry: Entry = {
        event: e,
        point: this.#isAll ? e.position : e.revision,
        prevPoint: -1,
        prevPosition: -1,
        state: "queued",
        consumer: undefined,
        deadlineMs: 0,
        retryCount: 0,
        replay: true,
        parkedRevision,
        sent: false,
        waiters: undefined,
      };
      this.#replays.set(e.position, entry);
      replayed.push(entry);
    }
    // Parked events go first, in the order they were parked.
    this.#queue = [...replayed, ...this.#queue];
    if (this.#replays.size === 0) await this.#finishReplay();
    this.#dispatch();
    return events.length;
  }

  /** Every replayed event is done: move the parked stream's start past them. */
  async #finishReplay(): Promise<void> {
    const end = this.#replayEnd;
    if (end === undefined) return;
    try {
      await this.#setMetadata(parkedStream(this.key), { truncateBefore: end });
      let skipped = 0;
      for (const r of this.#replayedDone) {
        if (r >= end) continue;
        this.#replayedDone.delete(r);
        skipped++;
      }
      this.#parkedCount = Math.max(0, this.#parkedCount - (end - this.#parkedFrom) + skipped);
      this.#parkedFrom = end;
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#replayEnd = undefined;
    }
  }

  // ---------------------------------------------------------------- info

  info(): GroupInfo {
    let inFlight = 0;
    for (const c of this.#consumers) inFlight += c.inflight.size;
    return {
      streamId: this.key.streamId,
      group: this.key.group,
      settings: this.#settings,
      status: this.#consumers.length > 0 ? "Live" : "Idle",
      consumers: this.#consumers.map((c) => ({
        name: c.options.name,
        connection: c.options.connection,
        inFlight: c.inflight.size,
        bufferSize: c.options.bufferSize,
        delivered: c.delivered,
        acked: c.acked,
      })),
      inFlight,
      parkedCount: this.#parkedCount,
      lastCheckpoint: this.#checkpoint?.point,
      deliveryRate: this.#deliveries.perSecond(),
      ackRate: this.#acks.perSecond(),
      totalDelivered: this.#totalDelivered,
      totalAcked: this.#totalAcked,
      totalParked: this.#totalParked,
    };
  }
}

/** The original event of a parked copy (undefined when the copy is not one). */
export function fromParkedCopy(copy: StoredEvent): StoredEvent | undefined {
  const meta = parseJson(copy.metadata) as
    | {
        $origin?: {
          streamId?: unknown;
          revision?: unknown;
          position?: unknown;
          id?: unknown;
          createdMs?: unknown;
          metadata?: unknown;
        };
      }
    | undefined;
  const o = meta?.$origin;
  if (
    !o ||
    typeof o.streamId !== "string" ||
    typeof o.revision !== "number" ||
    typeof o.position !== "number" ||
    typeof o.id !== "string"
  )
    return undefined;
  return {
    streamId: o.streamId,
    revision: o.revision,
    position: o.position,
    id: o.id,
    type: copy.type,
    isJson: copy.isJson,
    data: copy.data,
    metadata:
      typeof o.metadata === "string" ? Buffer.from(o.metadata, "base64") : new Uint8Array(0),
    createdMs: typeof o.createdMs === "number" ? o.createdMs : copy.createdMs,
  };
}
