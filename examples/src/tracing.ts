/**
 * Tracing: one trace from the writer through the store to a consumer, with OpenTelemetry.
 * `instrumentChorus` turns the client's diagnostics_channel events into spans; an append
 * inside a span writes `$traceparent` into each event's metadata, and the consumer's
 * delivery span continues that trace.
 *
 *   npm start                        # in one terminal: a local cluster
 *   node examples/dist/tracing.js    # in another
 *
 * CHORUS_URL overrides the connection string. A real application registers its own
 * exporter (OTLP, Jaeger, ...); this example keeps the spans in memory and prints them.
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { instrumentChorus } from "@chorus/opentelemetry";
import { SpanKind, context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { pathToFileURL } from "node:url";

export async function run(connectionString: string, log: (line: string) => void): Promise<void> {
  // 1. OpenTelemetry: a context manager (so active spans follow async code) and a provider.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer("shop");

  // 2. Chorus spans: appends, reads, deliveries, acks.
  const instrumentation = instrumentChorus({ tracerProvider: provider });
  const client = new ChorusClient(connectionString);
  try {
    const stream = `order-${Date.now()}`;

    // 3. The writer: the append runs inside "place order", so its events carry the trace.
    const traceId = await tracer.startActiveSpan("place order", async (span) => {
      try {
        await client.appendToStream(stream, jsonEvent({ type: "OrderPlaced", data: { stream } }));
        return span.spanContext().traceId;
      } finally {
        span.end();
      }
    });

    // 4. The consumer: its delivery span is a child of the writer's append span; handling
    //    the event inside that context puts the handler's spans in the same trace.
    const sub = client.subscribeToStream(stream, { fromRevision: "start" });
    for await (const e of sub) {
      const metadata = e.event.metadata as { $traceparent?: string };
      log(`delivered ${e.event.type} carrying $traceparent ${metadata.$traceparent}`);
      const delivery = instrumentation.contextOf(e) ?? context.active();
      await context.with(delivery, () =>
        tracer.startActiveSpan("ship order", async (span) => {
          // ... the application's work ...
          span.end();
        }),
      );
      break; // leaving the loop unsubscribes
    }

    // 5. The whole trace, in start order.
    const spans = exporter
      .getFinishedSpans()
      .filter((s) => s.spanContext().traceId === traceId)
      .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
    for (const s of spans) log(`trace ${traceId}: ${s.name} (${SpanKind[s.kind]})`);
  } finally {
    await client.close();
    instrumentation.disable();
    await provider.shutdown();
    context.disable();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const url =
    process.env.CHORUS_URL ??
    "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false";
  await run(url, (line) => console.log(line));
}
