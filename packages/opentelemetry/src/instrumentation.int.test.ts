import { randomUUID } from "node:crypto";
import diagnostics_channel from "node:diagnostics_channel";
import {
  APPEND_CHANNEL_PREFIX,
  ChorusClient,
  DELIVER_CHANNEL,
  READ_CHANNEL_PREFIX,
  WrongExpectedVersionError,
  binaryEvent,
  jsonEvent,
  type ResolvedEvent,
} from "@chorus/client";
import { getJson, startNode, waitFor, type TestNode } from "@chorus/testing";
import { SpanKind, SpanStatusCode, context, trace, type Span } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { instrumentChorus, type ChorusInstrumentation } from "./index.js";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

let node: TestNode;
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("test");
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  node = await startNode({ memDb: true });
});
afterAll(async () => {
  await node?.stop();
  context.disable();
  await provider.shutdown();
});

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  exporter.reset();
});

function newClient(): ChorusClient {
  const client = new ChorusClient(node.connectionString);
  cleanups.push(() => client.close());
  return client;
}
function instrument(): ChorusInstrumentation {
  const instrumentation = instrumentChorus({ tracerProvider: provider });
  cleanups.push(() => instrumentation.disable());
  return instrumentation;
}
const stream = (prefix: string) => `${prefix}-${randomUUID()}`;

/** Runs `fn` inside an active span of the test's own tracer; returns its result and the span. */
async function inSpan<T>(fn: () => Promise<T>): Promise<{ value: T; span: Span }> {
  return tracer.startActiveSpan("writer", async (span) => {
    try {
      return { value: await fn(), span };
    } finally {
      span.end();
    }
  });
}

/** The stored metadata of a stream's events, read over the HTTP API (not through the client). */
async function rawMetadata(streamId: string): Promise<unknown[]> {
  const { status, body } = await getJson(
    `http://${node.httpEndpoint}/streams/${encodeURIComponent(streamId)}`,
    5_000,
  );
  expect(status).toBe(200);
  return (body as { events: Array<{ metadata: unknown }> }).events.map((e) => e.metadata);
}

const spansNamed = (name: string): ReadableSpan[] =>
  exporter.getFinishedSpans().filter((s) => s.name === name);

async function first<T>(iterable: AsyncIterable<T>): Promise<T> {
  for await (const item of iterable) return item;
  throw new Error("the iterable ended without an item");
}

