/**
 * OpenTelemetry spans for the Chorus client, made from the `diagnostics_channel` messages
 * the client publishes (see docs/tracing.md). The client depends on no tracing library;
 * this package subscribes to its channels.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import {
  context,
  trace,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  ACK_CHANNEL_PREFIX,
  APPEND_CHANNEL_PREFIX,
  DELIVER_CHANNEL,
  InvalidArgumentError,
  LEADER_CHANGED_CHANNEL,
  READ_CHANNEL_PREFIX,
  RECONNECT_CHANNEL,
  type AckMessage,
  type AppendMessage,
  type DeliverMessage,
  type LeaderChangedMessage,
  type PropagationFields,
  type ReadMessage,
  type ReconnectMessage,
  type ResolvedEvent,
} from "@chorus/client";

/** The instrumentation scope of every span this package makes. */
export const INSTRUMENTATION_NAME = "@chorus/opentelemetry";
export const INSTRUMENTATION_VERSION = "0.1.0";
/** Event metadata keys are the propagator's fields with this prefix: `$traceparent`, `$tracestate`. */
export const METADATA_KEY_PREFIX = "$";

export interface ChorusInstrumentationOptions {
  /** Where spans go. Default: the global tracer provider (`trace.getTracerProvider()`), looked up at each span. */
  tracerProvider?: TracerProvider;
  /**
   * Writes and reads the trace context in event metadata. Default: W3C trace context
   * (`$traceparent`, `$tracestate`), whatever global propagator the application set.
   */
  propagator?: TextMapPropagator;
}

export interface ChorusInstrumentation {
  /** Stops making spans (unsubscribes from every channel). Idempotent. */
  disable(): void;
  /** False after disable(). */
  readonly enabled: boolean;
  /**
   * The context of the `chorus deliver` span of an event a subscription handed over (for
   * `context.with(...)` around its handling, so the handler's spans join the writer's
   * trace); undefined for an event delivered while not instrumented.
   */
  contextOf(event: ResolvedEvent): Context | undefined;
}

const OPTION_KEYS: readonly string[] = Object.freeze(["propagator", "tracerProvider"]);

/** Span attribute names (OpenTelemetry messaging conventions, plus `chorus.*`). */
export const ATTR = Object.freeze({
  system: "messaging.system",
  destination: "messaging.destination.name",
  operationName: "messaging.operation.name",
  operationType: "messaging.operation.type",
  messageId: "messaging.message.id",
  batchCount: "messaging.batch.message_count",
  consumerGroup: "messaging.consumer.group.name",
  eventType: "chorus.event.type",
  revision: "chorus.event.revision",
  position: "chorus.event.position",
  retryCount: "chorus.event.retry_count",
  expectedVersion: "chorus.expected_version",
  source: "chorus.subscription.source",
  subscription: "chorus.subscription.kind",
  readDirection: "chorus.read.direction",
  readFrom: "chorus.read.from",
  readMaxCount: "chorus.read.max_count",
  readCount: "chorus.read.count",
  readEndOfStream: "chorus.read.end_of_stream",
  nackAction: "chorus.nack.action",
  nackReason: "chorus.nack.reason",
  reconnectAttempt: "chorus.reconnect.attempt",
  leaderPrevious: "chorus.leader.previous",
  leaderCurrent: "chorus.leader.current",
} as const);

const SYSTEM = "chorus";

const metadataSetter: TextMapSetter<PropagationFields> = {
  set(carrier, key, value) {
    carrier[METADATA_KEY_PREFIX + key] = value;
  },
};

