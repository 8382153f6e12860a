import { EventEmitter } from "node:events";
import { chorus, wireNumber, type Frame } from "@chorus/protocol";
import {
  AccessDeniedError,
  ConnectionError,
  errorFromWire,
  InvalidArgumentError,
  MaxSubscribersReachedError,
  NotAuthenticatedError,
  PersistentSubscriptionNotFoundError,
  ServerError,
  SubscriptionDroppedError,
  TimeoutError,
} from "../errors.js";
import { publishDeliver, traceAck } from "../diagnostics.js";
import type { OperationContext } from "../operations/context.js";
import { decodeJsonOf, resolvedEventFromWire } from "../operations/events.js";
import { DEFAULT_SUBSCRIPTION_BUFFER_SIZE } from "../settings/defaults.js";
import type { Channel } from "../transport/transport.js";
import { converse, followSignal, runRejoinLoop } from "../subscriptions/rejoin.js";
import type { Credentials, ResolvedEvent, TimerHandle } from "../types.js";
import { sleep } from "../util/timers.js";
import { checkOptions, optionKeys } from "../util/options.js";
import { checkCredentialKeys } from "../operations/validate.js";
import { checkGroup, checkSource } from "./management.js";
import { SingleIteration } from "../util/single-iteration.js";

/** An event of a persistent subscription: how many times it was delivered before. */
export type PersistentEvent<T = unknown> = ResolvedEvent<T> & {
  /** 0 on first delivery; more when the application asked again (nack "retry", message timeout). */
  readonly retryCount: number;
};

export type NackAction = "park" | "retry" | "skip" | "stop";

export interface PersistentSubscribeOptions {
  /** Events delivered and not yet acknowledged that this consumer may hold. Default DEFAULT_SUBSCRIPTION_BUFFER_SIZE. */
  bufferSize?: number;
  /** Shown in getInfo. */
  consumerName?: string;
  credentials?: Credentials;
  /** Ends the subscription (the iterator throws the signal's reason). */
  signal?: AbortSignal;
  /** As for reads: false hands a JSON event's data and metadata over as the bytes stored. */
  decodeJson?: boolean;
}

const SUBSCRIBE_KEYS = optionKeys<PersistentSubscribeOptions>({
  bufferSize: true,
  consumerName: true,
  credentials: true,
  signal: true,
  decodeJson: true,
});

/** ack() takes no options yet; the parameter is there so that one is refused, not ignored. */
export type AckOptions = Readonly<Record<string, never>>;

/** The longest delay of a nack "retry": one hour. */
export const MAX_RETRY_DELAY_MS = 3_600_000;

export interface NackOptions {
  /**
   * "retry" only: the server redelivers the events no sooner than this many ms after it
   * confirmed the nack (integer, 0..3,600,000; default 0: as soon as a consumer has room).
   * The delay is kept across a leader change; the redelivery has retryCount + 1.
   */
  delayMs?: number;
}

const NACK_KEYS = optionKeys<NackOptions>({ delayMs: true });

/** The delay of a nack, checked: a number of ms, or an InvalidArgumentError naming the problem. */
function nackDelay(action: NackAction, options: NackOptions | undefined): number {
  checkOptions("PersistentSubscription.nack", options, NACK_KEYS);
  const delayMs = options?.delayMs;
  if (delayMs === undefined) return 0;
  if (action !== "retry")
    throw new InvalidArgumentError(
      `PersistentSubscription.nack: delayMs is for "retry" only, not "${String(action)}"`,
    );
  if (!Number.isSafeInteger(delayMs) || delayMs < 0 || delayMs > MAX_RETRY_DELAY_MS)
    throw new InvalidArgumentError(
      `PersistentSubscription.nack: delayMs must be an integer in 0..${MAX_RETRY_DELAY_MS}, got ${String(delayMs)}`,
    );
  return delayMs;
}

export interface PersistentSubscriptionEvents {
  /** Joined the group (the first time). */
  confirmed: [];
  /** The connection or the leader was lost; the subscription joins the group again. */
  reconnecting: [reason: Error];
  /** Joined the group again after a loss. */
  resubscribed: [];
  /** The subscription ended because of `error`; the iterator throws it after the buffered events. */
  dropped: [error: Error];
}

/** One ack() / nack() call: settles once every position it names is confirmed. */
interface Waiter {
  readonly deadlineMs: number;
  /** Called once per confirmed position. */
  resolve: () => void;
  reject: (err: Error) => void;
  timeout: () => Error;
}

