import { EventEmitter } from "node:events";
import { chorus, type Frame } from "@chorus/protocol";
import type { Session } from "../connection/connection.js";
import { publishDeliver } from "../diagnostics.js";
import {
  errorFromWire,
  InvalidArgumentError,
  isRetriable,
  StreamNotFoundError,
  SubscriptionDroppedError,
} from "../errors.js";
import { connectionFor, type OperationContext } from "../operations/context.js";
import { decodeJsonOf, resolvedEventFromWire } from "../operations/events.js";
import { toWireNumber } from "../operations/expected-version.js";
import { filterToWire, readAll, readStream, type StreamFilter } from "../operations/read.js";
import { checkOperationOptions, checkStreamName } from "../operations/validate.js";
import { DEFAULT_SUBSCRIPTION_BUFFER_SIZE } from "../settings/defaults.js";
import type { Channel } from "../transport/transport.js";
import { converse, followSignal, runRejoinLoop } from "./rejoin.js";
import type { Credentials, ResolvedEvent } from "../types.js";
import { optionKeys } from "../util/options.js";
import { SingleIteration } from "../util/single-iteration.js";

export interface SubscriptionOptionsBase {
  credentials?: Credentials;
  /** Cancels the subscription (like unsubscribe(); the iterator then throws the signal's reason). */
  signal?: AbortSignal;
  requireLeader?: boolean;
  resolveLinks?: boolean;
  /** Events buffered ahead of the application; also the most credit granted. Default DEFAULT_SUBSCRIPTION_BUFFER_SIZE. */
  bufferSize?: number;
  /** Accepted for symmetry with operations; the initial "end" lookup uses it. */
  timeoutMs?: number;
  /** As for reads: false hands a JSON event's data and metadata over as the bytes stored. */
  decodeJson?: boolean;
}

export interface SubscribeToStreamOptions extends SubscriptionOptionsBase {
  /** Exclusive: a revision r delivers r+1 first. Default "start". */
  fromRevision?: "start" | "end" | bigint | number;
}

export interface SubscribeToAllOptions extends SubscriptionOptionsBase {
  /** Exclusive: a position p delivers the first event after p. Default "start". */
  fromPosition?: "start" | "end" | bigint | number;
  filter?: StreamFilter;
}

const SUBSCRIPTION_BASE_KEYS = {
  credentials: true,
  signal: true,
  requireLeader: true,
  resolveLinks: true,
  bufferSize: true,
  timeoutMs: true,
  decodeJson: true,
} as const;

const SUBSCRIBE_TO_STREAM_KEYS = optionKeys<SubscribeToStreamOptions>({
  ...SUBSCRIPTION_BASE_KEYS,
  fromRevision: true,
});

const SUBSCRIBE_TO_ALL_KEYS = optionKeys<SubscribeToAllOptions>({
  ...SUBSCRIPTION_BASE_KEYS,
  fromPosition: true,
  filter: true,
});

export interface SubscriptionEvents {
  /** Every event before the live point has been handed to the application (emitted once). */
  caughtUp: [];
  /** The subscription ended because of `error`; the iterator throws it after the buffered events. */
  dropped: [error: Error];
  /**
   * Filtered $all subscriptions: the server has examined the log up to `position` and every
   * match before it has been handed over, so a new subscription from `position` (exclusive)
   * repeats nothing and skips nothing, even when nothing matched for a long time. Emitted in
   * order with the events: once the application asks for the event after the checkpoint.
   */
  checkpoint: [position: bigint];
}

type Target =
  { kind: "stream"; streamId: string } | { kind: "all"; filter: chorus.IFilter | undefined };
type Item =
  | { kind: "event"; event: ResolvedEvent }
  | { kind: "caughtUp" }
  | { kind: "checkpoint"; position: bigint };

const StartKind = chorus.SubscribeRequest.StartKind;

/** Checkpoints that wait for a busy application; past this, the newest replaces the last. */
const MAX_CHECKPOINTS_WAITING = 1000;

/**
 * A subscription pulled by another object instead of iterated: what a merged subscription
 * over several groups uses to take each group's events with no promise per event between them
 * (`pullOf`; not part of the package's exports).
 */
