import { randomUUID } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { ChorusClient } from "@chorus/client";
import { chorus, decodeFrame, encodeFrame, messageBytes, type Frame } from "@chorus/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.js";
import type { Endpoint } from "./node.js";
import { startNode, type TestNode } from "./node.js";
import { waitFor } from "./wait.js";

/** A TCP echo server that remembers what each connection sent it. */
interface Echo {
  endpoint: Endpoint;
  /** Everything each accepted connection received, in accept order. */
  received: string[];
  sockets: Set<Socket>;
  close(): Promise<void>;
}

async function startEcho(): Promise<Echo> {
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    const index = received.push("") - 1;
    sockets.add(socket);
    socket.on("data", (data: Buffer) => {
      received[index] += data.toString("utf8");
      socket.write(data);
    });
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return {
    endpoint: { host: "127.0.0.1", port: address.port },
    received,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A client socket that collects what it receives and how it ended. */
interface Peer {
  socket: Socket;
  text(): string;
  error(): NodeJS.ErrnoException | undefined;
  closed: Promise<void>;
  send(text: string): Promise<void>;
}

async function open(endpoint: Endpoint): Promise<Peer> {
  const socket = connect(endpoint.port, endpoint.host);
  let text = "";
  let error: NodeJS.ErrnoException | undefined;
  socket.on("data", (data: Buffer) => (text += data.toString("utf8")));
  socket.on("error", (err) => (error = err));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return {
    socket,
    text: () => text,
    error: () => error,
    closed,
    send: (t) =>
      new Promise<void>((resolve, reject) =>
        socket.write(t, (err) => (err ? reject(err) : resolve())),
      ),
  };
}

/**
 * Proof that bytes did NOT arrive, without sleeping: a few round trips over loopback to a
 * server of this process take several turns of the event loop, in which an unfaulted proxy
 * would have forwarded anything already sent. (A correct proxy never fails this; a broken
 * one could slip through only if it were slower than the fence.)
 */
async function fence(): Promise<void> {
  const other = await startEcho();
  const direct = await open(other.endpoint);
  for (let i = 0; i < 3; i++) {
    const token = `fence${i};`;
    await direct.send(token);
    await waitFor(() => direct.text().endsWith(token), { intervalMs: 1 });
  }
  direct.socket.destroy();
  await direct.closed;
  await other.close();
}

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function setup(): Promise<{ echo: Echo; proxy: FaultProxy }> {
  const echo = await startEcho();
  cleanups.push(() => echo.close());
  const proxy = await startFaultProxy({ target: echo.endpoint });
  cleanups.push(() => proxy.close());
  return { echo, proxy };
}

async function client(proxy: FaultProxy): Promise<Peer> {
  const peer = await open(proxy.endpoint);
  cleanups.push(async () => {
    peer.socket.destroy();
    await peer.closed;
  });
  return peer;
}

describe("startFaultProxy", () => {
  it("is a transparent pipe until a fault is set, and counts connections", async () => {
    const { echo, proxy } = await setup();
    expect(proxy.endpoint.port).not.toBe(echo.endpoint.port);
    const a = await client(proxy);
    const b = await client(proxy);
    await a.send("hello");
    await b.send("world");
    await waitFor(() => a.text() === "hello" && b.text() === "world");
    expect(proxy.connections).toBe(2);
    expect(proxy.stats).toMatchObject({ upstreamBytes: 10, downstreamBytes: 10, accepted: 2 });

    // A clean close (FIN) travels through and the proxy forgets the connection.
    a.socket.end();
    await a.closed;
    await waitFor(() => proxy.connections === 1);
    expect(a.error()).toBeUndefined();
  });

  it("blackhole() stalls open and new connections; heal() delivers what was held", async () => {
    const { echo, proxy } = await setup();
    const before = await client(proxy);
    await before.send("a");
    await waitFor(() => before.text() === "a");

    proxy.blackhole();
    await before.send("b");
    const during = await client(proxy); // the proxy accepts...
    await during.send("c");
    await fence();
    expect(before.text()).toBe("a");
    expect(during.text()).toBe("");
    expect(echo.received).toEqual(["a"]); // ...but does not even connect to the target
    expect(proxy.connections).toBe(2);

    proxy.heal();
    await waitFor(() => before.text() === "ab" && during.text() === "c");
    expect(echo.received).toEqual(["ab", "c"]);
  });

  it("dropUpstream() discards client->server bytes only", async () => {
    const { echo, proxy } = await setup();
    const peer = await client(proxy);
    await peer.send("keep;");
    await waitFor(() => peer.text() === "keep;");

    proxy.dropUpstream();
    await peer.send("lost;");
    await waitFor(() => proxy.stats.droppedUpstreamBytes === 5);
    await fence();
    expect(echo.received).toEqual(["keep;"]);

    proxy.heal();
    await peer.send("again;");
    await waitFor(() => peer.text() === "keep;again;");
    expect(echo.received).toEqual(["keep;again;"]);
  });

  it("dropDownstream() discards server->client bytes only", async () => {
    const { echo, proxy } = await setup();
    const peer = await client(proxy);
    proxy.dropDownstream();
    await peer.send("lost;");
    await waitFor(() => echo.received[0] === "lost;"); // the server got it
    await waitFor(() => proxy.stats.droppedDownstreamBytes === 5); // its echo was discarded
    expect(peer.text()).toBe("");

    proxy.heal();
    await peer.send("back;");
    await waitFor(() => peer.text() === "back;");
  });

  it("dropRepliesAfterForwarding() lets the request execute and loses the reply", async () => {
    const { echo, proxy } = await setup();
    const peer = await client(proxy);
    proxy.dropRepliesAfterForwarding({ count: 1 });
    await peer.send("request-1;");
    await waitFor(() => echo.received[0] === "request-1;");
    await waitFor(() => proxy.stats.droppedDownstreamChunks === 1);
    await fence();
    expect(peer.text()).toBe("");

    // count: 1 lost one reply; the next one comes through without heal().
    await peer.send("request-2;");
    await waitFor(() => peer.text() === "request-2;");
    expect(proxy.stats.droppedDownstreamBytes).toBe("request-1;".length);
  });

  it("dropRepliesAfterForwarding() without count keeps dropping until heal()", async () => {
    const { echo, proxy } = await setup();
    const peer = await client(proxy);
    proxy.blackhole();
    proxy.dropRepliesAfterForwarding(); // lifts the hold on requests
    await peer.send("r1;");
    await waitFor(() => proxy.stats.droppedDownstreamChunks === 1);
    await peer.send("r2;");
    await waitFor(() => proxy.stats.droppedDownstreamChunks === 2);
    expect(echo.received).toEqual(["r1;r2;"]);
    expect(peer.text()).toBe("");
    proxy.heal();
    await peer.send("r3;");
    await waitFor(() => peer.text() === "r3;");
  });

  it("latency() delays each direction by at least delayMs and keeps the order", async () => {
    const { proxy } = await setup();
    const peer = await client(proxy);
    const delayMs = 60;
    proxy.latency({ delayMs, jitterMs: 20 });
    const started = performance.now();
    await peer.send("x");
    await waitFor(() => peer.text() === "x", { intervalMs: 1 });
    // Once there, once back: a lower bound only.
    expect(performance.now() - started).toBeGreaterThanOrEqual(2 * delayMs);

    // Jitter never reorders: many small writes come back in order.
    const expected = Array.from({ length: 50 }, (_, i) => `${i};`).join("");
    for (let i = 0; i < 50; i++) peer.socket.write(`${i};`);
    await waitFor(() => peer.text() === "x" + expected);
  });

  it("resetAll() gives the client ECONNRESET and leaves new connections alone", async () => {
    const { echo, proxy } = await setup();
    const peer = await client(proxy);
    await peer.send("a");
    await waitFor(() => peer.text() === "a");
    proxy.resetAll();
    await peer.closed;
    expect(peer.error()?.code).toBe("ECONNRESET");
    await waitFor(() => echo.sockets.size === 0 && proxy.connections === 0);
    expect(proxy.stats.reset).toBe(1);

    const next = await client(proxy);
    await next.send("b");
    await waitFor(() => next.text() === "b");
  });

  it("resets the client when the target refuses the connection", async () => {
    const echo = await startEcho();
    const target = echo.endpoint;
    await echo.close();
    const proxy = await startFaultProxy({ target });
    cleanups.push(() => proxy.close());
    const peer = await client(proxy);
    await peer.closed;
    expect(peer.error()?.code).toBe("ECONNRESET");
    expect(proxy.connections).toBe(0);
  });

  it("close() leaves no sockets, servers or timers behind", async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const counts = () => {
      const byType = new Map<string, number>();
      for (const type of process.getActiveResourcesInfo()) {
        byType.set(type, (byType.get(type) ?? 0) + 1);
      }
      return Object.fromEntries(byType);
    };
    const before = counts();

    const proxy = await startFaultProxy({ target: echo.endpoint });
    const peer = await open(proxy.endpoint);
    await peer.send("a");
    await waitFor(() => peer.text() === "a");
    const idle = await open(proxy.endpoint);
    proxy.latency({ delayMs: 60_000 });
    await peer.send("b");
    await fence(); // the proxy has read "b": a latency timer is pending at close()
    expect(echo.received[0]).toBe("a");

    const partitioned = await startFaultProxy({ target: echo.endpoint });
    partitioned.blackhole();
    const stalled = await open(partitioned.endpoint);
    await stalled.send("c");

    await Promise.all([proxy.close(), partitioned.close()]);
    expect(proxy.connections + partitioned.connections).toBe(0);
    await Promise.all([peer.closed, idle.closed, stalled.closed]);
    await waitFor(() => echo.sockets.size === 0);
    // Handles of earlier tests may still be closing: no type may have more than before.
    const after = counts();
    for (const [type, n] of Object.entries(after)) {
      expect({ type, n }).toEqual({ type, n: Math.min(n, before[type] ?? 0) });
    }
  });
});

describe("startFaultProxy in front of a Chorus node", () => {
  let node: TestNode | undefined;
  afterEach(async () => {
    await node?.stop();
    node = undefined;
  });

  /** A raw native-protocol connection: one protobuf Frame per binary WebSocket message. */
  async function nativeSocket(endpoint: Endpoint): Promise<{ ws: WebSocket; frames: Frame[] }> {
    const ws = new WebSocket(`ws://${endpoint.host}:${endpoint.port}/`, {
      perMessageDeflate: false,
    });
    const frames: Frame[] = [];
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[]) =>
      frames.push(decodeFrame(messageBytes(data))),
    );
    ws.on("error", () => undefined);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    return { ws, frames };
  }

  it("an append whose reply is dropped is stored all the same", async () => {
    node = await startNode({ memDb: true });
    const proxy = await startFaultProxy({ target: node.extTcp });
    cleanups.push(() => proxy.close());
    const { ws, frames } = await nativeSocket(proxy.endpoint);
    cleanups.push(async () => ws.terminate());

    proxy.dropRepliesAfterForwarding({ count: 1 });
    const stream = `lost-reply-${randomUUID()}`;
    const eventId = randomUUID();
    ws.send(
      encodeFrame({
        correlationId: 1,
        append: {
          streamId: stream,
          expected: { kind: chorus.ExpectedVersion.Kind.ANY },
          events: [
            {
              id: eventId,
              type: "Tested",
              isJson: true,
              data: Buffer.from(JSON.stringify({ ok: true })),
            },
          ],
        },
      }),
    );

    // Over a direct connection the event is there...
    const direct = new ChorusClient(`${node.connectionString}&operationTimeout=10000`);
    try {
      const ids = await waitFor(async () => {
        const found: string[] = [];
        for await (const e of direct.readStream(stream)) found.push(e.event.id);
        return found.length > 0 ? found : undefined;
      });
      expect(ids).toEqual([eventId]);
    } finally {
      await direct.close();
    }
    // ...while the proxied client never heard back.
    await waitFor(() => proxy.stats.droppedDownstreamChunks === 1);
    expect(frames).toEqual([]);

    // Exactly the one reply was lost: the connection still works.
    ws.send(encodeFrame({ correlationId: 2, ping: {} }));
    await waitFor(() => frames.length === 1);
    expect(Number(frames[0]!.correlationId)).toBe(2);
    expect(frames[0]!.body).toBe("pong");
  });
});
