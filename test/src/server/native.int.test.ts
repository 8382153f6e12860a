// The native protocol against an in-process node, on each backend: appends, reads, deletes,
// bad input, shutdown.
import { chorus } from "@chorus/protocol";
import type { ChorusNode } from "@chorus/server";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BACKENDS, backendNodeOptions, closeBackends } from "../backends.js";
import {
  Code,
  Kind,
  RawClient,
  append,
  jsonEvent,
  httpUrl,
  nativeUrl,
  readAllForwards,
  startNode,
  waitFor,
} from "./helpers.js";

let node: ChorusNode;

afterAll(closeBackends);

describe.each(BACKENDS)("%s", (backend) => {
  beforeAll(async () => {
    node = await startNode({ ...(await backendNodeOptions(backend)), maxFrameBytes: 64 * 1024 });
  });
  afterAll(async () => {
    await node?.close();
  });

  /** Checks that the node still serves a fresh connection and that `stream` holds exactly `count` events. */
  async function stillServing(stream: string, count: number): Promise<void> {
    const c = await RawClient.connect(nativeUrl(node));
    const pong = await c.request({ ping: {} });
    expect(pong.pong?.instanceId).toBe(node.instanceId);
    expect(pong.pong?.state).toBe("Leader");
    if (count === 0) {
      const r = await c.request({ readStream: { streamId: stream, maxCount: 10 } });
      expect(r.error?.code).toBe(Code.STREAM_NOT_FOUND);
    } else {
      expect(await readAllForwards(c, stream)).toHaveLength(count);
    }
    await c.close();
  }

  describe("native protocol: append, read, delete", () => {
    it("appends with expected versions, reads forwards and backwards, pages $all", async () => {
      const c = await RawClient.connect(nativeUrl(node));
      const stream = `order-${randomUUID()}`;
      const first = await append(
        c,
        stream,
        [jsonEvent("Placed", { n: 1 }), jsonEvent("Paid", { n: 2 })],
        { kind: Kind.NO_STREAM },
      );
      expect(first.appendResult?.success?.nextExpectedVersion).toBe(1);
      const position = Number(first.appendResult?.success?.position);

      const wrong = await append(c, stream, [jsonEvent("X", {})], {
        kind: Kind.EXACT,
        revision: 0,
      });
      expect(wrong.appendResult?.wrongExpectedVersion?.streamExists).toBe(true);
      expect(wrong.appendResult?.wrongExpectedVersion?.actualRevision).toBe(1);

      const exact = await append(c, stream, [jsonEvent("Shipped", { n: 3 })], {
        kind: Kind.EXACT,
        revision: 1,
      });
      expect(exact.appendResult?.success?.nextExpectedVersion).toBe(2);
      expect(Number(exact.appendResult?.success?.position)).toBeGreaterThan(position);

      const events = await readAllForwards(c, stream);
      expect(events.map((e) => e.type)).toEqual(["Placed", "Paid", "Shipped"]);
      expect(events.map((e) => Number(e.revision))).toEqual([0, 1, 2]);
      expect(JSON.parse(Buffer.from(events[0]!.data!).toString())).toEqual({ n: 1 });

      const back = await c.request({
        readStream: {
          streamId: stream,
          direction: chorus.Direction.BACKWARDS,
          fromEnd: true,
          maxCount: 2,
        },
      });
      expect(back.readResult?.events?.map((e) => e.event?.type)).toEqual(["Shipped", "Paid"]);
      expect(Number(back.readResult?.lastRevision)).toBe(2);

      const all = await c.request({
        readAll: { direction: chorus.Direction.FORWARDS, fromPosition: 0, maxCount: 4096 },
      });
      const mine = all.readResult?.events?.filter((e) => e.event?.streamId === stream) ?? [];
      expect(mine).toHaveLength(3);
      await c.close();
    });

    it("is idempotent: the same event ids at the same place return the original result", async () => {
      const c = await RawClient.connect(nativeUrl(node));
      const stream = `idem-${randomUUID()}`;
      const events = [jsonEvent("A", {}), jsonEvent("B", {})];
      const a = await append(c, stream, events, { kind: Kind.NO_STREAM });
      const b = await append(c, stream, events, { kind: Kind.NO_STREAM });
      expect(b.appendResult?.success).toEqual(a.appendResult?.success);
      expect(await readAllForwards(c, stream)).toHaveLength(2);
      await c.close();
    });

    it("soft-deletes (recreatable, revisions continue) and hard-deletes (STREAM_DELETED forever)", async () => {
      const c = await RawClient.connect(nativeUrl(node));
      const stream = `del-${randomUUID()}`;
      await append(c, stream, [jsonEvent("A", {})]);
      const soft = await c.request({
        deleteStream: { streamId: stream, expected: { kind: Kind.EXACT, revision: 0 } },
      });
      expect(soft.deleteResult?.success).toBeTruthy();
      const gone = await c.request({ readStream: { streamId: stream, maxCount: 10 } });
      expect(gone.error?.code).toBe(Code.STREAM_NOT_FOUND);
      const again = await append(c, stream, [jsonEvent("B", {})]);
      expect(again.appendResult?.success?.nextExpectedVersion).toBe(1);

      const wrong = await c.request({
        deleteStream: { streamId: stream, expected: { kind: Kind.EXACT, revision: 7 }, hard: true },
      });
      expect(wrong.deleteResult?.wrongExpectedVersion?.actualRevision).toBe(1);
      const hard = await c.request({ deleteStream: { streamId: stream, hard: true } });
      expect(hard.deleteResult?.success).toBeTruthy();
      const read = await c.request({ readStream: { streamId: stream, maxCount: 10 } });
      expect(read.error?.code).toBe(Code.STREAM_DELETED);
      const write = await append(c, stream, [jsonEvent("C", {})]);
      expect(write.error?.code).toBe(Code.STREAM_DELETED);
      await c.close();
    });

    it("caps read pages at 4,096 events, and below the frame limit by bytes", async () => {
      const roomy = await startNode(await backendNodeOptions(backend));
      const c = await RawClient.connect(nativeUrl(roomy));
      const stream = `big-${randomUUID()}`;
      for (let i = 0; i < 5; i++) {
        const batch = Array.from({ length: 1000 }, (_, j) => jsonEvent("E", { i, j }));
        const r = await append(c, stream, batch);
        expect(r.appendResult?.success).toBeTruthy();
      }
      const page = await c.request({
        readStream: { streamId: stream, fromRevision: 0, maxCount: 100_000 },
      });
      expect(page.readResult?.events).toHaveLength(4096);
      expect(page.readResult?.endOfStream).toBe(false);
      expect(Number(page.readResult?.nextRevision)).toBe(4096);
      await c.close();
      await roomy.close();

      // The 64 KiB-frame node pages by bytes: smaller pages, but paging still sees every event once.
      const small = await RawClient.connect(nativeUrl(node));
      for (let i = 0; i < 10; i++)
        expect(
          (
            await append(
              small,
              stream,
              Array.from({ length: 300 }, () => jsonEvent("E", { pad: "x".repeat(50) })),
            )
          ).appendResult?.success,
        ).toBeTruthy();
      const seen: number[] = [];
      let from = 0;
      for (;;) {
        const p = await small.request({
          readStream: { streamId: stream, fromRevision: from, maxCount: 4096 },
        });
        const events = p.readResult?.events ?? [];
        expect(events.length).toBeLessThan(4096);
        seen.push(...events.map((e) => Number(e.event?.revision)));
        if (p.readResult?.endOfStream) break;
        from = Number(p.readResult?.nextRevision);
      }
      expect(seen).toEqual(Array.from({ length: 3000 }, (_, i) => i));
      await small.close();
    });
  });

  describe("native protocol: bad input", () => {
    const stream = `guarded-${randomUUID()}`;
    beforeAll(async () => {
      const c = await RawClient.connect(nativeUrl(node));
      expect((await append(c, stream, [jsonEvent("Kept", {})])).appendResult?.success).toBeTruthy();
      await c.close();
    });

    it.each<[string, chorus.IAppendRequest, RegExp]>([
      [
        "an empty stream name",
        { streamId: "", events: [jsonEvent("A", {})] },
        /stream name must not be empty/,
      ],
      [
        "$all as a stream",
        { streamId: "$all", events: [jsonEvent("A", {})] },
        /\$all is not a stream/,
      ],
      [
        "a control character in the name",
        { streamId: "a\u0001b", events: [jsonEvent("A", {})] },
        /control characters/,
      ],
      [
        "an oversized name",
        { streamId: "x".repeat(2000), events: [jsonEvent("A", {})] },
        /longer than 1024 bytes/,
      ],
      [
        "the persistent groups' config stream",
        { streamId: "$persistent-config", events: [jsonEvent("GroupDeleted", {})] },
        /holds persistent subscription groups' state, which only the node writes/,
      ],
      [
        "a group's checkpoint metadata stream",
        { streamId: "$$$persistent-orders::g-checkpoint", events: [jsonEvent("$metadata", {})] },
        /only the node writes/,
      ],
      ["no events", { streamId: "ok", events: [] }, /at least one event/],
      [
        "an event without a type",
        { streamId: "ok", events: [{ ...jsonEvent("A", {}), type: "" }] },
        /event 0: event type must not be empty/,
      ],
      [
        "a non-UUID id",
        {
          streamId: "ok",
          events: [jsonEvent("A", {}), { ...jsonEvent("A", {}), id: "not-a-uuid" }],
        },
        /event 1: id "not-a-uuid" is not a UUID/,
      ],
      ["a missing id", { streamId: "ok", events: [{ type: "A" }] }, /event 0: id "" is not a UUID/],
      [
        "a nonsense expected version kind",
        {
          streamId: "ok",
          expected: { kind: 42 as chorus.ExpectedVersion.Kind },
          events: [jsonEvent("A", {})],
        },
        /unknown expected version kind 42/,
      ],
      [
        "an expected revision beyond 2^53",
        {
          streamId: "ok",
          expected: { kind: Kind.EXACT, revision: 2 ** 60 },
          events: [jsonEvent("A", {})],
        },
        /out of range/,
      ],
    ])(
      "rejects an append with %s as INVALID_ARGUMENT and stores nothing",
      async (_name, req, message) => {
        const c = await RawClient.connect(nativeUrl(node));
        const before = node.store.commitPosition;
        const r = await c.request({ append: req });
        expect(r.body).toBe("error");
        expect(r.error?.code).toBe(Code.INVALID_ARGUMENT);
        expect(r.error?.message).toMatch(message);
        expect(node.store.commitPosition).toBe(before);
        // The same connection keeps working.
        expect((await c.request({ ping: {} })).body).toBe("pong");
        await c.close();
      },
    );

    it("answers a nonsense read direction and a reply-type frame with clear errors", async () => {
      const c = await RawClient.connect(nativeUrl(node));
      const dir = await c.request({
        readStream: { streamId: stream, direction: 9 as chorus.Direction, maxCount: 1 },
      });
      expect(dir.error?.code).toBe(Code.INVALID_ARGUMENT);
      expect(dir.error?.message).toMatch(/unknown read direction 9/);
      const reply = await c.request({ pong: { instanceId: "x" } });
      expect(reply.error?.code).toBe(Code.BAD_REQUEST);
      expect(reply.error?.message).toMatch(/not a request/);
      const zero = new Promise<chorus.Frame>((resolve) =>
        c.ws.once("message", (d: Buffer) => resolve(chorus.Frame.decode(d))),
      );
      c.send({ correlationId: 0, ping: {} });
      expect((await zero).error?.message).toMatch(/correlation_id must not be 0/);
      await c.close();
    });

    it.each<[string, (c: RawClient) => void, number, RegExp]>([
      ["a text frame", (c) => c.ws.send("hello"), 1003, /text frames are not supported/],
      [
        "garbage bytes",
        (c) => c.ws.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
        1002,
        /^protocol error: /,
      ],
      [
        "a truncated frame",
        (c) => {
          const bytes = chorus.Frame.encode({
            correlationId: 5,
            append: { streamId: "s", events: [jsonEvent("A", { x: "y".repeat(100) })] },
          }).finish();
          c.ws.send(bytes.subarray(0, bytes.length - 10));
        },
        1002,
        /^protocol error: malformed frame/,
      ],
      ["an empty frame", (c) => c.ws.send(Buffer.alloc(0)), 1002, /^protocol error: empty frame/],
      [
        "an oversized frame",
        (c) => c.ws.send(Buffer.alloc(65 * 1024, 1)),
        1009,
        /frame exceeds the limit of 65536 bytes/,
      ],
    ])(
      "closes the connection on %s with a clear reason and keeps serving others",
      async (_name, act, code, reason) => {
        const before = node.store.commitPosition;
        const c = await RawClient.connect(nativeUrl(node));
        act(c);
        const closed = await c.waitClosed();
        expect(closed.code).toBe(code);
        expect(closed.reason).toMatch(reason);
        expect(node.store.commitPosition).toBe(before);
        await stillServing(stream, 1);
      },
    );

    it("refuses deleting the persistent groups' own streams, natively and over HTTP; reads stay open", async () => {
      const c = await RawClient.connect(nativeUrl(node));
      const del = await c.request({ deleteStream: { streamId: "$persistent-config", hard: true } });
      expect(del.error?.code).toBe(Code.INVALID_ARGUMENT);
      expect(del.error?.message).toMatch(/only the node writes/);
      await c.close();
      for (const method of ["POST", "DELETE"]) {
        const res = await fetch(httpUrl(node, "/streams/%24persistent-config"), {
          method,
          headers: { "content-type": "application/json", "chorus-hard-delete": "true" },
          body:
            method === "POST"
              ? JSON.stringify([{ eventId: randomUUID(), eventType: "X", data: {} }])
              : undefined,
        });
        expect(res.status).toBe(400);
        expect(((await res.json()) as { message: string }).message).toMatch(/only the node writes/);
      }
      const read = await fetch(httpUrl(node, "/streams/%24persistent-config"));
      expect([200, 404]).toContain(read.status);
      await stillServing(stream, 1);
    });

    it("answers an unknown frame body with BAD_REQUEST and keeps the connection", async () => {
      const c = await RawClient.connect(nativeUrl(node));
      // correlation_id = 77 (field 1), then field 99 (length-delimited, empty): well-formed, unknown body.
      const bytes = Buffer.from([0x08, 77, 0x9a, 0x06, 0x00]);
      const reply = new Promise<chorus.Frame>((resolve) =>
        c.ws.once("message", (d: Buffer) => resolve(chorus.Frame.decode(d))),
      );
      c.ws.send(bytes);
      const f = await reply;
      expect(Number(f.correlationId)).toBe(77);
      expect(f.error?.code).toBe(Code.BAD_REQUEST);
      expect((await c.request({ ping: {} })).body).toBe("pong");
      await c.close();
    });

    it("answers plain HTTP on the native port with 426 and raw garbage with 400", async () => {
      const res = await fetch(
        `http://${node.endpoints.extTcp.host}:${node.endpoints.extTcp.port}/`,
      );
      expect(res.status).toBe(426);
      expect(await res.text()).toMatch(/native protocol port/);

      const text = await new Promise<string>((resolve, reject) => {
        const sock = connect(node.endpoints.extTcp.port, node.endpoints.extTcp.host, () => {
          sock.write("\x00\x01\x02 this is not http at all\r\n\r\n");
        });
        let got = "";
        sock.on("data", (d) => (got += d.toString()));
        sock.on("close", () => resolve(got));
        sock.on("error", reject);
      });
      expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request/);
      expect(text).toMatch(/WebSocket only/);
      await stillServing(stream, 1);
    });

    it("closes idle dead connections that do not answer pings", async () => {
      const quick = await startNode({
        ...(await backendNodeOptions(backend)),
        clientPingIntervalMs: 50,
      });
      try {
        // autoPong: false makes this client play dead.
        const ws = new WebSocket(nativeUrl(quick), { autoPong: false });
        await new Promise<void>((resolve, reject) => {
          ws.once("open", () => resolve());
          ws.once("error", reject);
        });
        let closedCode: number | undefined;
        ws.on("close", (code) => (closedCode = code));
        await waitFor(() => closedCode !== undefined, 5_000, "the dead connection to be closed");
        expect(closedCode).toBe(1006);
        // A live client (which answers pings) stays connected across several intervals.
        const live = await RawClient.connect(nativeUrl(quick));
        let pings = 0;
        live.ws.on("ping", () => pings++);
        await waitFor(() => pings >= 3, 5_000, "three pings");
        expect(live.closed).toBeUndefined();
        await live.close();
      } finally {
        await quick.close();
      }
    });
  });

  describe("native protocol: shutdown", () => {
    it("closes client connections with 1001 and refuses new ones", async () => {
      const n = await startNode(await backendNodeOptions(backend));
      const c = await RawClient.connect(nativeUrl(n));
      expect((await append(c, "s", [jsonEvent("A", {})])).appendResult?.success).toBeTruthy();
      const closing = n.close();
      const closed = await c.waitClosed();
      expect(closed.code).toBe(1001);
      await closing;
      await n.close(); // idempotent
      expect(n.state).toBe("Shutdown");
      await expect(RawClient.connect(nativeUrl(n))).rejects.toThrow();
    });
  });
});