describe("instrumentChorus against a real node", () => {
  it("an append in an active span is a PRODUCER span whose context lands in each event's $traceparent", async () => {
    instrument();
    const client = newClient();
    const s = stream("order");
    const { value: result, span: writer } = await inSpan(() =>
      client.appendToStream(s, [
        jsonEvent({ type: "Placed", data: { n: 1 }, metadata: { user: "u1" } }),
        jsonEvent({ type: "Paid", data: { n: 2 } }),
        jsonEvent({ type: "Noted", data: {}, metadata: ["not", "an", "object"] }),
        binaryEvent({ type: "Blob", data: new Uint8Array([1]), metadata: new Uint8Array([7]) }),
      ]),
    );
    const [append] = spansNamed(`chorus append ${s}`);
    expect(append).toBeDefined();
    expect(append!.kind).toBe(SpanKind.PRODUCER);
    const writerContext = writer.spanContext();
    expect(append!.spanContext().traceId).toBe(writerContext.traceId);
    expect(append!.parentSpanContext?.spanId).toBe(writerContext.spanId);
    expect(append!.attributes).toMatchObject({
      "messaging.system": "chorus",
      "messaging.destination.name": s,
      "messaging.operation.name": "append",
      "messaging.batch.message_count": 4,
      "chorus.event.revision": Number(result.nextExpectedVersion),
      "chorus.event.position": Number(result.position),
    });
    expect(append!.status.code).not.toBe(SpanStatusCode.ERROR);

    const stored = await rawMetadata(s);
    const expected = `00-${writerContext.traceId}-${append!.spanContext().spanId}-01`;
    expect(stored[0]).toEqual({ user: "u1", $traceparent: expected });
    expect(stored[1]).toEqual({ $traceparent: expected });
    // Metadata that is not a JSON object, and binary metadata, are stored as given.
    expect(stored[2]).toEqual(["not", "an", "object"]);
    expect(stored[3]).toBe(Buffer.from([7]).toString("base64"));
    expect(String((stored[0] as { $traceparent: string }).$traceparent)).toMatch(TRACEPARENT);
  });

  it("concurrent appends in different spans each get their own parent", async () => {
    instrument();
    const client = newClient();
    const streams = [stream("a"), stream("b"), stream("c")];
    const writers = await Promise.all(
      streams.map((s) =>
        inSpan(() => client.appendToStream(s, jsonEvent({ type: "T", data: {} }))),
      ),
    );
    streams.forEach((s, i) => {
      const [append] = spansNamed(`chorus append ${s}`);
      expect(append!.parentSpanContext?.spanId).toBe(writers[i]!.span.spanContext().spanId);
    });
    const stored = await Promise.all(streams.map((s) => rawMetadata(s)));
    stored.forEach(([metadata], i) => {
      const [, traceId] = TRACEPARENT.exec(
        String((metadata as { $traceparent: string }).$traceparent),
      )!;
      expect(traceId).toBe(writers[i]!.span.spanContext().traceId);
    });
  });

  it("a catch-up subscription's delivery is a CONSUMER span in the writer's trace", async () => {
    const instrumentation = instrument();
    const client = newClient();
    const s = stream("cart");
    const { span: writer } = await inSpan(() =>
      client.appendToStream(s, jsonEvent({ type: "Added", data: { sku: "a" } })),
    );
    const [append] = spansNamed(`chorus append ${s}`);
    const sub = client.subscribeToStream(s, { fromRevision: "start" });
    const delivered: ResolvedEvent = await first(sub);
    await sub.unsubscribe();

    const [deliver] = spansNamed(`chorus deliver ${s}`);
    expect(deliver).toBeDefined();
    expect(deliver!.kind).toBe(SpanKind.CONSUMER);
    expect(deliver!.spanContext().traceId).toBe(writer.spanContext().traceId);
    expect(deliver!.parentSpanContext?.spanId).toBe(append!.spanContext().spanId);
    expect(deliver!.attributes).toMatchObject({
      "messaging.system": "chorus",
      "messaging.destination.name": s,
      "messaging.message.id": delivered.event.id,
      "chorus.event.revision": 0,
      "chorus.event.position": Number(delivered.event.position),
      "chorus.subscription.kind": "catchUp",
    });
    // The application can run its handling inside the delivery's context.
    const handling = instrumentation.contextOf(delivered);
    expect(handling && trace.getSpanContext(handling)?.spanId).toBe(deliver!.spanContext().spanId);
  });

  it("a persistent subscription's delivery joins the writer's trace; ack and nack are spans linked to it", async () => {
    instrument();
    const client = newClient();
    const s = stream("invoice");
    const { span: writer } = await inSpan(() =>
      client.appendToStream(s, [
        jsonEvent({ type: "Issued", data: { n: 1 } }),
        jsonEvent({ type: "Issued", data: { n: 2 } }),
      ]),
    );
    await client.persistentSubscriptions.create(s, "billing", { startFrom: "start" });
    const sub = client.persistentSubscriptions.subscribe(s, "billing");
    const seen: ResolvedEvent[] = [];
    for await (const e of sub) {
      seen.push(e);
      if (seen.length === 1) await sub.ack(e);
      else {
        await sub.nack("skip", "not needed", e);
        break;
      }
    }
    const delivers = spansNamed(`chorus deliver ${s}`);
    expect(delivers).toHaveLength(2);
    for (const d of delivers) {
      expect(d.kind).toBe(SpanKind.CONSUMER);
      expect(d.spanContext().traceId).toBe(writer.spanContext().traceId);
      expect(d.attributes).toMatchObject({
        "messaging.consumer.group.name": "billing",
        "chorus.subscription.kind": "persistent",
        "chorus.event.retry_count": 0,
      });
    }
    const [ack] = spansNamed(`chorus ack ${s}`);
    expect(ack?.kind).toBe(SpanKind.CLIENT);
    expect(ack!.attributes["messaging.message.id"]).toBe(seen[0]!.event.id);
    expect(ack!.links.map((l) => l.context.spanId)).toEqual([delivers[0]!.spanContext().spanId]);
    const [nack] = spansNamed(`chorus nack ${s}`);
    expect(nack?.attributes).toMatchObject({
      "chorus.nack.action": "skip",
      "chorus.nack.reason": "not needed",
    });
    expect(nack!.links.map((l) => l.context.spanId)).toEqual([delivers[1]!.spanContext().spanId]);
  });

  it("a failed append is a span with status ERROR and the exception recorded", async () => {
    instrument();
    const client = newClient();
    const s = stream("conflict");
    await client.appendToStream(s, jsonEvent({ type: "A", data: {} }));
    exporter.reset();
    await expect(
      client.appendToStream(s, jsonEvent({ type: "B", data: {} }), {
        expectedVersion: "no_stream",
      }),
    ).rejects.toBeInstanceOf(WrongExpectedVersionError);
    const [failed] = spansNamed(`chorus append ${s}`);
    expect(failed?.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed!.events.map((e) => e.name)).toContain("exception");
    expect(failed!.events[0]!.attributes?.["exception.type"]).toBeDefined();
  });

  it("reads are CLIENT spans, one per page request, with what they returned", async () => {
    instrument();
    const client = newClient();
    const s = stream("ledger");
    await client.appendToStream(
      s,
      [1, 2, 3].map((n) => jsonEvent({ type: "E", data: { n } })),
    );
    const { span: reader } = await inSpan(async () => {
      const got: ResolvedEvent[] = [];
      for await (const e of client.readStream(s, { pageSize: 2 })) got.push(e);
      expect(got).toHaveLength(3);
    });
    const reads = spansNamed(`chorus read ${s}`);
    expect(reads.length).toBeGreaterThanOrEqual(2);
    for (const r of reads) {
      expect(r.kind).toBe(SpanKind.CLIENT);
      expect(r.spanContext().traceId).toBe(reader.spanContext().traceId);
    }
    expect(reads[0]!.attributes).toMatchObject({
      "messaging.destination.name": s,
      "messaging.operation.name": "readStream",
      "chorus.read.direction": "forwards",
      "chorus.read.from": 0,
      "chorus.read.count": 2,
    });
    expect(reads.reduce((n, r) => n + Number(r.attributes["chorus.read.count"]), 0)).toBe(3);

    await first(client.readAll({ maxCount: 1 }));
    expect(spansNamed("chorus read $all")).toHaveLength(1);

    await expect(first(client.readStream(stream("missing")))).rejects.toThrow();
    const missing = exporter
      .getFinishedSpans()
      .find((sp) => sp.name.startsWith("chorus read missing-"));
    expect(missing?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("after disable() there are no spans and no $traceparent", async () => {
    const instrumentation = instrument();
    const client = newClient();
    const s = stream("off");
    await client.appendToStream(s, jsonEvent({ type: "Before", data: {} }));
    expect(spansNamed(`chorus append ${s}`)).toHaveLength(1);
    instrumentation.disable();
    instrumentation.disable(); // idempotent
    expect(instrumentation.enabled).toBe(false);
    exporter.reset();
    await inSpan(() =>
      client.appendToStream(s, jsonEvent({ type: "After", data: {}, metadata: { k: 1 } })),
    );
    for await (const _ of client.readStream(s)) void _;
    expect(exporter.getFinishedSpans().map((sp) => sp.name)).toEqual(["writer"]);
    expect((await rawMetadata(s))[1]).toEqual({ k: 1 });
  });

  it("not instrumented: nothing is published and an append's metadata is stored unchanged", async () => {
    for (const name of [
      `${APPEND_CHANNEL_PREFIX}:start`,
      `${READ_CHANNEL_PREFIX}:start`,
      DELIVER_CHANNEL,
    ])
      expect(diagnostics_channel.hasSubscribers(name)).toBe(false);
    const client = newClient();
    const s = stream("plain");
    const metadata = { user: "u1", nested: { a: [1, 2] } };
    await inSpan(() => client.appendToStream(s, jsonEvent({ type: "T", data: 1, metadata })));
    const sub = client.subscribeToStream(s);
    const delivered = await first(sub);
    await sub.unsubscribe();
    expect(delivered.event.metadata).toEqual(metadata);
    expect((await rawMetadata(s))[0]).toEqual(metadata);
    expect(exporter.getFinishedSpans().map((sp) => sp.name)).toEqual(["writer"]);
  });

  it("refuses unknown options, naming them", () => {
    expect(() => instrumentChorus({ tracer: provider } as never)).toThrow(
      /unknown option "tracer"/,
    );
  });
});

describe("without a writer span", () => {
  it("a delivery of an event written without a trace has its own trace", async () => {
    instrument();
    const client = newClient();
    const s = stream("untraced");
    // Not inside a span: the append span is a root, and the delivery is its child.
    await client.appendToStream(s, jsonEvent({ type: "T", data: {} }));
    const sub = client.subscribeToStream(s);
    await first(sub);
    await sub.unsubscribe();
    const deliver = await waitFor(() => spansNamed(`chorus deliver ${s}`)[0]);
    const [append] = spansNamed(`chorus append ${s}`);
    expect(deliver.spanContext().traceId).toBe(append!.spanContext().traceId);
  });
});

describe("connection events", () => {
  it("a leader seen and a reconnect after the node restarts are INTERNAL spans", async () => {
    instrument();
    const own = await startNode({ memDb: true });
    cleanups.push(() => own.stop());
    const client = new ChorusClient(own.connectionString);
    cleanups.push(() => client.close());
    const leader = await client.connect();
    const [seen] = spansNamed("chorus leader changed");
    expect(seen?.kind).toBe(SpanKind.INTERNAL);
    expect(seen!.attributes["chorus.leader.current"]).toBe(leader.instanceId);
    await own.kill();
    const reconnect = await waitFor(() => spansNamed("chorus reconnect")[0], {
      message: "a chorus reconnect span",
    });
    expect(reconnect.attributes["chorus.reconnect.attempt"]).toBeGreaterThanOrEqual(1);
    await own.restart();
    await client.appendToStream(stream("back"), jsonEvent({ type: "T", data: {} }));
  });
});
