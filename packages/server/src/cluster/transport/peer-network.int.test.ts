import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeFrame, encodeInternalFrame, type InternalFrame } from "@chorus/protocol";
import { WebSocket } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { PeerNetwork, type PeerEndpoint, type PeerIdentity } from "./peer-network.js";

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined };

async function until(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface TestPeer {
  net: PeerNetwork;
  server: Server;
  endpoint: PeerEndpoint;
  received: Array<{ from: PeerIdentity; frame: InternalFrame }>;
}

const peers: TestPeer[] = [];

async function startPeer(instanceId: string, clusterSize = 3, port = 0): Promise<TestPeer> {
  const received: TestPeer["received"] = [];
  const net = new PeerNetwork({
    self: { instanceId, clusterSize, readOnlyReplica: false },
    logger: silent,
    onFrame: (from, frame) => received.push({ from, frame }),
    reconnectDelayMs: 10,
    maxReconnectDelayMs: 50,
    helloTimeoutMs: 300,
  });
  const server = createServer((_req, res) => res.writeHead(426).end());
  net.attach(server);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const endpoint = { host: "127.0.0.1", port: (server.address() as AddressInfo).port };
  const peer = { net, server, endpoint, received };
  peers.push(peer);
  return peer;
}

async function stopPeer(peer: TestPeer): Promise<void> {
  await peer.net.close();
  peer.server.closeAllConnections();
  await new Promise<void>((resolve) => peer.server.close(() => resolve()));
  peers.splice(peers.indexOf(peer), 1);
}

afterEach(async () => {
  for (const p of [...peers]) await stopPeer(p);
});

describe("PeerNetwork", () => {
  it("delivers frames with the sender's identity, in order", async () => {
    const a = await startPeer("node-a");
    const b = await startPeer("node-b");
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "a -> b");
    for (let i = 1; i <= 3; i++) {
      expect(
        a.net.send(b.endpoint, { preVote: { epoch: i, last: { epoch: 0, position: i * 10 } } }),
      ).toBe(true);
    }
    await until(() => b.received.length === 3, "three frames at b");
    expect(b.received.map((r) => r.from.instanceId)).toEqual(["node-a", "node-a", "node-a"]);
    expect(b.received.map((r) => r.frame.preVote?.epoch)).toEqual([1, 2, 3]);
    expect(b.received[0]?.frame.from).toBe("node-a");
  });

  it("drops frames for a peer it is not connected to", async () => {
    const a = await startPeer("node-a");
    expect(a.net.send({ host: "127.0.0.1", port: 1 }, { timeoutNow: { epoch: 1 } })).toBe(false);
  });

  it("reconnects when the peer comes back on the same port", async () => {
    const a = await startPeer("node-a");
    let b = await startPeer("node-b");
    const port = b.endpoint.port;
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "first connection");
    await stopPeer(b);
    await until(() => !a.net.isConnected({ host: "127.0.0.1", port }), "link noticed the loss");
    b = await startPeer("node-b", 3, port);
    await until(() => a.net.isConnected(b.endpoint), "reconnected");
    expect(a.net.send(b.endpoint, { timeoutNow: { epoch: 7 } })).toBe(true);
    await until(() => b.received.length === 1, "frame after reconnect");
    expect(b.received[0]?.frame.timeoutNow?.epoch).toBe(7);
  });

  it("refuses a peer of a different cluster size", async () => {
    const a = await startPeer("node-a", 5);
    const b = await startPeer("node-b", 3);
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "connected");
    a.net.send(b.endpoint, { timeoutNow: { epoch: 1 } });
    // b closes the link after the hello; the frame never reaches its handler.
    await until(() => !a.net.isConnected(b.endpoint), "refused");
    expect(b.received).toEqual([]);
  });

  it.each([
    ["a text frame", (ws: WebSocket) => ws.send("hello"), 1003],
    ["garbage bytes", (ws: WebSocket) => ws.send(Buffer.from([0xff, 0xff, 0xff])), 1002],
    [
      "a frame before the hello",
      (ws: WebSocket) => ws.send(encodeInternalFrame({ from: "x", timeoutNow: { epoch: 1 } })),
      1008,
    ],
    ["silence", (_ws: WebSocket) => undefined, 1008],
  ])("closes a link that sends %s, and keeps serving others", async (_name, misbehave, code) => {
    const b = await startPeer("node-b");
    const ws = new WebSocket(`ws://127.0.0.1:${b.endpoint.port}/`);
    await new Promise((resolve) => ws.once("open", resolve));
    const closed = new Promise<number>((resolve) => ws.once("close", (c: number) => resolve(c)));
    misbehave(ws);
    expect(await closed).toBe(code);
    expect(b.received).toEqual([]);
    const a = await startPeer("node-a");
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "a good peer still connects");
    a.net.send(b.endpoint, { timeoutNow: { epoch: 2 } });
    await until(() => b.received.length === 1, "a good peer is served");
  });

  it("leaves no sockets or timers behind after close()", async () => {
    const before = process.getActiveResourcesInfo().length;
    const a = await startPeer("node-a");
    const b = await startPeer("node-b");
    a.net.connect(b.endpoint);
    b.net.connect(a.endpoint);
    a.net.connect({ host: "127.0.0.1", port: 1 }); // keeps retrying: a pending timer
    await until(() => a.net.isConnected(b.endpoint) && b.net.isConnected(a.endpoint), "both links");
    await stopPeer(a);
    await stopPeer(b);
    await until(() => process.getActiveResourcesInfo().length <= before, "handles released");
  });
});

// decodeFrame (the client protocol) must not accept internal frames as client frames silently.
it("internal frames are not client frames", () => {
  const bytes = encodeInternalFrame({ from: "x", timeoutNow: { epoch: 1 } });
  expect(() => decodeFrame(bytes)).toThrow();
});