/** An ack or nack sent and not yet confirmed durable. */
interface Pending {
  action: "ack" | NackAction;
  reason: string;
  /** A nack "retry": its delay (0: none). */
  delayMs: number;
  waiters: Waiter[];
}

const NackWire = chorus.PersistentNack.Action;
const NACK_TO_WIRE: Record<NackAction, chorus.PersistentNack.Action> = {
  park: NackWire.PARK,
  retry: NackWire.RETRY,
  skip: NackWire.SKIP,
  stop: NackWire.STOP,
};

type AnyEvent = PersistentEvent | ResolvedEvent;

/** A rejected promise that is never an unhandled rejection when the caller does not await it. */
function handled(err: Error): Promise<never> {
  const p = Promise.reject(err);
  p.catch(() => undefined);
  return p;
}

function isEventList(events: AnyEvent | readonly AnyEvent[]): events is readonly AnyEvent[] {
  return Array.isArray(events);
}

/** Errors after which joining again cannot help. */
function isTerminal(err: unknown): boolean {
  return (
    err instanceof PersistentSubscriptionNotFoundError ||
    err instanceof AccessDeniedError ||
    err instanceof NotAuthenticatedError ||
    err instanceof MaxSubscribersReachedError ||
    err instanceof InvalidArgumentError ||
    (err instanceof ServerError && err.serverCode === "BAD_REQUEST")
  );
}

/**
 * A consumer of a persistent subscription group: an async iterable of events to handle and
 * acknowledge. It joins the group on the leader and joins again by itself after a lost
 * connection or a leader change. It never hands the application an event twice: events
 * handed over and not yet acknowledged durably are remembered, and when the group offers them
 * again after a reconnect they are not handed over again (their acks go to the new leader).
 * Redeliveries the application asked for (nack "retry", message timeout) carry a higher
 * retryCount and are handed over.
 */
