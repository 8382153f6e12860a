// The span logic alone: messages are published on the client's channels by hand.
import diagnostics_channel from "node:diagnostics_channel";
import {
  APPEND_CHANNEL_PREFIX,
  DELIVER_CHANNEL,
  type AppendMessage,
  type DeliverMessage,
  type ResolvedEvent,
} from "@chorus/client";
import { SpanKind, trace, type TextMapPropagator } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { instrumentChorus, type ChorusInstrumentation } from "./index.js";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const handles: ChorusInstrumentation[] = [];
afterEach(() => {
  for (const h of handles.splice(0)) h.disable();
  exporter.reset();
});
function instrument(extra: { propagator?: TextMapPropagator } = {}): ChorusInstrumentation {
  const h = instrumentChorus({ tracerProvider: provider, ...extra });
  handles.push(h);
  return h;
}

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const SPAN_ID = "b7ad6b7169203331";

function delivery(metadata: unknown): DeliverMessage {
  const event: ResolvedEvent = {
    event: {
      streamId: "s",
      revision: 1n,
      position: 10n,
      id: "6f1c2d8e-0b7a-4a53-9a44-3d4f9c1e2b10",
      type: "T",
      isJson: true,
      data: {},
      metadata,
      created: new Date(0),
    },
  };
  return {
    subscription: "catchUp",
    streamId: "s",
    eventId: event.event.id,
    type: "T",
    revision: 1n,
    position: 10n,
    metadata,
    event,
  };
}

describe("deliver spans", () => {
  it("continue the trace of the event's $traceparent and $tracestate", () => {
    const h = instrument();
    const message = delivery({
      $traceparent: `00-${TRACE_ID}-${SPAN_ID}-01`,
      $tracestate: "vendor=x",
    });
    diagnostics_channel.channel(DELIVER_CHANNEL).publish(message);
    const [span] = exporter.getFinishedSpans();
    expect(span?.kind).toBe(SpanKind.CONSUMER);
    expect(span!.spanContext().traceId).toBe(TRACE_ID);
    expect(span!.parentSpanContext?.spanId).toBe(SPAN_ID);
    expect(span!.parentSpanContext?.traceState?.get("vendor")).toBe("x");
    expect(trace.getSpanContext(h.contextOf(message.event)!)?.spanId).toBe(
      span!.spanContext().spanId,
    );
  });

  it("start a trace of their own when the metadata holds no valid trace context", () => {
    instrument();
    for (const metadata of [
      undefined,
      ["x"],
      "text",
      { $traceparent: "garbage" },
      { $traceparent: 7 },
    ])
      diagnostics_channel.channel(DELIVER_CHANNEL).publish(delivery(metadata));
    const spans = exporter.getFinishedSpans();
    expect(spans).toHaveLength(5);
    for (const s of spans) expect(s.parentSpanContext).toBeUndefined();
  });
});

describe("append spans", () => {
  const start = diagnostics_channel.channel(`${APPEND_CHANNEL_PREFIX}:start`);
  const message = (): AppendMessage => ({
    streamId: "s",
    events: [],
    expectedVersion: "any",
    metadata: {},
  });

  it("inject the context with the propagator given", () => {
    const propagator: TextMapPropagator = {
      inject: (ctx, carrier, setter) =>
        setter.set(carrier, "trace-id", trace.getSpanContext(ctx)?.traceId ?? "none"),
      extract: (ctx) => ctx,
      fields: () => ["trace-id"],
    };
    instrument({ propagator });
    const m = message();
    start.publish(m);
    expect(Object.keys(m.metadata)).toEqual(["$trace-id"]);
    expect(m.metadata["$trace-id"]).toMatch(/^[0-9a-f]{32}$/);
  });

  it("in flight when disable() is called are ended, and later ones are not made", () => {
    const h = instrument();
    start.publish(message());
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    h.disable();
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(["chorus append s"]);
    const m = message();
    start.publish(m);
    expect(m.metadata).toEqual({});
    expect(exporter.getFinishedSpans()).toHaveLength(1);
  });

  it("an end or error without its start ends nothing", () => {
    instrument();
    start.publish(message());
    diagnostics_channel.channel(`${APPEND_CHANNEL_PREFIX}:asyncEnd`).publish(message());
    diagnostics_channel
      .channel(`${APPEND_CHANNEL_PREFIX}:error`)
      .publish({ ...message(), error: new Error("x") });
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });
});

describe("options", () => {
  it("are refused when unknown or malformed", () => {
    expect(() => instrumentChorus({ tracerProvider: {} as never })).toThrow(/getTracer/);
    expect(() => instrumentChorus(null as never)).toThrow(/must be an object/);
    expect(() => instrumentChorus({ sampler: 1 } as never)).toThrow(/unknown option "sampler"/);
  });
});
