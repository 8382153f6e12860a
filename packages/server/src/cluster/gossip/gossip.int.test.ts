import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
// The node serves gossip through its HTTP API's adapter; these tests serve it the same way.
import { createGossipHandler } from "../../api/gossip-handler.js";
import {
  GossipService,
  type GossipLogger,
  type GossipMember,
  type SelfMemberInfo,
} from "./index.js";
import { waitUntil } from "./test-support/fixtures.js";

const silent: GossipLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const INTERVAL_MS = 50;
const DEAD_AFTER_MS = 400;

interface Node {
  id: string;
  port: number;
  server: Server;
  service: GossipService;
  changes: GossipMember[][];
  stop(): Promise<void>;
}

function relevantResources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r === "Timeout" || r === "TCPSocketWrap" || r === "TCPServerWrap")
    .sort();
}

async function startNode(id: string, seeds: string[], state = "Follower"): Promise<Node> {
  // Like the node: the port is known only once bound; self() reads it each time.
  let port = 0;
  const ep = (p: number) => ({ host: "127.0.0.1", port: p });
  const self = (): SelfMemberInfo => ({
    instanceId: id,
    state,
    internalTcp: ep(1),
    externalTcp: ep(2),
    internalHttp: ep(port),
    externalHttp: ep(3),
    lastCommitPosition: "0",
    writerCheckpoint: "0",
    chaserCheckpoint: "0",
    epochNumber: 1,
    epochPosition: "0",
    epochId: "00000000-0000-0000-0000-000000000001",
    nodePriority: 0,
    isReadOnlyReplica: false,
  });
  const service = new GossipService({
    self,
    seeds,
    logger: silent,
    intervalMs: INTERVAL_MS,
    deadAfterMs: DEAD_AFTER_MS,
    requestTimeoutMs: 300,
  });
  const gossip = createGossipHandler(service, { allowPost: true });
  const server = createServer((req, res) => {
    if ((req.url ?? "/").split("?")[0] === "/gossip") gossip(req, res);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  const changes: GossipMember[][] = [];
  service.onChange((m) => changes.push([...m]));
  service.start();
  let stopped = false;
  return {
    id,
    port,
    server,
    service,
    changes,
    async stop() {
      if (stopped) return;
      stopped = true;
      await service.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function post(
  port: number,
  body: string,
  method = "POST",
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/gossip",
        method,
        agent: false,
        headers: { "Content-Type": "application/json" },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    req.setTimeout(5_000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

/** True when `now` holds no resource type more often than `baseline` does. */
function noneBeyond(baseline: string[], now: string[]): boolean {
  const count = (list: string[], t: string) => list.filter((r) => r === t).length;
  return now.every((t) => count(now, t) <= count(baseline, t));
}

const view = (n: Node) =>
  n.service
    .members()
    .map((m) => `${m.record.instanceId}:${m.isAlive}`)
    .sort()
    .join(",");

describe("gossip over real HTTP", () => {
  const nodes: Node[] = [];
  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    nodes.length = 0;
  });

  async function cluster(): Promise<[Node, Node, Node]> {
    // b knows nobody; a and c know only b (b must learn of them from their pushes).
    const b = await startNode("b", [], "Leader");
    const seed = [`127.0.0.1:${b.port}`];
    const a = await startNode("a", seed);
    const c = await startNode("c", seed);
    nodes.push(a, b, c);
    return [a, b, c];
  }

  it("three nodes converge from seed lists naming one other node; a stopped node is marked dead", async () => {
    const [a, b, c] = await cluster();
    const all = "a:true,b:true,c:true";
    await waitUntil(() => [a, b, c].every((n) => view(n) === all), "convergence", 10_000);
    expect(a.service.leader()?.record.instanceId).toBe("b");
    expect(c.changes.at(-1)?.find((m) => m.record.state === "Leader")?.record.instanceId).toBe("b");

    await c.stop();
    const stoppedAt = Date.now();
    await waitUntil(
      () => [a, b].every((n) => view(n) === "a:true,b:true,c:false"),
      "c marked dead by a and b",
      DEAD_AFTER_MS + 5_000,
    );
    // Dead no earlier than deadAfterMs after the last contact, and within a few rounds of it.
    expect(Date.now() - stoppedAt).toBeLessThan(DEAD_AFTER_MS + 4_000);
    const last = a.changes.at(-1)?.find((m) => m.record.instanceId === "c");
    expect(last?.isAlive).toBe(false);
  });

  it("a POST with garbage gets 400 and the view is unchanged", async () => {
    const [a, b, c] = await cluster();
    await waitUntil(
      () => [a, b, c].every((n) => view(n) === "a:true,b:true,c:true"),
      "convergence",
      10_000,
    );
    const before = view(a);
    const beforeChanges = a.changes.length;
    for (const body of ["not json", "{}", JSON.stringify({ members: [{ instanceId: "evil" }] })]) {
      const r = await post(a.port, body);
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ error: "BAD_REQUEST" });
    }
    const big = await post(a.port, JSON.stringify({ members: [], pad: "x".repeat(1024 * 1024) }));
    expect(big.status).toBe(413);
    expect(view(a)).toBe(before);
    expect(a.changes.length).toBe(beforeChanges);
    expect(a.service.members().some((m) => m.record.instanceId === "evil")).toBe(false);
  });

  it("GET /gossip serves the view; the external-port handler refuses POST", async () => {
    const [a, b, c] = await cluster();
    await waitUntil(
      () => [a, b, c].every((n) => view(n) === "a:true,b:true,c:true"),
      "convergence",
      10_000,
    );
    const got = await post(b.port, "", "GET");
    expect(got.status).toBe(200);
    const ids = (got.body as { members: { instanceId: string }[] }).members.map(
      (m) => m.instanceId,
    );
    expect(ids).toEqual(["b", "a", "c"]);

    const external = createServer(createGossipHandler(b.service, { allowPost: false }));
    await new Promise<void>((resolve) => external.listen(0, "127.0.0.1", resolve));
    try {
      const port = (external.address() as AddressInfo).port;
      const r = await post(port, JSON.stringify(b.service.document()));
      expect(r.status).toBe(405);
      expect((await post(port, "", "GET")).status).toBe(200);
    } finally {
      external.closeAllConnections();
      await new Promise<void>((resolve) => external.close(() => resolve()));
    }
  });

  it("stop() leaves no timers or sockets behind", async () => {
    // Handles of earlier tests' closed servers go away a tick after their close callbacks.
    await waitUntil(
      () => !relevantResources().some((r) => r.startsWith("TCP")),
      "earlier sockets gone",
      5_000,
    );
    const baseline = relevantResources();
    const [a, b, c] = await cluster();
    await waitUntil(
      () => [a, b, c].every((n) => view(n) === "a:true,b:true,c:true"),
      "convergence",
      10_000,
    );
    expect(relevantResources().length).toBeGreaterThan(baseline.length);
    // Services first, servers still up: the services' own sockets and timers must go.
    await Promise.all([a, b, c].map((n) => n.service.stop()));
    const connections = (n: Node) =>
      new Promise<number>((resolve, reject) =>
        n.server.getConnections((err, count) => (err ? reject(err) : resolve(count))),
      );
    await waitUntil(
      async () => (await Promise.all([a, b, c].map(connections))).every((count) => count === 0),
      "no gossip connection left open",
      5_000,
    );
    await waitUntil(
      () =>
        noneBeyond(
          baseline.concat("TCPServerWrap", "TCPServerWrap", "TCPServerWrap"),
          relevantResources(),
        ),
      "no timer or client socket left",
      5_000,
    );
    await Promise.all([a, b, c].map((n) => n.stop()));
    await waitUntil(
      () => noneBeyond(baseline, relevantResources()),
      `resources back to baseline (${baseline.join()})`,
      5_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; now: ${relevantResources().join()}`);
    });
  });
});
