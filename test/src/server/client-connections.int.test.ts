// A node bounds the client connections it holds (--max-client-connections): each holds a file
// descriptor, and a flood of them used to take every descriptor the process may have. The
// node then accepted nothing more while the flood lasted, and a write that needed a new file
// (the log's next segment) failed, leaving the node without writes until a restart.
//
// One real node with a limit of 20: 20 connections are held; a flood of 400 idle TCP
// connections on each external port must not raise the node's open descriptors past the limit
// and the refusal margin; over the limit, upgrades and HTTP requests are answered 503 naming
// the limit, while health checks and metrics still answer; the held connections keep
// appending; once some close, new clients are served.
import { ChorusClient, DiscoveryError, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { RawClient } from "./helpers.js";

const LIMIT = 20;
/** REFUSAL_MARGIN of api/client-connections.ts: over-limit connections still answered 503. */
const MARGIN = 64;

let node: TestNode | undefined;
const sockets: Socket[] = [];
const held: RawClient[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(held.splice(0).map((c) => c.close().catch(() => undefined)));
  await node?.stop();
  node = undefined;
});

function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** A WebSocket upgrade's outcome: "open", or the refusal's status and body. */
function upgrade(n: TestNode): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${n.extTcp.host}:${n.extTcp.port}/`);
    ws.on("open", () => {
      ws.terminate();
      resolve("open");
    });
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(`${res.statusCode} ${body}`));
    });
    ws.on("error", (err) => resolve(`error ${err.message}`));
  });
}

describe.skipIf(process.platform !== "linux")("client connections beyond the limit", () => {
  it("are refused with 503 naming the limit; a flood holds no more descriptors; held connections and health checks go on", async () => {
    node = await startNode({ memDb: true, args: ["--max-client-connections", String(LIMIT)] });
    const pid = node.pid as number;
    const url = `ws://${node.extTcp.host}:${node.extTcp.port}/`;
    for (let i = 0; i < LIMIT; i++) held.push(await RawClient.connect(url));
    const before = openDescriptors(pid);

    // A flood: idle TCP connections to both external ports.
    for (const port of [node.extTcp.port, node.extHttp.port]) {
      for (let i = 0; i < 400; i++) {
        const s = connect({ host: node.extTcp.host, port });
        s.on("error", () => undefined);
        sockets.push(s);
      }
    }
    await waitFor(() => sockets.every((s) => !s.connecting), { timeoutMs: 20_000 });
    // The node holds at most the margin's worth more (it closes the rest as it accepts them).
    const during = openDescriptors(pid);
    expect(during - before).toBeLessThanOrEqual(MARGIN + 8);
    for (const s of sockets.splice(0)) s.destroy();
    await waitFor(() => openDescriptors(pid) <= before + 2, { timeoutMs: 20_000 });

    // Over the limit: a clear refusal on both ports.
    expect(await upgrade(node)).toMatch(/^503 .*--max-client-connections 20/);
    const api = await fetch(`http://${node.httpEndpoint}/streams/orders-1`);
    expect(api.status).toBe(503);
    expect(await api.json()).toMatchObject({
      error: "TOO_MANY_CONNECTIONS",
      message: expect.stringMatching(/holds 20 client connections/) as unknown,
    });
    // A client over the limit is told why, not only "HTTP 503".
    const crowded = new ChorusClient(`${node.connectionString}&maxDiscoverAttempts=1`);
    try {
      const error = await crowded.connect().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(DiscoveryError);
      expect((error as Error).message).toMatch(
        /HTTP 503 from http:\/\/\S+\/gossip: TOO_MANY_CONNECTIONS: .*holds 20 client connections/,
      );
    } finally {
      await crowded.close();
    }
    // Health checks and metrics still answer, and count the refusals.
    expect((await fetch(`http://${node.httpEndpoint}/health/live`)).status).toBe(200);
    const metrics = await (await fetch(`http://${node.httpEndpoint}/metrics`)).text();
    const refused = Number(/^chorus_client_connections_refused_total (\d+)/m.exec(metrics)?.[1]);
    expect(refused).toBeGreaterThan(0);

    // The held connections write as before.
    const stream = `held-${randomUUID()}`;
    const reply = await (held[0] as RawClient).request({
      append: {
        streamId: stream,
        events: [{ id: randomUUID(), type: "Held", isJson: true, data: Buffer.from("{}") }],
      },
    });
    expect(reply.appendResult?.success).toBeTruthy();

    // Room again: a new client connects and writes.
    await Promise.all(held.splice(0, 10).map((c) => c.close()));
    const client = new ChorusClient(node.connectionString);
    try {
      await client.appendToStream(stream, jsonEvent({ type: "New", data: {} }));
      const events = [];
      for await (const e of client.readStream(stream)) events.push(e.event.type);
      expect(events).toEqual(["Held", "New"]);
    } finally {
      await client.close();
    }
  }, 120_000);

  it("refuses a limit that is not a positive integer", async () => {
    await expect(
      startNode({ memDb: true, args: ["--max-client-connections", "0"], startTimeoutMs: 10_000 }),
    ).rejects.toThrow(/max-client-connections/);
  });
});
