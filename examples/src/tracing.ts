/**
 * Tracing: one trace from the writer through the store to two consumers, with OpenTelemetry.
 * `instrumentChorus` turns the client's diagnostics_channel events into spans; an append
 * inside a span writes `$traceparent` into each event's metadata, and each consumer's
 * delivery span continues that trace: a catch-up subscription ("shipping") and a persistent
 * subscription group ("billing") both handle the event, and the example prints the trace as
 * a tree (each span under its parent, siblings in start order).
 *
 *   npm start                        # in one terminal: a local cluster
 *   node examples/dist/tracing.js    # in another
 *
 * CHORUS_URL overrides the connection string. A real application registers its own
 * exporter (OTLP, Jaeger, ...); this example keeps the spans in memory and prints them.
 */
import { ChorusClient, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { instrumentChorus, type ChorusInstrumentation } from "@chorus/opentelemetry";
import { SpanKind, context, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from "@opentelemetry/sdk-trace-base";
import { pathToFileURL } from "node:url";

/** One line per span: its name, kind and, for a delivery, which consumer took it. */
function spanLabel(s: ReadableSpan): string {
  const kind = s.attributes["chorus.subscription.kind"];
  const group = s.attributes["messaging.consumer.group.name"];
  const via =
    typeof kind !== "string"
      ? ""
      : typeof group !== "string"
        ? `, ${kind}`
        : `, ${kind} group ${group}`;
  return `${s.name} (${SpanKind[s.kind]}${via})`;
}

/**
 * The spans of one trace as an indented tree: roots (spans whose parent is not in the
 * trace) first, each span's children under it, two spaces deeper; siblings in start order.
 */
export function traceTree(spans: readonly ReadableSpan[]): string[] {
  const byStart = [...spans].sort(
    (a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1],
  );
  const ids = new Set(byStart.map((s) => s.spanContext().spanId));
  const children = new Map<string | undefined, ReadableSpan[]>();
  for (const s of byStart) {
    const parent = s.parentSpanContext?.spanId;
    const key = parent !== undefined && ids.has(parent) ? parent : undefined;
    children.set(key, [...(children.get(key) ?? []), s]);
  }
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number): void => {
    for (const s of children.get(parent) ?? []) {
      lines.push(`${"  ".repeat(depth)}${spanLabel(s)}`);
      walk(s.spanContext().spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}

/** Handles a delivered event inside its delivery span's context, in a span of its own. */
function handle(
  instrumentation: ChorusInstrumentation,
  tracer: Tracer,
  e: ResolvedEvent,
  name: string,
  work: () => Promise<void>,
): Promise<void> {
  const delivery = instrumentation.contextOf(e) ?? context.active();
  return context.with(delivery, () =>
    tracer.startActiveSpan(name, async (span) => {
      try {
        await work();
      } finally {
        span.end();
      }
    }),
  );
}

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
  const stream = `order-${Date.now()}`;
  const ps = client.persistentSubscriptions;
  let groupCreated = false;
  try {
    // The persistent consumer's group, from the stream's start.
    await ps.create(stream, "billing", { startFrom: "start" });
    groupCreated = true;

    // 3. The writer: the append runs inside "place order", so its events carry the trace.
    const traceId = await tracer.startActiveSpan("place order", async (span) => {
      try {
        await client.appendToStream(stream, jsonEvent({ type: "OrderPlaced", data: { stream } }));
        return span.spanContext().traceId;
      } finally {
        span.end();
      }
    });

    // 4. Two consumers at once. Each delivery span is a child of the writer's append span;
    //    handling the event inside that context puts the handler's spans (and the persistent
    //    consumer's ack) in the same trace.
    const shipping = async (): Promise<void> => {
      for await (const e of client.subscribeToStream(stream, { fromRevision: "start" })) {
        const { $traceparent } = e.event.metadata as { $traceparent?: string };
        log(`shipping: ${e.event.type} carrying $traceparent ${$traceparent}`);
        await handle(instrumentation, tracer, e, "ship order", async () => {
          // ... the application's work ...
        });
        break; // leaving the loop unsubscribes
      }
    };
    const billing = async (): Promise<void> => {
      const sub = ps.subscribe(stream, "billing", { bufferSize: 1 });
      for await (const e of sub) {
        const { $traceparent } = e.event.metadata as { $traceparent?: string };
        log(`billing: ${e.event.type} carrying $traceparent ${$traceparent}`);
        await handle(instrumentation, tracer, e, "bill order", () => sub.ack(e));
        break;
      }
    };
    await Promise.all([shipping(), billing()]);

    // 5. The whole trace as a tree.
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    log(`trace ${traceId}:`);
    for (const line of traceTree(spans)) log(`  ${line}`);
  } finally {
    if (groupCreated) await ps.delete(stream, "billing").catch(() => undefined);
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