describe("native protocol: shutdown with appends in flight", () => {
  it("answers every append the store took before it stops, and keeps nothing unanswered", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chorus-shutdown-"));
    try {
      const n = await startNode({ memDb: false, db: dir });
      const c = await RawClient.connect(nativeUrl(n));
      const stream = `inflight-${randomUUID()}`;
      expect(
        (await append(c, stream, [jsonEvent("First", {})])).appendResult?.success,
      ).toBeTruthy();
      // Many appends, unawaited, then the stop: the ones the store took are answered before
      // the connection closes (a WebSocket keeps order: no answer comes after the close), the
      // rest are never answered (their requests time out).
      let acknowledged = 0;
      const replies = Array.from({ length: 3_000 }, (_, i) =>
        append(c, stream, [jsonEvent("E", { i })], { kind: Kind.ANY }, 3_000).then(
          (f) => {
            if (f.appendResult?.success) acknowledged++;
          },
          () => undefined,
        ),
      );
      await Promise.race(replies); // the first answer: the others are with the store or on their way
      await n.close();
      expect((await c.waitClosed()).code).toBe(1001);
      const answeredBeforeClose = acknowledged;
      await Promise.all(replies);
      expect(acknowledged).toBe(answeredBeforeClose);
      const again = await startNode({ memDb: false, db: dir });
      try {
        const r = await RawClient.connect(nativeUrl(again));
        const stored = (await readAllForwards(r, stream)).length - 1;
        await r.close();
        // Everything acknowledged is stored, and everything stored was acknowledged.
        expect(stored).toBe(answeredBeforeClose);
      } finally {
        await again.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
