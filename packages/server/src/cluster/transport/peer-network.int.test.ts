import { createServer, type Server } from "node:http";
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { decodeFrame, encodeInternalFrame, type InternalFrame } from "@chorus/protocol";
import { WebSocket } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import {
  PeerNetwork,
  type PeerEndpoint,
  type PeerIdentity,
  type PeerNetworkOptions,
} from "./peer-network.js";

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
  /** Peers reported gone (instanceIds), in order. */
  gone: string[];
  warnings: string[];
  /** Debug log lines: message and fields. */
  debugs: string[];
}

const peers: TestPeer[] = [];

async function startPeer(
  instanceId: string,
  clusterSize = 3,
  port = 0,
  options: Partial<PeerNetworkOptions> = {},
): Promise<TestPeer> {
  const received: TestPeer["received"] = [];
  const gone: string[] = [];
  const warnings: string[] = [];
  const debugs: string[] = [];
  const net = new PeerNetwork({
    self: { instanceId, clusterSize, readOnlyReplica: false },
    logger: {
      ...silent,
      debug: (obj, msg) => debugs.push(`${msg} ${JSON.stringify(obj)}`),
      warn: (_obj, msg) => warnings.push(msg),
    },
    onFrame: (from, frame) => received.push({ from, frame }),
    onPeerGone: (peer) => gone.push(peer.instanceId),
    reconnectDelayMs: 10,
    maxReconnectDelayMs: 50,
    helloTimeoutMs: 300,
    ...options,
  });
  const server = createServer((_req, res) => res.writeHead(426).end());
  net.attach(server);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const endpoint = { host: "127.0.0.1", port: (server.address() as AddressInfo).port };
  const peer = { net, server, endpoint, received, gone, warnings, debugs };
  peers.push(peer);
  return peer;
}

async function stopPeer(peer: TestPeer): Promise<void> {
  await peer.net.close();
  peer.server.closeAllConnections();
  await new Promise<void>((resolve) => peer.server.close(() => resolve()));
  peers.splice(peers.indexOf(peer), 1);
}

/**
 * A TCP pipe in front of a peer: every connection through it can be reset, or held (nothing
 * read either way, so the senders' buffers fill as over a dead link) until heal().
 */
interface Pipe {
  endpoint: PeerEndpoint;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections open now. */
  readonly connections: number;
  resetAll(): void;
  blackhole(): void;
  heal(): void;
  close(): Promise<void>;
}

const pipes: Pipe[] = [];

