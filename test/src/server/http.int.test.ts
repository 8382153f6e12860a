// The HTTP API against an in-process node, on each backend.
import { ChorusClient, ConnectionSettings } from "@chorus/client";
import type { ChorusNode } from "@chorus/server";
import { waitFor } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS, backendNodeOptions, closeBackends } from "../backends.js";
import { httpUrl, metricSample, startNode } from "./helpers.js";

let node: ChorusNode;

afterAll(closeBackends);

async function post(
  stream: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(httpUrl(node, `/streams/${encodeURIComponent(stream)}`), {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

const ev = (type = "Happened", data: unknown = { ok: true }) => ({
  eventId: randomUUID(),
  eventType: type,
  data,
});

describe.each(BACKENDS)("%s", (backend) => {
  beforeAll(async () => {
    node = await startNode({ ...(await backendNodeOptions(backend)), maxFrameBytes: 4096 });
  });
  afterAll(async () => {
    await node?.close();
  });

  describe("HTTP API", () => {
    it("serves gossip on the external and internal ports", async () => {
      for (const ep of [node.endpoints.extHttp, node.endpoints.intHttp]) {
        const res = await fetch(`http://${ep.host}:${ep.port}/gossip`);
        expect(res.status).toBe(200);
        const doc = (await res.json()) as { members: Record<string, unknown>[] };
        expect(doc.members).toHaveLength(1);
        const m = doc.members[0]!;
        expect(m).toMatchObject({
          instanceId: node.instanceId,
          state: "Leader",
          isAlive: true,
          externalTcp: node.endpoints.extTcp,
          externalHttp: node.endpoints.extHttp,
          internalTcp: node.endpoints.intTcp,
          internalHttp: node.endpoints.intHttp,
          epochNumber: 0,
          nodePriority: 0,
          isReadOnlyReplica: false,
        });
        for (const key of [
          "lastCommitPosition",
          "writerCheckpoint",
          "chaserCheckpoint",
          "epochPosition",
        ]) {
          expect(m[key]).toMatch(/^\d+$/);
        }
        expect(Date.parse(String(m["timestamp"]))).not.toBeNaN();
      }
      const other = await fetch(
        `http://${node.endpoints.intHttp.host}:${node.endpoints.intHttp.port}/info`,
      );
      expect(other.status).toBe(404);
    });

    it("serves health, info and metrics", async () => {
      expect((await fetch(httpUrl(node, "/health/live"))).status).toBe(200);
      expect((await fetch(httpUrl(node, "/health/ready"))).status).toBe(200);
      const info = (await (await fetch(httpUrl(node, "/info"))).json()) as Record<string, unknown>;
      expect(info).toMatchObject({ instanceId: node.instanceId, state: "Leader", clusterSize: 1 });
      expect(info["version"]).toMatch(/^\d+\.\d+\.\d+/);
      const scrape = async () => (await fetch(httpUrl(node, "/metrics"))).text();
      const appendCount = async () =>
        metricSample(await scrape(), 'chorus_append_duration_seconds_count{interface="http"}') ?? 0;
      const appendsBefore = await appendCount();
      for (let i = 0; i < 3; i++) {
        expect((await post(`m-${randomUUID()}`, [ev(), ev()])).status).toBe(201);
      }
      expect(await appendCount()).toBe(appendsBefore + 3);
      // On PostgreSQL the store's counts are the database's statistics, refreshed about once a
      // second: they catch up with a write rather than move with it.
      if (backend === "postgres")
        await waitFor(async () => /chorus_store_events [1-9]/.test(await scrape()), {
          timeoutMs: 10_000,
          message: "chorus_store_events to count the events",
        });
      const metrics = await scrape();
      expect(metrics).toMatch(/chorus_events_written_total\{interface="http"\} [1-9]/);
      expect(metrics).toMatch(/chorus_store_events [1-9]/);
      expect(metrics).toMatch(/chorus_connections_active/);
      expect(metrics).toMatch(/chorus_subscriptions_active/);
      expect(metricSample(metrics, 'chorus_node_role{role="Leader"}')).toBe(1);
      expect(metricSample(metrics, 'chorus_node_role{role="Follower"}')).toBe(0);
      expect(metricSample(metrics, "chorus_epoch")).toBe(0);
      expect(metricSample(metrics, "chorus_elections_total")).toBe(0);
      expect(metricSample(metrics, "process_cpu_seconds_total")).toBeGreaterThan(0);
      expect(metricSample(metrics, "nodejs_eventloop_lag_seconds")).toBeDefined();
      // Each metric family is declared once (prom-client refuses a clash when registering, but
      // the process metrics are shared between nodes: this scrape shows them once).
      const types = metrics.split("\n").filter((l) => l.startsWith("# TYPE "));
      expect(new Set(types).size).toBe(types.length);
    });

    it("appends, reads, and honours expected versions", async () => {
      const stream = `http-${randomUUID()}`;
      const created = await post(stream, [ev("A", { n: 1 }), ev("B", { n: 2 })], {
        "Chorus-Expected-Version": "no_stream",
      });
      expect(created.status).toBe(201);
      const body = (await created.json()) as { nextExpectedVersion: string; position: string };
      expect(body.nextExpectedVersion).toBe("1");
      expect(body.position).toMatch(/^\d+$/);

      const conflict = await post(stream, [ev()], { "Chorus-Expected-Version": "0" });
      expect(conflict.status).toBe(409);
      expect(await conflict.json()).toMatchObject({
        error: "WRONG_EXPECTED_VERSION",
        expected: "0",
        actual: "1",
      });
      expect(
        (await post(stream, [ev("C", { n: 3 })], { "Chorus-Expected-Version": "1" })).status,
      ).toBe(201);

      const read = await fetch(
        httpUrl(node, `/streams/${stream}?from=0&count=20&direction=forwards`),
      );
      expect(read.status).toBe(200);
      const page = (await read.json()) as {
        events: { eventType: string; revision: string; data: unknown }[];
      };
      expect(page.events.map((e) => e.eventType)).toEqual(["A", "B", "C"]);
      expect(page.events.map((e) => e.revision)).toEqual(["0", "1", "2"]);
      expect(page.events[2]?.data).toEqual({ n: 3 });
      const back = (await (
        await fetch(httpUrl(node, `/streams/${stream}?direction=backwards&count=1`))
      ).json()) as { events: { eventType: string }[] };
      expect(back.events.map((e) => e.eventType)).toEqual(["C"]);
    });

    it("stores and answers data and metadata as their writer sent them", async () => {
      // JSON.parse and JSON.stringify would turn the 64-bit id into 1234567890123456800, 1.10
      // into 1.1 and "caf\u00e9" into "café": what is stored and read is the text sent.
      const stream = `http-exact-${randomUUID()}`;
      const data = '{ "orderId": 1234567890123456789, "price": 1.10, "name": "caf\\u00e9" }';
      const metadata = '{"trace" : [ 1e400, -0 ]}';
      const body =
        `[ {"eventId":"${randomUUID()}", "eventType":"Ordered", "data": ${data},\n` +
        `   "metadata":${metadata}},` +
        `{"eventType":"Counted","d\\u0061ta":12345678901234567890123,"eventId":"${randomUUID()}"} ]`;
      expect((await post(stream, body)).status).toBe(201);

      for (const path of [`/streams/${stream}`, "/streams/$all?from=end&direction=backwards"]) {
        const text = await (await fetch(httpUrl(node, path))).text();
        expect(text).toContain(
          `"eventType":"Ordered","isJson":true,"data":${data},"metadata":${metadata},`,
        );
        expect(text).toContain(
          `"eventType":"Counted","isJson":true,"data":12345678901234567890123,"metadata":null,`,
        );
        const page = JSON.parse(text) as { events: { eventType: string }[] };
        expect(page.events.some((e) => e.eventType === "Ordered")).toBe(true);
      }
      // The client hands the stored bytes over as they are with decodeJson: false.
      const client = new ChorusClient(ConnectionSettings.create().withInProcessNode(node).build());
      try {
        const read = async (options: { decodeJson?: boolean }) => {
          for await (const e of client.readStream(stream, { maxCount: 1, ...options }))
            return e.event;
          throw new Error("no event");
        };
        const exact = await read({ decodeJson: false });
        expect(Buffer.from(exact.data as Uint8Array).toString("utf8")).toBe(data);
        expect(Buffer.from(exact.metadata as Uint8Array).toString("utf8")).toBe(metadata);
        expect((await read({})).data).toEqual({
          orderId: 1234567890123456800,
          price: 1.1,
          name: "café",
        });
        expect(() => client.readStream(stream, { decodeJson: "no" as never })).toThrow(
          /^readStream: decodeJson must be true or false$/,
        );
        // Subscriptions take it too: a catch-up subscription and a persistent one.
        const sub = client.subscribeToStream(stream, { decodeJson: false });
        for await (const e of sub) {
          expect(Buffer.from(e.event.data as Uint8Array).toString("utf8")).toBe(data);
          break;
        }
        await client.persistentSubscriptions.create(stream, "exact");
        const consumer = client.persistentSubscriptions.subscribe(stream, "exact", {
          decodeJson: false,
        });
        for await (const e of consumer) {
          expect(Buffer.from(e.event.data as Uint8Array).toString("utf8")).toBe(data);
          await consumer.ack(e);
          break;
        }
      } finally {
        await client.close();
      }

      // A compact body reads back compact.
      const compact = `http-compact-${randomUUID()}`;
      expect((await post(compact, [ev("Plain", { a: [1, "x"] })])).status).toBe(201);
      const plain = await (await fetch(httpUrl(node, `/streams/${compact}`))).text();
      expect(plain).toContain(`"data":{"a":[1,"x"]},"metadata":null,`);
    });

    it("deletes softly (404 after) and hard (410 after)", async () => {
      const stream = `hdel-${randomUUID()}`;
      expect((await post(stream, [ev()])).status).toBe(201);
      const wrong = await fetch(httpUrl(node, `/streams/${stream}`), {
        method: "DELETE",
        headers: { "Chorus-Expected-Version": "5" },
      });
      expect(wrong.status).toBe(409);
      expect((await fetch(httpUrl(node, `/streams/${stream}`), { method: "DELETE" })).status).toBe(
        200,
      );
      const notFound = await fetch(httpUrl(node, `/streams/${stream}`));
      expect(notFound.status).toBe(404);
      expect(await notFound.json()).toMatchObject({ error: "STREAM_NOT_FOUND" });
      const hard = await fetch(httpUrl(node, `/streams/${stream}`), {
        method: "DELETE",
        headers: { "Chorus-Hard-Delete": "true" },
      });
      expect(hard.status).toBe(200);
      const gone = await fetch(httpUrl(node, `/streams/${stream}`));
      expect(gone.status).toBe(410);
      expect(await gone.json()).toMatchObject({ error: "STREAM_DELETED" });
    });

    it.each<[string, string, unknown, Record<string, string>, number, string, RegExp]>([
      ["garbage JSON", "s", "{not json", {}, 400, "BAD_REQUEST", /not valid JSON/],
      ["a non-array body", "s", { eventType: "A" }, {}, 400, "BAD_REQUEST", /JSON array/],
      ["a non-object event", "s", [42], {}, 400, "BAD_REQUEST", /event 0 is not an object/],
      ["an empty array", "s", [], {}, 400, "INVALID_ARGUMENT", /at least one event/],
      [
        "a bad event id",
        "s",
        [{ eventId: "nope", eventType: "A", data: {} }],
        {},
        400,
        "INVALID_ARGUMENT",
        /event 0: id "nope" is not a UUID/,
      ],
      [
        "a missing event type",
        "s",
        [{ eventId: randomUUID(), data: {} }],
        {},
        400,
        "INVALID_ARGUMENT",
        /event type must be a string/,
      ],
      [
        "missing data",
        "s",
        [{ eventId: randomUUID(), eventType: "A" }],
        {},
        400,
        "INVALID_ARGUMENT",
        /has no data/,
      ],
      ["a bad stream name", "$all", [ev()], {}, 400, "INVALID_ARGUMENT", /\$all is not a stream/],
      [
        "a nonsense expected version",
        "s",
        [ev()],
        { "Chorus-Expected-Version": "-3" },
        400,
        "INVALID_ARGUMENT",
        /Chorus-Expected-Version must be/,
      ],
      [
        "an oversized body",
        "s",
        [ev("A", { pad: "x".repeat(8000) })],
        {},
        413,
        "PAYLOAD_TOO_LARGE",
        /exceeds the limit of 4096 bytes/,
      ],
    ])(
      "rejects %s clearly and stores nothing",
      async (_name, stream, body, headers, status, code, message) => {
        const before = node.store.commitPosition;
        const res = await post(stream, body, headers);
        expect(res.status).toBe(status);
        const json = (await res.json()) as { error: string; message: string };
        expect(json.error).toBe(code);
        expect(json.message).toMatch(message);
        expect(node.store.commitPosition).toBe(before);
        expect((await fetch(httpUrl(node, "/health/live"))).status).toBe(200);
      },
    );

    it("rejects bad read parameters, unknown paths and methods with JSON errors", async () => {
      const cases: [string, RequestInit, number, string][] = [
        ["/streams/s?count=0", {}, 400, "INVALID_ARGUMENT"],
        ["/streams/s?direction=sideways", {}, 400, "INVALID_ARGUMENT"],
        ["/streams/s?from=abc", {}, 400, "INVALID_ARGUMENT"],
        ["/streams/%E0%A4%A", {}, 400, "INVALID_ARGUMENT"],
        ["/nope", {}, 404, "NOT_FOUND"],
        ["/streams/s", { method: "PUT", body: "x" }, 405, "METHOD_NOT_ALLOWED"],
        ["/streams/never-written", {}, 404, "STREAM_NOT_FOUND"],
      ];
      for (const [path, init, status, code] of cases) {
        const res = await fetch(httpUrl(node, path), init);
        expect([path, res.status]).toEqual([path, status]);
        expect(((await res.json()) as { error: string }).error).toBe(code);
      }
    });
  });
});