const metadataGetter: TextMapGetter<Record<string, unknown>> = {
  keys(carrier) {
    return Object.keys(carrier)
      .filter((k) => k.startsWith(METADATA_KEY_PREFIX))
      .map((k) => k.slice(METADATA_KEY_PREFIX.length));
  },
  get(carrier, key) {
    const value = carrier[METADATA_KEY_PREFIX + key];
    return typeof value === "string" ? value : undefined;
  },
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Attribute values are numbers: revisions and positions stay below 2^53. */
function num(value: bigint): number {
  return Number(value);
}

function recordError(span: Span, error: unknown): void {
  if (error instanceof Error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  } else {
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
  }
}

/**
 * Subscribes to the client's diagnostics channels and makes spans:
 * `chorus append <stream>` (PRODUCER; writes the trace context into each event's metadata),
 * `chorus read <stream>` (CLIENT, one per page request), `chorus deliver <stream>` (CONSUMER,
 * a child of the context in the event's `$traceparent`), `chorus ack|nack <stream>` (CLIENT,
 * linked to the deliveries), `chorus reconnect` and `chorus leader changed` (INTERNAL).
 * Failed operations end with status ERROR and the exception recorded.
 */
export function instrumentChorus(
  options: ChorusInstrumentationOptions = {},
): ChorusInstrumentation {
  checkOptions(options);
  const provider = options.tracerProvider;
  if (provider !== undefined && typeof provider?.getTracer !== "function")
    throw new InvalidArgumentError("instrumentChorus: tracerProvider must have getTracer()");
  const propagator = options.propagator ?? new W3CTraceContextPropagator();
  const tracer: Tracer = provider
    ? provider.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)
    : trace.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);

  /**
   * The span of each operation in flight, keyed by its message (one object from start to
   * end). Every traced operation publishes `error` or `asyncEnd`, which removes its entry.
   */
  const spans = new Map<object, Span>();
  /** The deliver span's context of each event handed over. */
  const deliveries = new WeakMap<ResolvedEvent, Context>();
  const subscriptions: Array<[string, (message: unknown) => void]> = [];
  let enabled = true;

  const on = <M>(name: string, fn: (message: M) => void) => {
    const listener = (message: unknown) => fn(message as M);
    subscribe(name, listener);
    subscriptions.push([name, listener]);
  };

  /** start / error / asyncEnd of a tracing channel: a span per operation, ended when it settles. */
  const traced = <M extends object>(
    prefix: string,
    begin: (message: M) => Span,
    succeed?: (span: Span, message: M) => void,
  ) => {
    on<M>(`${prefix}:start`, (message) => spans.set(message, begin(message)));
    on<M & { error: unknown }>(`${prefix}:error`, (message) => {
      const span = spans.get(message);
      if (!span) return;
      spans.delete(message);
      recordError(span, message.error);
      span.end();
    });
    on<M>(`${prefix}:asyncEnd`, (message) => {
      const span = spans.get(message);
      if (!span) return;
      spans.delete(message);
      succeed?.(span, message);
      span.end();
    });
  };

  traced<AppendMessage>(
    APPEND_CHANNEL_PREFIX,
    (message) => {
      const count = message.events.length;
      const attributes: Attributes = {
        [ATTR.system]: SYSTEM,
        [ATTR.destination]: message.streamId,
        [ATTR.operationName]: "append",
        [ATTR.operationType]: "send",
        [ATTR.batchCount]: count,
        [ATTR.expectedVersion]: String(message.expectedVersion),
      };
      if (count === 1) {
        attributes[ATTR.messageId] = message.events[0]!.id;
        attributes[ATTR.eventType] = message.events[0]!.type;
      }
      // `start` runs synchronously in the caller's context: its active span is the parent.
      const parent = context.active();
      const span = tracer.startSpan(
        `chorus append ${message.streamId}`,
        { kind: SpanKind.PRODUCER, attributes },
        parent,
      );
      // The trace context travels in each event's metadata: the consumers' spans continue it.
      propagator.inject(trace.setSpan(parent, span), message.metadata, metadataSetter);
      return span;
    },
    (span, message) => {
      if (!message.result) return;
      span.setAttribute(ATTR.revision, num(message.result.nextExpectedVersion));
      span.setAttribute(ATTR.position, num(message.result.position));
    },
  );

  traced<ReadMessage>(
    READ_CHANNEL_PREFIX,
    (message) =>
      tracer.startSpan(
        `chorus read ${message.streamId}`,
        {
          kind: SpanKind.CLIENT,
          attributes: {
            [ATTR.system]: SYSTEM,
            [ATTR.destination]: message.streamId,
            [ATTR.operationName]: message.operation,
            [ATTR.operationType]: "receive",
            [ATTR.readDirection]: message.direction,
            [ATTR.readFrom]: typeof message.from === "bigint" ? num(message.from) : message.from,
            [ATTR.readMaxCount]: message.maxCount,
          },
        },
        context.active(),
      ),
    (span, message) => {
      if (!message.result) return;
      span.setAttribute(ATTR.readCount, message.result.events.length);
      span.setAttribute(ATTR.readEndOfStream, message.result.endOfStream);
    },
  );

  traced<AckMessage>(ACK_CHANNEL_PREFIX, (message) => {
    const links: Link[] = [];
    for (const event of message.events) {
      const delivered = deliveries.get(event);
      const spanContext: SpanContext | undefined = delivered
        ? trace.getSpanContext(delivered)
        : undefined;
      if (spanContext) links.push({ context: spanContext });
    }
    const ack = message.action === "ack";
    const attributes: Attributes = {
      [ATTR.system]: SYSTEM,
      [ATTR.destination]: message.streamId,
      [ATTR.consumerGroup]: message.group,
      [ATTR.operationName]: ack ? "ack" : "nack",
      [ATTR.operationType]: "settle",
      [ATTR.batchCount]: message.events.length,
    };
    if (!ack) {
      attributes[ATTR.nackAction] = message.action;
      attributes[ATTR.nackReason] = message.reason;
    }
    const first = message.events.length === 1 ? message.events[0]?.event : undefined;
    if (first) attributes[ATTR.messageId] = first.id;
    return tracer.startSpan(
      `chorus ${ack ? "ack" : "nack"} ${message.streamId}`,
      { kind: SpanKind.CLIENT, attributes, links },
      context.active(),
    );
  });

  on<DeliverMessage>(DELIVER_CHANNEL, (message) => {
    const carrier = isPlainObject(message.metadata) ? message.metadata : {};
    // The writer's context when the event carries one; else whatever is active.
    const parent = propagator.extract(context.active(), carrier, metadataGetter);
    const attributes: Attributes = {
      [ATTR.system]: SYSTEM,
      [ATTR.destination]: message.streamId,
      [ATTR.operationName]: "deliver",
      [ATTR.operationType]: "receive",
      [ATTR.messageId]: message.eventId,
      [ATTR.eventType]: message.type,
      [ATTR.revision]: num(message.revision),
      [ATTR.position]: num(message.position),
      [ATTR.subscription]: message.subscription,
    };
    if (message.group !== undefined) attributes[ATTR.consumerGroup] = message.group;
    if (message.source !== undefined) attributes[ATTR.source] = message.source;
    if (message.retryCount !== undefined) attributes[ATTR.retryCount] = message.retryCount;
    const span = tracer.startSpan(
      `chorus deliver ${message.streamId}`,
      { kind: SpanKind.CONSUMER, attributes },
      parent,
    );
    deliveries.set(message.event, trace.setSpan(parent, span));
    span.end();
  });

  on<ReconnectMessage>(RECONNECT_CHANNEL, (message) => {
    tracer
      .startSpan(
        "chorus reconnect",
        {
          kind: SpanKind.INTERNAL,
          attributes: { [ATTR.system]: SYSTEM, [ATTR.reconnectAttempt]: message.attempt },
        },
        ROOT_CONTEXT,
      )
      .end();
  });

  on<LeaderChangedMessage>(LEADER_CHANGED_CHANNEL, (message) => {
    const attributes: Attributes = {
      [ATTR.system]: SYSTEM,
      [ATTR.leaderCurrent]: message.current.instanceId,
    };
    if (message.previous) attributes[ATTR.leaderPrevious] = message.previous.instanceId;
    tracer
      .startSpan("chorus leader changed", { kind: SpanKind.INTERNAL, attributes }, ROOT_CONTEXT)
      .end();
  });

  return {
    disable() {
      if (!enabled) return;
      enabled = false;
      for (const [name, listener] of subscriptions.splice(0)) unsubscribe(name, listener);
      // Operations still in flight would never hear of their end now: end their spans.
      for (const span of spans.values()) span.end();
      spans.clear();
    },
    get enabled() {
      return enabled;
    },
    contextOf(event) {
      return deliveries.get(event);
    },
  };
}

function checkOptions(options: unknown): void {
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new InvalidArgumentError("instrumentChorus: options must be an object");
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key))
      throw new InvalidArgumentError(
        `instrumentChorus: unknown option "${key}" (known: ${OPTION_KEYS.join(", ")})`,
      );
  }
}