export class PersistentSubscription
  extends EventEmitter<PersistentSubscriptionEvents>
  implements AsyncIterable<PersistentEvent>
{
  readonly streamId: string;
  readonly group: string;
  readonly #ctx: OperationContext;
  readonly #options: PersistentSubscribeOptions;
  readonly #bufferSize: number;
  readonly #decodeJson: boolean;
  readonly #abort = new AbortController();
  readonly #buffer: PersistentEvent[] = [];
  /** Positions in #buffer. */
  readonly #buffered = new Set<number>();
  /** Handed to the application and not durably acknowledged: position -> retryCount. */
  readonly #handed = new Map<number, number>();
  /** Acks / nacks sent and not yet confirmed durable, by position. */
  readonly #pending = new Map<number, Pending>();
  /** Acks waiting for the next send (batched per tick). */
  #ackQueue: number[] = [];
  #ackFlushQueued = false;
  /** ack() / nack() calls not yet settled. */
  readonly #waiters = new Set<Waiter>();
  #deadlineTimer: TimerHandle | undefined;
  /** unsubscribe() waits for this: every pending ack confirmed. */
  #onDrained: (() => void) | undefined;
  #channel: Channel | undefined;
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #iteration = new SingleIteration<PersistentEvent>(
    () => this.#next(),
    () => this.unsubscribe(),
  );
  #joined = 0;
  readonly #done: Promise<void>;

  /** @internal use client.persistentSubscriptions.subscribe */
  constructor(
    ctx: OperationContext,
    streamId: string,
    group: string,
    options: PersistentSubscribeOptions = {},
  ) {
    super();
    checkOptions("persistentSubscriptions.subscribe", options, SUBSCRIBE_KEYS);
    checkCredentialKeys("persistentSubscriptions.subscribe", options?.credentials);
    this.#ctx = ctx;
    this.streamId = checkSource(streamId);
    this.group = checkGroup(group);
    this.#options = options;
    const size = options.bufferSize ?? DEFAULT_SUBSCRIPTION_BUFFER_SIZE;
    if (!Number.isInteger(size) || size < 1 || size > 100_000) {
      throw new InvalidArgumentError(
        `bufferSize must be an integer in 1..100000, got ${String(size)}`,
      );
    }
    this.#bufferSize = size;
    this.#decodeJson = decodeJsonOf("persistentSubscriptions.subscribe", options.decodeJson);
    followSignal(options.signal, this.#abort, (reason) => this.#end(reason, false));
    this.#done = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#run())
      .catch((err: unknown) =>
        this.#end(err instanceof Error ? err : new Error(String(err)), true),
      );
  }

  get isEnded(): boolean {
    return this.#ended;
  }

  /** Settles once the subscription has ended and stopped all its work. Never rejects. */
  get finished(): Promise<void> {
    return this.#done;
  }

  /**
   * Acknowledges events: they are done and never delivered again. Resolves once the server has
   * made the acknowledgement durable. Need not be awaited (a failure never becomes an unhandled
   * rejection; the subscription sends it again after a reconnect).
   */
  ack(
    events: PersistentEvent | ResolvedEvent | readonly (PersistentEvent | ResolvedEvent)[],
    options?: AckOptions,
  ): Promise<void> {
    try {
      checkOptions("PersistentSubscription.ack", options, []);
    } catch (err) {
      return handled(err as Error);
    }
    return this.#traced("ack", "", events);
  }

  /**
   * Negative acknowledgement: "park" (move to the parked stream), "retry" (deliver again,
   * retryCount + 1; with `delayMs`, no sooner than that after the nack is confirmed), "skip"
   * (done without handling), "stop" (end this subscription; the events go to other consumers).
   */
  nack(
    action: NackAction,
    reason: string,
    events: PersistentEvent | ResolvedEvent | readonly (PersistentEvent | ResolvedEvent)[],
    options?: NackOptions,
  ): Promise<void> {
    if (!(action in NACK_TO_WIRE))
      return handled(
        new InvalidArgumentError(
          `nack action must be park, retry, skip or stop, got ${String(action)}`,
        ),
      );
    let delayMs: number;
    try {
      delayMs = nackDelay(action, options);
    } catch (err) {
      return handled(err as Error);
    }
    return this.#traced(action, String(reason ?? ""), events, delayMs);
  }

  /** #settle, published on the ack diagnostics channels. */
  #traced(
    action: "ack" | NackAction,
    reason: string,
    events: PersistentEvent | ResolvedEvent | readonly (PersistentEvent | ResolvedEvent)[],
    delayMs = 0,
  ): Promise<void> {
    return traceAck(
      () => ({
        action,
        reason,
        streamId: this.streamId,
        group: this.group,
        events: isEventList(events) ? [...events] : [events],
      }),
      () => this.#settle(action, reason, events, delayMs),
    );
  }

  /** Leaves the group after sending outstanding acks (waiting up to the operation timeout for them). */
  async unsubscribe(): Promise<void> {
    if (!this.#ended && this.#pending.size > 0) {
      this.#flushAcks();
      const deadlineMs = this.#ctx.settings.operationTimeoutMs;
      await Promise.race([
        new Promise<void>((resolve) => (this.#onDrained = resolve)),
        sleep(this.#ctx.settings.timers, deadlineMs, this.#abort.signal).catch(() => undefined),
      ]);
      this.#onDrained = undefined;
    }
    this.#end(undefined, false);
    await this.#done;
  }

  [Symbol.asyncIterator](): AsyncIterator<PersistentEvent> {
    return this.#iteration.begin();
  }

  async #next(): Promise<IteratorResult<PersistentEvent>> {
    for (;;) {
      const event = this.#buffer.shift();
      if (event) {
        const position = Number(event.event.position);
        this.#buffered.delete(position);
        this.#handed.set(position, event.retryCount);
        publishDeliver(event, this.group, this.streamId);
        return { done: false, value: event };
      }
      if (this.#failure) {
        const err = this.#failure;
        this.#failure = undefined;
        this.#iteration.end();
        throw err;
      }
      if (this.#ended) {
        this.#iteration.end();
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #settle(
    action: "ack" | NackAction,
    reason: string,
    events: PersistentEvent | ResolvedEvent | readonly (PersistentEvent | ResolvedEvent)[],
    delayMs: number,
  ): Promise<void> {
    const list = isEventList(events) ? events : [events];
    const positions: number[] = [];
    for (const e of list) {
      const p = e?.event?.position;
      if (typeof p !== "bigint")
        return handled(new InvalidArgumentError("ack / nack take events of this subscription"));
      positions.push(Number(p));
    }
    if (this.#ended) return handled(new SubscriptionDroppedError("the subscription has ended"));
    const timeoutMs = this.#ctx.settings.operationTimeoutMs;
    let waiter!: Waiter;
    const all = new Promise<void>((resolve, reject) => {
      let remaining = positions.length;
      waiter = {
        deadlineMs: this.#ctx.settings.timers.now() + timeoutMs,
        resolve: () => {
          if (--remaining > 0) return;
          this.#waiters.delete(waiter);
          resolve();
        },
        reject: (err) => {
          this.#waiters.delete(waiter);
          reject(err);
        },
        timeout: () =>
          new TimeoutError(
            `the server did not confirm the ${action} within ${timeoutMs} ms; it is sent again after a reconnect`,
          ),
      };
    });
    all.catch(() => undefined);
    this.#waiters.add(waiter);
    this.#watchDeadlines();
    for (const p of positions) {
      let pending = this.#pending.get(p);
      if (!pending || pending.action !== action) {
        pending = { action, reason, delayMs, waiters: pending?.waiters ?? [] };
        this.#pending.set(p, pending);
      }
      pending.waiters.push(waiter);
    }
    if (action === "ack") {
      this.#ackQueue.push(...positions);
      if (!this.#ackFlushQueued) {
        this.#ackFlushQueued = true;
        setImmediate(() => this.#flushAcks());
      }
    } else {
      this.#sendNack(positions, action, reason, delayMs);
    }
    return all;
  }

  /** One timer for every ack / nack waiting for its confirmation: rejects those past their deadline. */
  #watchDeadlines(): void {
    if (this.#deadlineTimer !== undefined || this.#waiters.size === 0) return;
    const timers = this.#ctx.settings.timers;
    const everyMs = Math.max(10, Math.min(1_000, this.#ctx.settings.operationTimeoutMs / 4));
    this.#deadlineTimer = timers.setTimeout(() => {
      this.#deadlineTimer = undefined;
      const now = timers.now();
      for (const w of [...this.#waiters]) if (w.deadlineMs <= now) w.reject(w.timeout());
      this.#watchDeadlines();
    }, everyMs);
  }

  #flushAcks(): void {
    this.#ackFlushQueued = false;
    const positions = this.#ackQueue;
    this.#ackQueue = [];
    if (positions.length === 0 || !this.#channel) return;
    try {
      this.#channel.send({ persistentAck: { positions }, ...this.#credentials() });
    } catch {
      // connection lost: every pending ack is sent again after the reconnect
    }
  }

  #sendNack(positions: number[], action: NackAction, reason: string, delayMs = 0): void {
    if (!this.#channel) return;
    try {
      this.#channel.send({
        persistentNack: {
          positions,
          action: NACK_TO_WIRE[action],
          reason,
          ...(delayMs > 0 && { delayMs }),
        },
        ...this.#credentials(),
      });
    } catch {
      // sent again after the reconnect
    }
    if (action === "stop") {
      // The consumer leaves the group; its events go to the others.
      this.#confirmed(positions);
      queueMicrotask(() => this.#end(undefined, false));
    }
  }

  /** Events this consumer holds (handed over or buffered, and not given back): the group keeps them here. */
  #held(): number[] {
    const held = new Set<number>([...this.#handed.keys(), ...this.#buffered]);
    // Handed back by leaving the old connection. A delayed retry not confirmed yet stays
    // claimed: its nack is sent again, so the delay holds whether or not the leader had it.
    for (const [p, pending] of this.#pending)
      if (pending.action === "stop" || (pending.action === "retry" && pending.delayMs === 0))
        held.delete(p);
    return [...held].slice(0, this.#bufferSize);
  }

  #credentials(): { credentials?: chorus.ICredentials } {
    return this.#options.credentials ? { credentials: { ...this.#options.credentials } } : {};
  }

  /** The server confirmed these acks / nacks durable. */
  #confirmed(positions: readonly number[]): void {
    for (const p of positions) {
      const pending = this.#pending.get(p);
      if (!pending) continue;
      this.#pending.delete(p);
      // Done for good (ack, skip, park); a retry or stop hands the event back to the group.
      this.#handed.delete(p);
      for (const w of pending.waiters) w.resolve();
    }
    if (this.#pending.size === 0) this.#onDrained?.();
  }

  /** After joining again: everything not yet confirmed is sent again. */
  #resend(): void {
    const acks: number[] = [];
    const nacks = new Map<
      string,
      { action: NackAction; reason: string; delayMs: number; positions: number[] }
    >();
    for (const [p, pending] of this.#pending) {
      if (pending.action === "ack") acks.push(p);
      else if (pending.action === "stop" || (pending.action === "retry" && pending.delayMs === 0)) {
        // Leaving the old connection already handed these back to the group.
        this.#pending.delete(p);
        this.#handed.delete(p);
        for (const w of pending.waiters) w.resolve();
      } else {
        // Park, skip, and a delayed retry (claimed in the join: the group delays it now, or
        // confirms at once when it already has the delay).
        const { action, reason, delayMs } = pending;
        const k = `${action}\u0000${reason}\u0000${delayMs}`;
        let n = nacks.get(k);
        if (!n) nacks.set(k, (n = { action, reason, delayMs, positions: [] }));
        n.positions.push(p);
      }
    }
    this.#ackQueue = [...new Set([...acks, ...this.#ackQueue])];
    this.#flushAcks();
    for (const n of nacks.values()) this.#sendNack(n.positions, n.action, n.reason, n.delayMs);
  }

  #end(error: Error | undefined, emitDropped: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#channel) {
      try {
        this.#channel.send({ unsubscribe: {}, ...this.#credentials() });
      } catch {
        // the connection is gone anyway
      }
      this.#channel.close();
      this.#channel = undefined;
    }
    const reason = error ?? new SubscriptionDroppedError("the subscription has ended");
    for (const w of [...this.#waiters]) w.reject(reason);
    this.#pending.clear();
    if (this.#deadlineTimer !== undefined)
      this.#ctx.settings.timers.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    if (error) this.#failure = error;
    this.#abort.abort(error ?? new Error("unsubscribed"));
    if (error && emitDropped) this.emit("dropped", error);
    this.#notify();
  }

  async #run(): Promise<void> {
    await runRejoinLoop({
      settings: this.#ctx.settings,
      connection: this.#ctx.connection,
      signal: this.#abort.signal,
      isEnded: () => this.#ended,
      leaderOnly: "persistent subscriptions live on the leader",
      attempt: (session, onConfirmed) =>
        converse(session, {
          signal: this.#abort.signal,
          setChannel: (channel) => (this.#channel = channel),
          onFrame: (frame) => this.#onFrame(frame, onConfirmed),
          request: () => ({
            ...this.#credentials(),
            persistentSubscribe: {
              streamId: this.streamId,
              group: this.group,
              bufferSize: this.#bufferSize,
              consumerName: this.#options.consumerName ?? "",
              heldPositions: this.#held(),
            },
          }),
        }),
      retriable: (err) => !isTerminal(err),
      end: (error, emitDropped) => this.#end(error, emitDropped),
      onRetry: (err) => this.emit("reconnecting", err),
    });
  }

  #onFrame(frame: Frame, onConfirmed: () => void): void {
    if (this.#ended) return;
    if (frame.persistentEvents) {
      const events = frame.persistentEvents.events ?? [];
      const retries = frame.persistentEvents.retryCounts ?? [];
      let added = false;
      for (let i = 0; i < events.length; i++) {
        const resolved = resolvedEventFromWire(
          events[i] as chorus.IResolvedEvent,
          this.#ctx.partition,
          this.#decodeJson,
        );
        const retryCount = retries[i] ?? 0;
        const position = Number(resolved.event.position);
        // Offered again after a reconnect while the application holds it (or its ack is on the
        // way): not handed over twice. A higher retryCount is a redelivery the application asked for.
        if (this.#pending.has(position)) continue;
        const handed = this.#handed.get(position);
        if (handed !== undefined && retryCount <= handed) continue;
        if (this.#buffered.has(position)) continue;
        this.#buffered.add(position);
        this.#buffer.push(Object.freeze({ ...resolved, retryCount }));
        added = true;
      }
      if (added) this.#notify();
      return;
    }
    if (frame.persistentAcked) {
      this.#confirmed((frame.persistentAcked.positions ?? []).map(wireNumber));
      return;
    }
    if (frame.persistentConfirmed) {
      onConfirmed();
      this.#joined++;
      // Joined again: what the last connection did not confirm goes out on this one.
      if (this.#joined > 1) this.#resend();
      this.emit(this.#joined === 1 ? "confirmed" : "resubscribed");
      return;
    }
    if (frame.subscriptionDropped) {
      const reason = frame.subscriptionDropped.reason;
      if (reason && (reason.code ?? 0) !== chorus.ErrorResponse.Code.UNKNOWN) {
        throw errorFromWire({ error: reason }, { streamId: this.streamId });
      }
      // Dropped for a passing reason (the group's settings changed): join again.
      throw new ConnectionError(reason?.message || "dropped by the server");
    }
    if (frame.error) throw errorFromWire({ error: frame.error }, { streamId: this.streamId });
    if (frame.notHandled) throw errorFromWire({ notHandled: frame.notHandled });
  }
}