export interface SubscriptionPull {
  /**
   * The iterator's next step without waiting: the next event (saying `caughtUp` and
   * checkpoints on the way, as the iterator does), the end (`done`, or the failure thrown),
   * or undefined when nothing is ready yet.
   */
  takeReady(): IteratorResult<ResolvedEvent> | undefined;
  /**
   * Calls `wake` once when `takeReady` may have something (an event, the end), unless
   * `stopWaiting` comes first. While it waits, the application counts as waiting for the next
   * event: a checkpoint is said at once.
   */
  waitReady(wake: () => void): void;
  /** The wait of `waitReady` is over (another group's subscription had an event). */
  stopWaiting(): void;
}

/** The pull side of a subscription (set by the class below, which alone sees its fields). */
export let pullOf: (sub: Subscription) => SubscriptionPull;

/**
 * A catch-up subscription: catch-up, then live. An async iterable over a bounded buffer
 * with credit-based flow control (the server may send only as many events as the buffer
 * has room for; credit is replenished as the application consumes). After a connection
 * loss it subscribes again AFTER the last event it received, so the application sees no
 * gap and no repeat. It follows the connection's sessions and never opens sockets itself.
 */
export class Subscription
  extends EventEmitter<SubscriptionEvents>
  implements AsyncIterable<ResolvedEvent>
{
  readonly #ctx: OperationContext;
  readonly #target: Target;
  readonly #options: SubscriptionOptionsBase;
  readonly #decodeJson: boolean;
  readonly #capacity: number;
  readonly #abort = new AbortController();
  readonly #buffer: Item[] = [];
  #buffered = 0;
  /** Checkpoints in `#buffer`, not said yet. */
  #checkpointsQueued = 0;
  #outstanding = 0;
  /** undefined: from the start; "end": not resolved yet; otherwise exclusive start. */
  #after: bigint | "end" | undefined;
  #channel: Channel | undefined;
  #caughtUpQueued = false;
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #iteration = new SingleIteration<ResolvedEvent>(
    () => this.#next(),
    () => this.unsubscribe(),
  );
  readonly #done: Promise<void>;

  /** @internal use client.subscribeToStream / subscribeToAll */
  constructor(
    ctx: OperationContext,
    target: Target,
    start: "start" | "end" | bigint | number | undefined,
    options: SubscriptionOptionsBase,
  ) {
    super();
    this.#ctx = ctx;
    this.#target = target;
    this.#options = options;
    const size = options.bufferSize ?? DEFAULT_SUBSCRIPTION_BUFFER_SIZE;
    if (!Number.isInteger(size) || size < 1 || size > 1_000_000) {
      throw new InvalidArgumentError(
        `bufferSize must be an integer in 1..1000000, got ${String(size)}`,
      );
    }
    this.#capacity = size;
    this.#decodeJson = decodeJsonOf(
      target.kind === "stream" ? "subscribeToStream" : "subscribeToAll",
      options.decodeJson,
    );
    this.#after =
      start === undefined || start === "start"
        ? undefined
        : start === "end"
          ? "end"
          : BigInt(toWireNumber(start, "subscription start"));
    followSignal(options.signal, this.#abort, (reason) => this.#end(reason, false));
    // Start on the next tick so listeners can be attached first.
    this.#done = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#run())
      .catch((err: unknown) =>
        this.#end(err instanceof Error ? err : new Error(String(err)), true),
      );
  }

  /** True once the subscription has ended (unsubscribed, dropped or client closed). */
  get isEnded(): boolean {
    return this.#ended;
  }

  /** Settles once the subscription has ended and stopped all its work. Never rejects. */
  get finished(): Promise<void> {
    return this.#done;
  }

  /** Stops the subscription; a waiting iterator finishes. Safe to call more than once. */
  async unsubscribe(): Promise<void> {
    this.#end(undefined, false);
    await this.#done;
  }

  [Symbol.asyncIterator](): AsyncIterator<ResolvedEvent> {
    return this.#iteration.begin();
  }

  async #next(): Promise<IteratorResult<ResolvedEvent>> {
    for (;;) {
      const ready = this.#takeReady();
      if (ready !== undefined) return ready;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  static {
    pullOf = (sub) => ({
      takeReady: () => sub.#takeReady(),
      waitReady: (wake) => (sub.#wake = wake),
      stopWaiting: () => (sub.#wake = undefined),
    });
  }

  /**
   * The iterator's step without waiting: the next event (saying `caughtUp` and checkpoints on
   * the way, as the iterator does), the end (`done`, or the failure thrown), or undefined
   * when nothing is ready yet.
   */
  #takeReady(): IteratorResult<ResolvedEvent> | undefined {
    for (;;) {
      const item = this.#buffer.shift();
      if (item?.kind === "caughtUp") {
        this.emit("caughtUp");
        continue;
      }
      if (item?.kind === "checkpoint") {
        this.#checkpointsQueued--;
        this.emit("checkpoint", item.position);
        continue;
      }
      if (item) {
        this.#buffered--;
        this.#replenish();
        // Caught up once the last event before the live point is handed over.
        if (this.#buffer[0]?.kind === "caughtUp") {
          this.#buffer.shift();
          this.emit("caughtUp");
        }
        publishDeliver(item.event);
        return { done: false, value: item.event };
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
      return undefined;
    }
  }

  /**
   * A message with no events is a checkpoint. It is said in order: at once when the
   * application waits for the next event (it is done with every event before), else when it
   * next asks. Each is said (one per `checkpointInterval` records scanned) while fewer than
   * MAX_CHECKPOINTS_WAITING wait; beyond that, the newest replaces the last one waiting, which
   * bounds the memory of an application that does not keep up (the latest is the resume point).
   */
  #queueCheckpoint(position: bigint): void {
    if (this.#buffer.length === 0 && this.#wake !== undefined) {
      this.emit("checkpoint", position);
      return;
    }
    const last = this.#buffer[this.#buffer.length - 1];
    if (last?.kind === "checkpoint" && this.#checkpointsQueued >= MAX_CHECKPOINTS_WAITING) {
      last.position = position;
      return;
    }
    this.#buffer.push({ kind: "checkpoint", position });
    this.#checkpointsQueued++;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Grants the free buffer space as credit once enough of it is free. */
  #replenish(): void {
    const free = this.#capacity - this.#buffered - this.#outstanding;
    const threshold = Math.max(1, Math.floor(this.#capacity / 4));
    if (free < threshold || !this.#channel) return;
    try {
      this.#channel.send({ subscriptionCredit: { credit: free }, ...this.#credentials() });
      this.#outstanding += free;
    } catch {
      // connection lost: the resubscription grants credit afresh
    }
  }

  #credentials(): { credentials?: chorus.ICredentials } {
    return this.#options.credentials ? { credentials: { ...this.#options.credentials } } : {};
  }

  /** Ends the subscription; with an error, it is dropped (the iterator throws it). */
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
    if (error) this.#failure = error;
    this.#abort.abort(error ?? new Error("unsubscribed"));
    if (error && emitDropped) this.emit("dropped", error);
    this.#notify();
  }

  get #requireLeader(): boolean {
    return this.#options.requireLeader ?? this.#ctx.settings.nodePreference === "leader";
  }

  async #run(): Promise<void> {
    const requireLeader = this.#requireLeader;
    await runRejoinLoop({
      settings: this.#ctx.settings,
      connection: connectionFor(this.#ctx, requireLeader),
      signal: this.#abort.signal,
      isEnded: () => this.#ended,
      ...(requireLeader && { leaderOnly: "the subscription requires the leader" }),
      before: async () => {
        if (this.#after === "end") this.#after = await this.#lastEventPosition();
      },
      // After a lost connection: subscribe again after the last received event.
      attempt: (session, onConfirmed) => this.#subscribeOn(session, onConfirmed),
      retriable: isRetriable,
      end: (error, emitDropped) => this.#end(error, emitDropped),
    });
  }

  /** For a start at "end": the last event's revision/position now, or undefined when there is none. */
  async #lastEventPosition(): Promise<bigint | undefined> {
    const opts = {
      direction: "backwards" as const,
      maxCount: 1,
      signal: this.#abort.signal,
      // the same node as the subscription's, so "end" is the end as that node knows it
      requireLeader: this.#requireLeader,
      ...(this.#options.credentials && { credentials: this.#options.credentials }),
      ...(this.#options.timeoutMs !== undefined && { timeoutMs: this.#options.timeoutMs }),
    };
    try {
      const events =
        this.#target.kind === "stream"
          ? readStream(this.#ctx, this.#target.streamId, { ...opts, fromRevision: "end" })
          : readAll(this.#ctx, { ...opts, fromPosition: "end" });
      for await (const e of events)
        return this.#target.kind === "stream" ? e.event.revision : e.event.position;
    } catch (err) {
      if (err instanceof StreamNotFoundError) return undefined;
      throw err;
    }
    return undefined;
  }

  /** Subscribes on one session; resolves when the connection is lost, rejects when the server refuses or drops. */
  #subscribeOn(session: Session, onConfirmed: () => void): Promise<void> {
    return converse(session, {
      signal: this.#abort.signal,
      setChannel: (channel) => (this.#channel = channel),
      onFrame: (frame) => this.#onFrame(frame, onConfirmed),
      onLost: (error) =>
        this.#ctx.settings.logger.debug("subscription lost its connection; resubscribing", {
          error: error.message,
        }),
      request: () => {
        const after = this.#after as bigint | undefined;
        const credit = Math.max(0, this.#capacity - this.#buffered);
        this.#outstanding = credit;
        const target = this.#target;
        return {
          ...this.#credentials(),
          subscribe: {
            ...(target.kind === "stream"
              ? { streamId: target.streamId }
              : { all: true, ...(target.filter && { filter: target.filter }) }),
            start: after === undefined ? StartKind.START : StartKind.AFTER,
            ...(after !== undefined &&
              (target.kind === "stream"
                ? { afterRevision: Number(after) }
                : { afterPosition: Number(after) })),
            credit,
            resolveLinks: this.#options.resolveLinks === true,
          },
        };
      },
    });
  }

  #onFrame(frame: Frame, onConfirmed: () => void): void {
    if (this.#ended) return;
    if (frame.subscriptionConfirmed) {
      onConfirmed();
      return;
    }
    if (frame.subscriptionEvents) {
      const events = frame.subscriptionEvents.events ?? [];
      for (const wire of events) {
        const resolved = resolvedEventFromWire(wire, this.#ctx.partition, this.#decodeJson);
        const mark =
          this.#target.kind === "stream" ? resolved.event.revision : resolved.event.position;
        // Never hand over an event twice (a server replaying after a resubscription).
        if (typeof this.#after === "bigint" && mark <= this.#after) continue;
        this.#after = mark;
        this.#buffer.push({ kind: "event", event: resolved });
        this.#buffered++;
      }
      this.#outstanding = Math.max(0, this.#outstanding - events.length);
      const checkpoint = frame.subscriptionEvents.checkpointPosition;
      if (this.#target.kind === "all" && checkpoint) {
        const cp = BigInt(checkpoint);
        if (this.#after === undefined || (typeof this.#after === "bigint" && cp > this.#after)) {
          this.#after = cp;
          if (events.length === 0) this.#queueCheckpoint(cp);
        }
      }
      if (events.length > 0) this.#notify();
      return;
    }
    if (frame.subscriptionCaughtUp) {
      if (!this.#caughtUpQueued) {
        this.#caughtUpQueued = true;
        // Everything before the live point already handed over: say so now; else after it.
        if (this.#buffer.length === 0) this.emit("caughtUp");
        else this.#buffer.push({ kind: "caughtUp" });
      }
      return;
    }
    const streamId = this.#target.kind === "stream" ? this.#target.streamId : undefined;
    if (frame.subscriptionDropped) {
      const reason = frame.subscriptionDropped.reason;
      if (reason && (reason.code ?? 0) !== chorus.ErrorResponse.Code.UNKNOWN) {
        throw errorFromWire({ error: reason }, streamId !== undefined ? { streamId } : {});
      }
      throw new SubscriptionDroppedError(reason?.message || "dropped by the server");
    }
    if (frame.error)
      throw errorFromWire({ error: frame.error }, streamId !== undefined ? { streamId } : {});
    if (frame.notHandled) throw errorFromWire({ notHandled: frame.notHandled });
  }
}

export function subscribeToStream(
  ctx: OperationContext,
  streamId: string,
  options: SubscribeToStreamOptions = {},
): Subscription {
  checkStreamName(streamId);
  checkOperationOptions("subscribeToStream", options, SUBSCRIBE_TO_STREAM_KEYS);
  return new Subscription(ctx, { kind: "stream", streamId }, options.fromRevision, options);
}

export function subscribeToAll(
  ctx: OperationContext,
  options: SubscribeToAllOptions = {},
): Subscription {
  checkOperationOptions("subscribeToAll", options, SUBSCRIBE_TO_ALL_KEYS);
  return new Subscription(
    ctx,
    { kind: "all", filter: filterToWire("subscribeToAll", options.filter) },
    options.fromPosition,
    options,
  );
}