async function startPipe(target: PeerEndpoint): Promise<Pipe> {
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  let held = false;
  let accepted = 0;
  const server = createTcpServer((client) => {
    accepted++;
    const upstream = connect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    for (const [from, to] of [pair, [upstream, client] as const]) {
      sockets.add(from);
      from.on("data", (data) => to.write(data));
      from.on("error", () => to.destroy());
      from.on("close", () => {
        sockets.delete(from);
        pairs.delete(pair);
        to.destroy();
      });
      if (held) from.pause();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const pipe: Pipe = {
    endpoint: { host: "127.0.0.1", port: (server.address() as AddressInfo).port },
    get accepted() {
      return accepted;
    },
    get connections() {
      return pairs.size;
    },
    resetAll() {
      for (const [client, upstream] of pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    },
    blackhole() {
      held = true;
      for (const s of sockets) s.pause();
    },
    heal() {
      held = false;
      for (const s of sockets) s.resume();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  pipes.push(pipe);
  return pipe;
}

afterEach(async () => {
  for (const p of [...peers]) await stopPeer(p);
  for (const p of pipes.splice(0)) await p.close();
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

  it("reconnects when the peer comes back on the same port, and says it is reachable", async () => {
    const reachable: string[] = [];
    const a = await startPeer("node-a", 3, 0, {
      onPeerReachable: (endpoint, peer) =>
        reachable.push(`${peer.instanceId}@${endpoint.host}:${endpoint.port}`),
    });
    let b = await startPeer("node-b");
    const port = b.endpoint.port;
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "first connection");
    await until(() => reachable.length === 1, "reachable");
    await stopPeer(b);
    await until(() => !a.net.isConnected({ host: "127.0.0.1", port }), "link noticed the loss");
    b = await startPeer("node-b2", 3, port);
    await until(() => a.net.isConnected(b.endpoint), "reconnected");
    await until(() => reachable.length === 2, "reachable again");
    expect(reachable).toEqual([`node-b@127.0.0.1:${port}`, `node-b2@127.0.0.1:${port}`]);
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

  it("reports a peer whose process is gone at once: its address refuses the reconnection", async () => {
    // A loss grace far beyond the test: only the refused reconnection can report it.
    const a = await startPeer("node-a", 3, 0, { lossGraceMs: 60_000, maxReconnectDelayMs: 50 });
    const b = await startPeer("node-b", 3, 0, { lossGraceMs: 60_000 });
    a.net.connect(b.endpoint);
    b.net.connect(a.endpoint);
    await until(() => a.net.isConnected(b.endpoint) && b.net.isConnected(a.endpoint), "links");
    const stoppedAt = performance.now();
    await stopPeer(b);
    await until(() => a.gone.length > 0, "node-b reported gone");
    expect(a.gone).toEqual(["node-b"]);
    expect(performance.now() - stoppedAt).toBeLessThan(1_000);
  });

  it("an old inbound socket closing after the peer reconnected is not a loss", async () => {
    const a = await startPeer("node-a", 3, 0, { lossGraceMs: 60_000 });
    const b = await startPeer("node-b", 3, 0, { lossGraceMs: 60_000 });
    b.net.connect(a.endpoint);
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint) && b.net.isConnected(a.endpoint), "links");
    // A second socket from node-b (as a link that reconnected while the old one lingers).
    const old = new WebSocket(`ws://127.0.0.1:${a.endpoint.port}/`);
    await new Promise((resolve) => old.once("open", resolve));
    old.send(
      encodeInternalFrame({
        from: "node-b",
        hello: { instanceId: "node-b", clusterSize: 3, readOnlyReplica: false },
      }),
    );
    b.net.send(a.endpoint, { timeoutNow: { epoch: 1 } });
    await until(() => a.received.length === 1, "a frame on the current link");
    const closed = new Promise((resolve) => old.once("close", resolve));
    old.close();
    await closed;
    // Then node-b's process goes for real: that, and only that, is reported.
    await stopPeer(b);
    await until(() => a.gone.length > 0, "node-b reported gone");
    expect(a.gone).toEqual(["node-b"]);
  });

  it("links reset both ways that reconnect are not a loss", async () => {
    const a = await startPeer("node-a", 3, 0, { lossGraceMs: 60_000 });
    const b = await startPeer("node-b", 3, 0, { lossGraceMs: 60_000 });
    const toB = await startPipe(b.endpoint);
    const toA = await startPipe(a.endpoint);
    a.net.connect(toB.endpoint);
    b.net.connect(toA.endpoint);
    for (let round = 1; round <= 5; round++) {
      await until(
        () => a.net.isConnected(toB.endpoint) && b.net.isConnected(toA.endpoint),
        `links up (round ${round})`,
      );
      // Frames both ways prove the peers know each other again before the next reset (sent
      // until they arrive: the first may go out on a link whose reset is not noticed yet).
      await until(() => {
        a.net.send(toB.endpoint, { timeoutNow: { epoch: round } });
        b.net.send(toA.endpoint, { timeoutNow: { epoch: round } });
        return (
          b.received.at(-1)?.frame.timeoutNow?.epoch === round &&
          a.received.at(-1)?.frame.timeoutNow?.epoch === round
        );
      }, `frames of round ${round}`);
      toB.resetAll();
      toA.resetAll();
    }
    await until(() => toB.accepted === 6 && a.net.isConnected(toB.endpoint), "a -> b again");
    // The one real loss is the first one reported, on both sides.
    await stopPeer(b);
    await until(() => a.gone.length > 0, "node-b reported gone");
    expect(a.gone).toEqual(["node-b"]);
  });

  it("reports a peer whose links stay down past the loss grace", async () => {
    const a = await startPeer("node-a", 3, 0, { helloTimeoutMs: 5_000 });
    const b = await startPeer("node-b", 3, 0, { lossGraceMs: 200 });
    const toB = await startPipe(b.endpoint);
    a.net.connect(toB.endpoint);
    await until(() => a.net.isConnected(toB.endpoint), "a -> b");
    a.net.send(toB.endpoint, { timeoutNow: { epoch: 1 } });
    await until(() => b.received.length === 1, "b knows node-a");
    // a's reconnections hang (held, neither refused nor open): only the grace reports it.
    toB.blackhole();
    const cutAt = performance.now();
    toB.resetAll();
    await until(() => b.gone.length > 0, "node-a reported gone at b");
    expect(b.gone).toEqual(["node-a"]);
    expect(performance.now() - cutAt).toBeGreaterThanOrEqual(190);
  });

  it("terminates a silent (blackholed) link and opens it again after heal", async () => {
    const keepalive = { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 150 };
    const a = await startPeer("node-a", 3, 0, keepalive);
    const b = await startPeer("node-b", 3, 0, keepalive);
    const toB = await startPipe(b.endpoint);
    a.net.connect(toB.endpoint);
    await until(() => a.net.isConnected(toB.endpoint), "a -> b");
    expect(toB.accepted).toBe(1);
    toB.blackhole();
    // The pongs stop: a terminates the link and tries again (held at the pipe meanwhile).
    await until(() => toB.accepted >= 2, "a reconnects through the pipe", 5_000);
    toB.heal();
    await until(() => a.net.isConnected(toB.endpoint), "a -> b after heal");
    await until(() => {
      a.net.send(toB.endpoint, { timeoutNow: { epoch: 9 } });
      return b.received.some((r) => r.frame.timeoutNow?.epoch === 9);
    }, "a frame after heal");
  });

  it("reopens a link in backoff at once when the peer reaches this node again", async () => {
    // A long backoff: only the peer's own new link can bring a -> b back quickly.
    const a = await startPeer("node-a", 3, 0, {
      reconnectDelayMs: 30_000,
      maxReconnectDelayMs: 30_000,
      helloTimeoutMs: 200,
      keepaliveIntervalMs: 20,
      keepaliveTimeoutMs: 150,
    });
    const b = await startPeer("node-b");
    const toB = await startPipe(b.endpoint);
    const toA = await startPipe(a.endpoint);
    a.net.connect(toB.endpoint);
    b.net.connect(toA.endpoint);
    await until(() => a.net.isConnected(toB.endpoint) && b.net.isConnected(toA.endpoint), "links");
    // a -> b goes silent: a terminates it, retries at once (held until its handshake times
    // out), and then backs off for 30 s.
    toB.blackhole();
    await until(() => toB.accepted === 2, "a retries");
    await until(() => a.debugs.some((d) => /handshake has timed out/.test(d)), "a's retry failed");
    expect(a.net.isConnected(toB.endpoint)).toBe(false);
    toB.heal();
    // b's link to a breaks and comes back: a hears node-b's hello and dials b again now.
    toA.resetAll();
    await until(() => a.net.isConnected(toB.endpoint), "a -> b again, long before 30 s");
  });

  it("reopens a link in backoff at once when the peer restarts as a new instance and reaches this node", async () => {
    // A long backoff: only the restarted peer's own link can bring a -> b back quickly.
    const a = await startPeer("node-a", 3, 0, {
      reconnectDelayMs: 30_000,
      maxReconnectDelayMs: 30_000,
    });
    let b = await startPeer("node-b");
    const port = b.endpoint.port;
    a.net.connect(b.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "first connection");
    await stopPeer(b);
    // a's link broke, its immediate retry was refused: it now waits out a 30 s backoff.
    await until(() => a.gone.includes("node-b"), "node-b gone");
    expect(a.net.isConnected({ host: "127.0.0.1", port })).toBe(false);
    b = await startPeer("node-b-restarted", 3, port);
    b.net.connect(a.endpoint);
    await until(() => a.net.isConnected(b.endpoint), "a -> b again, long before 30 s");
    expect(a.net.send(b.endpoint, { timeoutNow: { epoch: 3 } })).toBe(true);
    await until(() => b.received.some((r) => r.from.instanceId === "node-a"), "frame from a");
  });

  it("keeps a quiet but healthy link open", async () => {
    const keepalive = { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 100 };
    const a = await startPeer("node-a", 3, 0, keepalive);
    const b = await startPeer("node-b", 3, 0, keepalive);
    const toB = await startPipe(b.endpoint);
    a.net.connect(toB.endpoint);
    await until(() => a.net.isConnected(toB.endpoint), "a -> b");
    const start = performance.now();
    // Ten deadlines without a frame: the pings and pongs keep it open.
    await until(() => performance.now() - start > 1_000, "ten deadlines", 5_000);
    expect(toB.accepted).toBe(1);
    expect(a.net.isConnected(toB.endpoint)).toBe(true);
  });

  it("holds replication data on a backed-up link, never control frames, and says so", async () => {
    const a = await startPeer("node-a", 3, 0, { maxBufferedBytes: 64 * 1024 });
    const b = await startPeer("node-b");
    const toB = await startPipe(b.endpoint);
    a.net.connect(toB.endpoint);
    await until(() => a.net.isConnected(toB.endpoint), "a -> b");
    toB.blackhole();
    const records = Buffer.alloc(256 * 1024, 7);
    const append = (n: number) => ({
      appendEntries: { epoch: 1, prev: { epoch: 1, position: n }, records, leaderCommit: 0 },
    });
    let sent = 0;
    // Fill the kernel's buffers and then the link's own.
    await until(() => {
      if (a.net.send(toB.endpoint, append(sent))) sent++;
      return !a.net.writable(toB.endpoint);
    }, "the link backs up");
    expect(a.net.bufferedBytes(toB.endpoint)).toBeGreaterThan(64 * 1024);
    expect(a.net.send(toB.endpoint, append(sent))).toBe(false);
    expect(a.net.send(toB.endpoint, append(sent + 1))).toBe(false);
    expect(a.warnings.filter((w) => w.includes("backed up"))).toHaveLength(1);
    // Heartbeats, votes and replies still go out.
    const heartbeat = {
      appendEntries: { epoch: 1, prev: { epoch: 1, position: 0 }, leaderCommit: 0 },
    };
    expect(a.net.send(toB.endpoint, heartbeat)).toBe(true);
    expect(a.net.send(toB.endpoint, { voteReply: { epoch: 2, granted: true } })).toBe(true);
    expect(a.net.send(toB.endpoint, { timeoutNow: { epoch: 3 } })).toBe(true);
    toB.heal();
    await until(() => b.received.some((r) => r.frame.timeoutNow?.epoch === 3), "all delivered");
    expect(
      b.received.filter((r) => (r.frame.appendEntries?.records?.length ?? 0) > 0),
    ).toHaveLength(sent);
    await until(() => a.net.writable(toB.endpoint), "drained");
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
