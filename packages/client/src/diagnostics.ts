/**
 * What the client publishes on `node:diagnostics_channel`, for tracing and instrumentation
 * (see docs/tracing.md). The client itself depends on no tracing library: a subscriber such
 * as `@chorus/opentelemetry` turns these messages into spans.
 *
 * Operations with a beginning and an end (appends, read pages, acks) use a `TracingChannel`
 * whose five channels carry the names `<prefix>:start`, `:end`, `:asyncStart`, `:asyncEnd`
 * and `:error`. As with every tracing channel, `start` is published synchronously in the
 * caller's asynchronous context, `end` when the synchronous part returned, `error` when the
 * operation failed (`message.error`) and `asyncStart` / `asyncEnd` when it settled
 * (`message.result` on success). The same message object travels through all of them, so a
 * subscriber can keep its own state per operation in a WeakMap keyed by the message.
 *
 * Nothing is built or published while a channel has no subscriber.
 */
import diagnostics_channel from "node:diagnostics_channel";
import type { AppendResult } from "./operations/append.js";
import type { EventData } from "./operations/events.js";
import type { ExpectedVersion, MemberInfo, ResolvedEvent } from "./types.js";

/** The channels of appends: `chorus:client:append:start`, `...:end`, `...:asyncStart`, `...:asyncEnd`, `...:error`. */
export const APPEND_CHANNEL_PREFIX = "chorus:client:append";
/** The channels of read requests (one per page of readStream / readAll): `chorus:client:read:start`, ... */
export const READ_CHANNEL_PREFIX = "chorus:client:read";
/** The channels of persistent subscription acks and nacks: `chorus:client:ack:start`, ... */
export const ACK_CHANNEL_PREFIX = "chorus:client:ack";
/** An event handed to the application by a catch-up or a persistent subscription. */
export const DELIVER_CHANNEL = "chorus:client:deliver";
/** A connection of a client is about to reconnect. */
export const RECONNECT_CHANNEL = "chorus:client:reconnect";
/** The client saw the cluster's leader change. */
export const LEADER_CHANGED_CHANNEL = "chorus:client:leaderChanged";

/** The five events of a tracing channel, in the order they may be published. */
export const TRACING_EVENTS = Object.freeze([
  "start",
  "end",
  "asyncStart",
  "asyncEnd",
  "error",
] as const);

/**
 * Metadata keys an append start subscriber may set, each written into the metadata of the
 * append's events: `"$traceparent"`, `"$tracestate"` and the like.
 */
export type PropagationFields = Record<string, string>;

/** Published on the append channels. `result` is set on success, `error` on failure. */
export interface AppendMessage {
  readonly streamId: string;
  /** The events as given (before `metadata` is applied). */
  readonly events: readonly EventData[];
  readonly expectedVersion: ExpectedVersion;
  /**
   * Empty when `start` is published; fields a `start` subscriber puts here are added to
   * the metadata of every JSON event of the append whose metadata is a JSON object (or
   * absent) before the events are encoded, so every retry sends the same bytes. A key the
   * event's metadata already has keeps the event's value. Binary events, and JSON events
   * whose metadata is not a JSON object, are sent untouched.
   */
  readonly metadata: PropagationFields;
  result?: AppendResult;
  error?: unknown;
}

/** One page of a read, as the read channels' `result` carries it. */
export interface ReadPageResult {
  readonly events: readonly ResolvedEvent[];
  readonly endOfStream: boolean;
}

/** Published on the read channels, once per page request of readStream / readAll. */
export interface ReadMessage {
  readonly operation: "readStream" | "readAll";
  /** The stream read, or "$all". */
  readonly streamId: string;
  readonly direction: "forwards" | "backwards";
  /** Where this page starts: a revision (readStream) or a position (readAll), or "end". */
  readonly from: bigint | "end";
  /** The most events this page asks for. */
  readonly maxCount: number;
  result?: ReadPageResult;
  error?: unknown;
}

/** Published on `chorus:client:deliver` when a subscription hands an event to the application. */
export interface DeliverMessage {
  /** "catchUp" for subscribeToStream / subscribeToAll, "persistent" for a persistent subscription. */
  readonly subscription: "catchUp" | "persistent";
  /** The stream of the event (for a resolved link, of the event the link points to). */
  readonly streamId: string;
  readonly eventId: string;
  readonly type: string;
  readonly revision: bigint;
  readonly position: bigint;
  /** The event's metadata as the application gets it (parsed JSON, bytes or undefined): `$traceparent` lives here. */
  readonly metadata: unknown;
  /** The persistent subscription's group (persistent only). */
  readonly group?: string;
  /** The stream the persistent subscription consumes ("$all" for every stream; persistent only). */
  readonly source?: string;
  /** How many times the event was delivered before (persistent only). */
  readonly retryCount?: number;
  /** The very object handed to the application (and later given to ack / nack). */
  readonly event: ResolvedEvent;
}

/** Published on the ack channels for every ack() / nack() of a persistent subscription. */
export interface AckMessage {
  /** "ack", or the nack's action. */
  readonly action: "ack" | "park" | "retry" | "skip" | "stop";
  /** The nack's reason ("" for an ack). */
  readonly reason: string;
  /** The stream the persistent subscription consumes ("$all" for every stream). */
  readonly streamId: string;
  readonly group: string;
  /** The events acknowledged, as the application passed them. */
  readonly events: readonly ResolvedEvent[];
  error?: unknown;
}

