// Requests a node refuses before anything is written, against a real single-node process:
// appends too large for one replicated batch, and stream metadata carrying ACLs. Each answer
// is a clear INVALID_ARGUMENT, nothing is stored, and the node keeps serving. On each backend.
import { randomUUID } from "node:crypto";
import {
  ChorusClient,
  ConnectionSettings,
  InvalidArgumentError,
  jsonEvent,
  StreamNotFoundError,
} from "@chorus/client";
import type { TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS, closeBackends, startBackendNode } from "../backends.js";

/** The default --max-append-bytes: half of a 16 MiB replication frame. */
const MAX_APPEND_BYTES = 1024 * 1024;

let node: TestNode;
let client: ChorusClient;

afterAll(closeBackends);

async function metricValue(name: string, labels: string): Promise<number> {
  const res = await fetch(`http://${node.httpEndpoint}/metrics`);
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function streamIsEmpty(stream: string): Promise<boolean> {
  try {
    for await (const _ of client.readStream(stream, { fromRevision: "start", maxCount: 1 }))
      return false;
    return true;
  } catch (err) {
    if (err instanceof StreamNotFoundError) return true;
    throw err;
  }
}

async function postEvents(stream: string, events: unknown[]): Promise<Response> {
  return fetch(`http://${node.httpEndpoint}/streams/${encodeURIComponent(stream)}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
}

describe.each(BACKENDS)("%s", (backend) => {
  beforeAll(async () => {
    node = await startBackendNode(backend);
    client = new ChorusClient(
      ConnectionSettings.create()
        .withSingleNode(node.httpEndpoint)
        .withOperationTimeout(30_000)
        .build(),
    );
  });

  afterAll(async () => {
    await client?.close();
    await node?.stop();
  });

  describe("oversized appends", () => {
    it("refuses an append larger than one replicated batch with InvalidArgumentError, once, storing nothing", async () => {
      const stream = `big-${"x".repeat(196)}`; // a 200-character stream name
      const errorsBefore = await metricValue(
        "chorus_request_errors_total",
        'code="INVALID_ARGUMENT"',
      );
      const events = Array.from({ length: 100_000 }, (_, i) =>
        jsonEvent({ type: "Small", data: { i } }),
      );
      const started = Date.now();
      const err = await client.appendToStream(stream, events).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(
        new RegExp(
          `append of 100000 events \\(\\d+ bytes as stored\\) exceeds the largest append, ${MAX_APPEND_BYTES} bytes`,
        ),
      );
      // Refused at once, and not retried: the node answered exactly one INVALID_ARGUMENT.
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(await metricValue("chorus_request_errors_total", 'code="INVALID_ARGUMENT"')).toBe(
        errorsBefore + 1,
      );
      expect(await streamIsEmpty(stream)).toBe(true);

      // The node keeps serving, and an append under the limit on the same stream goes through.
      const ok = await client.appendToStream(stream, events.slice(0, 1_000));
      expect(ok.nextExpectedVersion).toBe(999n);
    });

    it("refuses the same over HTTP POST /streams with 400 INVALID_ARGUMENT", async () => {
      const stream = `big-http-${randomUUID()}`;
      const data = "y".repeat(100_000);
      const events = Array.from({ length: 100 }, () => ({
        eventId: randomUUID(),
        eventType: "Large",
        data: { data },
      }));
      const res = await postEvents(stream, events);
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: string; message: string };
      expect(body.error).toBe("INVALID_ARGUMENT");
      expect(body.message).toMatch(
        new RegExp(
          `append of 100 events \\(\\d+ bytes as stored\\) exceeds the largest append, ${MAX_APPEND_BYTES} bytes .*; split it`,
        ),
      );
      expect(await streamIsEmpty(stream)).toBe(true);
      const small = await postEvents(stream, events.slice(0, 10));
      expect(small.status).toBe(201);
    });
  });

  describe("stream ACLs", () => {
    it("refuses metadata carrying acl (native, raw $$stream appends and HTTP); nothing is stored", async () => {
      const stream = `acl-${randomUUID()}`;
      await client.appendToStream(stream, jsonEvent({ type: "Test", data: {} }));

      await expect(
        client.setStreamMetadata(stream, { maxCount: 5, acl: { readRoles: ["admin"] } }),
      ).rejects.toThrow(InvalidArgumentError);
      await expect(
        client.setStreamMetadata(stream, { acl: { readRoles: ["admin"] } }),
      ).rejects.toThrow(/stream ACLs are not supported yet/);
      // The same through a plain append to the metadata stream, with the other common key.
      await expect(
        client.appendToStream(
          `$$${stream}`,
          jsonEvent({ type: "$metadata", data: { $acl: { $r: "admin" } } }),
        ),
      ).rejects.toThrow(/stream ACLs are not supported yet/);
      const res = await postEvents(`$$${stream}`, [
        { eventId: randomUUID(), eventType: "$metadata", data: { acl: { readRoles: [] } } },
      ]);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { message: string }).message).toMatch(
        /stream ACLs are not supported yet/,
      );

      const meta = await client.getStreamMetadata(stream);
      expect(meta.metadata).toEqual({});
      expect(meta.metaRevision).toBeUndefined();
      expect(await streamIsEmpty(`$$${stream}`)).toBe(true);

      // Metadata without ACLs still works.
      await client.setStreamMetadata(stream, { maxCount: 5 });
      expect((await client.getStreamMetadata(stream)).metadata).toEqual({ maxCount: 5 });
    });
  });
});
