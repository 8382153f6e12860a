/**
 * Who holds which event of a group now: the queue of events waiting for a consumer, the events
 * out at each consumer (within its buffer, until its message timeout), and the delayed
 * retries. Hands queued events out with the strategy functions of strategies.ts. Pure: no I/O
 * and no timers; the time is passed in.
 */
import type { Consumer, Entry } from "./common.js";
import { DelayQueue } from "./delays.js";
import type { ConsumerStrategy } from "./settings.js";
import { firstWithRoom, nextRoundRobin, pinnedOwner } from "./strategies.js";

export interface DispatchSettings {
  readonly consumerStrategy: ConsumerStrategy;
  /** 0: never time out. */
  readonly messageTimeoutMs: number;
}

export class Dispatcher {
  readonly #settings: () => DispatchSettings;
  readonly #consumers: Consumer[] = [];
  /** Waiting for a consumer, in order. */
  #queue: Entry[] = [];
  readonly #delayed = new DelayQueue<Entry>();
  #rr = -1;
  /** Pinned: how many events of a stream are out at which consumer. */
  readonly #streamOut = new Map<string, { consumer: Consumer; count: number }>();
  readonly #ownerCache = new Map<string, Consumer | undefined>();

  constructor(settings: () => DispatchSettings) {
    this.#settings = settings;
  }

  get consumers(): readonly Consumer[] {
    return this.#consumers;
  }

  get queue(): readonly Entry[] {
    return this.#queue;
  }

  get delayedCount(): number {
    return this.#delayed.size;
  }

  // ---------------------------------------------------------------- consumers

  addConsumer(c: Consumer): void {
    this.#consumers.push(c);
    this.#ownerCache.clear();
  }

  /**
   * Takes a consumer out; its outstanding events go back to the front of the queue (in read
   * order, their retry count unchanged: not a retry the application asked for). Returns them.
   */
  removeConsumer(c: Consumer): Entry[] {
    const i = this.#consumers.indexOf(c);
    if (i >= 0) this.#consumers.splice(i, 1);
    if (this.#rr >= this.#consumers.length) this.#rr = -1;
    this.#ownerCache.clear();
    const back = [...c.inflight].sort((a, b) => a.point - b.point);
    for (const e of back) {
      this.release(e);
      e.state = "queued";
    }
    this.#queue = [...back, ...this.#queue];
    return back;
  }

  /** Forgets every consumer (the group stops); returns them. */
  clearConsumers(): Consumer[] {
    const all = this.#consumers.splice(0, this.#consumers.length);
    this.#ownerCache.clear();
    return all;
  }

  free(c: Consumer): number {
    return c.options.bufferSize - c.inflight.size;
  }

  // ---------------------------------------------------------------- where an event is

  /** Adds an event at the back of the queue. */
  enqueue(entry: Entry): void {
    entry.state = "queued";
    entry.consumer = undefined;
    this.#queue.push(entry);
  }

  /** Adds events at the front of the queue, in the order given. */
  enqueueFirst(entries: readonly Entry[]): void {
    for (const e of entries) {
      e.state = "queued";
      e.consumer = undefined;
    }
    this.#queue = [...entries, ...this.#queue];
  }

  /** The event is out at `c` from now until its message timeout. */
  assign(entry: Entry, c: Consumer, nowMs: number): void {
    const timeoutMs = this.#settings().messageTimeoutMs;
    entry.state = "inflight";
    entry.consumer = c;
    entry.deadlineMs = timeoutMs > 0 ? nowMs + timeoutMs : Infinity;
    c.inflight.add(entry);
    const out = this.#streamOut.get(entry.event.streamId);
    if (out) out.count++;
    else this.#streamOut.set(entry.event.streamId, { consumer: c, count: 1 });
  }

  /** Takes an event out of wherever it waits: its consumer, the queue or the delayed retries. */
  release(entry: Entry): void {
    const c = entry.consumer;
    if (entry.state === "inflight" && c) {
      c.inflight.delete(entry);
      const out = this.#streamOut.get(entry.event.streamId);
      if (out && --out.count <= 0) this.#streamOut.delete(entry.event.streamId);
    } else if (entry.state === "queued") {
      const i = this.#queue.indexOf(entry);
      if (i >= 0) this.#queue.splice(i, 1);
    } else if (entry.state === "delayed") {
      this.#delayed.remove(entry);
    }
    entry.consumer = undefined;
  }

  /** The event is done (acknowledged, skipped or parked): nobody gets it again. */
  finish(entry: Entry): void {
    this.release(entry);
    entry.state = "finishing";
  }

  /** Back to the end of the queue (a retry without delay, a message timeout). */
  requeue(entry: Entry): void {
    this.release(entry);
    this.enqueue(entry);
  }

  /**
   * Out of the queue until `dueMs` (Infinity: until `setDue` gives it a time, once its nack
   * is durable).
   */
  delay(entry: Entry, dueMs: number): void {
    this.release(entry);
    entry.state = "delayed";
    this.#delayed.add(entry, dueMs);
  }

  /** Sets the due time of a delayed event; false when it is no longer delayed (acked meanwhile). */
  setDue(entry: Entry, dueMs: number): boolean {
    return entry.state === "delayed" && this.#delayed.reschedule(entry, dueMs);
  }

  /** Moves delayed events due at `nowMs` to the end of the queue; returns them. */
  releaseDue(nowMs: number): Entry[] {
    const due = this.#delayed.takeDue(nowMs);
    for (const e of due) this.enqueue(e);
    return due;
  }

  /** The earliest due time of a delayed event (undefined: none has one). */
  nextDueMs(): number | undefined {
    return this.#delayed.nextDueMs();
  }

  /** Events out at a consumer past their message timeout. */
  expired(nowMs: number): Entry[] {
    const out: Entry[] = [];
    for (const c of this.#consumers)
      for (const e of c.inflight) if (e.deadlineMs <= nowMs) out.push(e);
    return out;
  }

  // ---------------------------------------------------------------- dispatch

  /**
   * Hands queued events to consumers with room, by the group's strategy; assigns them and
   * returns what each consumer gets (in queue order). The caller sends them.
   */
  dispatch(nowMs: number): Map<Consumer, Entry[]> {
    const out = new Map<Consumer, Entry[]>();
    if (this.#queue.length === 0 || this.#consumers.length === 0) return out;
    const consumers = this.#consumers;
    const free = consumers.map((c) => this.free(c));
    const rest: Entry[] = [];
    const strategy = this.#settings().consumerStrategy;
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
      this.assign(entry, c, nowMs);
      entry.sent = true;
    }
    if (out.size === 0) return out;
    this.#queue = i < this.#queue.length ? rest.concat(this.#queue.slice(i)) : rest;
    return out;
  }

  #owner(streamId: string): Consumer | undefined {
    if (this.#ownerCache.has(streamId)) return this.#ownerCache.get(streamId);
    const owner = pinnedOwner(streamId, this.#consumers);
    if (this.#ownerCache.size > 100_000) this.#ownerCache.clear();
    this.#ownerCache.set(streamId, owner);
    return owner;
  }
}