/** Published on `chorus:client:reconnect`. */
export interface ReconnectMessage {
  /** 1 for the first attempt after a loss. */
  readonly attempt: number;
}

/** Published on `chorus:client:leaderChanged`. */
export interface LeaderChangedMessage {
  readonly previous?: MemberInfo;
  readonly current: MemberInfo;
}

function tracing<M extends object>(prefix: string): diagnostics_channel.TracingChannel<M, M> {
  return diagnostics_channel.tracingChannel<M, M>({
    start: diagnostics_channel.channel(`${prefix}:start`),
    end: diagnostics_channel.channel(`${prefix}:end`),
    asyncStart: diagnostics_channel.channel(`${prefix}:asyncStart`),
    asyncEnd: diagnostics_channel.channel(`${prefix}:asyncEnd`),
    error: diagnostics_channel.channel(`${prefix}:error`),
  } as diagnostics_channel.TracingChannelCollection<M, M>);
}

// Channels are process-wide by nature (subscribers find them by name); these are handles only.
const appendChannel = tracing<AppendMessage>(APPEND_CHANNEL_PREFIX);
const readChannel = tracing<ReadMessage>(READ_CHANNEL_PREFIX);
const ackChannel = tracing<AckMessage>(ACK_CHANNEL_PREFIX);
const deliverChannel = diagnostics_channel.channel(DELIVER_CHANNEL);
const reconnectChannel = diagnostics_channel.channel(RECONNECT_CHANNEL);
const leaderChangedChannel = diagnostics_channel.channel(LEADER_CHANGED_CHANNEL);

/**
 * Runs an append through the append channels. `run` gets the events to encode: the given
 * ones, or, when a start subscriber set metadata fields, copies that carry them.
 */
export function traceAppend<T extends AppendResult>(
  streamId: string,
  events: readonly EventData[],
  expectedVersion: ExpectedVersion,
  run: (events: readonly EventData[]) => Promise<T>,
): Promise<T> {
  if (!appendChannel.hasSubscribers) return run(events);
  const message: AppendMessage = { streamId, events, expectedVersion, metadata: {} };
  return appendChannel.tracePromise(
    () => run(withMetadataFields(events, message.metadata)),
    message,
  );
}

/** Runs one page request of a read through the read channels; `describe` builds the message only when someone listens. */
export function traceRead<T extends ReadPageResult>(
  describe: () => ReadMessage,
  run: () => Promise<T>,
): Promise<T> {
  if (!readChannel.hasSubscribers) return run();
  return readChannel.tracePromise(run, describe());
}

/** Runs an ack / nack through the ack channels. The returned promise is never an unhandled rejection. */
export function traceAck(describe: () => AckMessage, run: () => Promise<void>): Promise<void> {
  if (!ackChannel.hasSubscribers) return run();
  const p = ackChannel.tracePromise(run, describe());
  p.catch(() => undefined);
  return p;
}

/**
 * Publishes a delivery (the message is built only when someone listens): of a catch-up
 * subscription, or, with `group` and `source`, of a persistent one.
 */
export function publishDeliver(
  event: ResolvedEvent & { readonly retryCount?: number },
  group?: string,
  source?: string,
): void {
  if (!deliverChannel.hasSubscribers) return;
  deliverChannel.publish(
    group === undefined || source === undefined
      ? deliverMessage(event, { subscription: "catchUp" })
      : deliverMessage(event, {
          subscription: "persistent",
          group,
          source,
          retryCount: event.retryCount ?? 0,
        }),
  );
}

export function publishReconnect(attempt: number): void {
  if (reconnectChannel.hasSubscribers)
    reconnectChannel.publish({ attempt } satisfies ReconnectMessage);
}

export function publishLeaderChanged(change: LeaderChangedMessage): void {
  if (leaderChangedChannel.hasSubscribers)
    leaderChangedChannel.publish({ ...change } satisfies LeaderChangedMessage);
}

/** The DeliverMessage of a resolved event. */
export function deliverMessage(
  event: ResolvedEvent,
  extra:
    | { subscription: "catchUp" }
    | { subscription: "persistent"; group: string; source: string; retryCount: number },
): DeliverMessage {
  const e = event.event;
  return {
    ...extra,
    streamId: e.streamId,
    eventId: e.id,
    type: e.type,
    revision: e.revision,
    position: e.position,
    metadata: e.metadata,
    event,
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The events with `fields` added to the metadata of each JSON event whose metadata is a JSON
 * object or absent (keys the metadata has keep their value). Other events are returned as
 * they are; so is the whole list when `fields` is empty.
 */
export function withMetadataFields(
  events: readonly EventData[],
  fields: PropagationFields,
): readonly EventData[] {
  const entries = Object.entries(fields).filter(([, v]) => typeof v === "string");
  if (entries.length === 0) return events;
  return events.map((event) => {
    if (!event.isJson) return event;
    let metadata: unknown = {};
    if (event.metadata !== undefined && event.metadata.byteLength > 0) {
      try {
        metadata = JSON.parse(decoder.decode(event.metadata));
      } catch {
        return event;
      }
    }
    if (!isPlainObject(metadata)) return event;
    const merged: Record<string, unknown> = { ...metadata };
    let changed = false;
    for (const [key, value] of entries) {
      if (Object.hasOwn(merged, key)) continue;
      merged[key] = value;
      changed = true;
    }
    if (!changed) return event;
    return Object.freeze({ ...event, metadata: encoder.encode(JSON.stringify(merged)) });
  });
}
