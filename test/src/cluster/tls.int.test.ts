// A three-node cluster with TLS on every channel, its nodes on 127.0.0.1, .2 and .3 as on
// separate machines: replication and gossip run over mutual TLS, so the internal ports let in
// only clients with a certificate from the cluster's CA, and a node whose certificate comes
// from another CA cannot join.
import { readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { ChorusClient, jsonEvent } from "@chorus/client";
import {
  getJson,
  makeTestCertificates,
  startCluster,
  startNode,
  waitFor,
  type TestCertificates,
  type TestCluster,
  type TestNode,
} from "@chorus/testing";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { idsOn } from "./helpers.js";

const HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
let certs: TestCertificates;
let otherCa: TestCertificates;
let cluster: TestCluster;
const clients: ChorusClient[] = [];

beforeAll(async () => {
  [certs, otherCa] = await Promise.all([
    makeTestCertificates({ hosts: HOSTS }),
    makeTestCertificates({ hosts: HOSTS }),
  ]);
  cluster = await startCluster({ size: 3, memDb: true, hosts: HOSTS, tls: certs });
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await cluster?.stop();
  await Promise.all([certs?.remove(), otherCa?.remove()]);
});

function client(): ChorusClient {
  const c = new ChorusClient(`${cluster.connectionString}&operationTimeout=10000`);
  clients.push(c);
  return c;
}

/** An https request; resolves with the status, rejects on a connection or TLS failure. */
function httpsCall(
  url: string,
  options: { method?: string; body?: string; ca: string; cert?: string; key?: string },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: options.method ?? "GET",
        ca: options.ca,
        ...(options.cert !== undefined && { cert: options.cert, key: options.key }),
        headers: options.body === undefined ? {} : { "Content-Type": "application/json" },
        timeout: 5_000,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Opens a wss connection to a node's internal TCP port; resolves once it is open. */
function wssOpen(node: TestNode, tls: { ca: string; cert?: string; key?: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://${node.intTcp.host}:${node.intTcp.port}/`, {
      ...tls,
      handshakeTimeout: 5_000,
    });
    ws.on("open", () => {
      ws.close();
      resolve();
    });
    ws.on("error", reject);
    // A TLS 1.3 server refuses a client certificate after the client thinks it is connected.
    ws.on("close", () => reject(new Error("closed")));
  });
}

const read = (path: string): Promise<string> => readFile(path, "utf8");

describe("a TLS cluster", () => {
  it("elects a leader, replicates, and serves a client that trusts the CA", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    const c = client();
    const events = Array.from({ length: 20 }, (_, i) => jsonEvent({ type: "T", data: { i } }));
    for (const e of events) await c.appendToStream("tls-cluster", e);
    const back = [];
    for await (const e of c.readStream("tls-cluster")) back.push(e.event.id);
    expect(back).toEqual(events.map((e) => e.id));
    // Every node has the committed events (replication over wss).
    const want = JSON.stringify(events.map((e) => e.id));
    await waitFor(
      async () => {
        const all = await Promise.all(cluster.nodes.map((n) => idsOn(n, "tls-cluster", certs.ca)));
        return all.every((ids) => JSON.stringify(ids) === want);
      },
      { timeoutMs: 10_000, message: "every node has the events" },
    );
    // An HTTP write to a follower is forwarded to the leader over https.
    const follower = cluster.nodes[(leader + 1) % 3]!;
    const status = await httpsCall(`https://${follower.httpEndpoint}/streams/tls-forwarded`, {
      method: "POST",
      ca: certs.ca,
      body: JSON.stringify([{ eventId: crypto.randomUUID(), eventType: "F", data: {} }]),
    });
    expect(status).toBe(201);
    // Clients read gossip over external https with the CA alone.
    const gossip = await getJson(`https://${follower.httpEndpoint}/gossip`, 5_000, certs.ca);
    expect((gossip.body as { members: unknown[] }).members).toHaveLength(3);
  });

  it("the internal ports refuse a client without a member certificate", async () => {
    const node = cluster.nodes[0]!;
    const [cert, key, otherCert, otherKey] = await Promise.all([
      read(certs.certFile),
      read(certs.keyFile),
      read(otherCa.certFile),
      read(otherCa.keyFile),
    ]);
    const gossipUrl = `https://${node.intHttp.host}:${node.intHttp.port}/gossip`;
    // A member's certificate gets in: the refusals below are about the client certificate.
    expect(await httpsCall(gossipUrl, { ca: certs.ca, cert, key })).toBe(200);
    await expect(wssOpen(node, { ca: certs.ca, cert, key })).resolves.toBeUndefined();

    await expect(httpsCall(gossipUrl, { ca: certs.ca })).rejects.toThrow();
    await expect(
      httpsCall(gossipUrl, { ca: certs.ca, cert: otherCert, key: otherKey }),
    ).rejects.toThrow();
    await expect(wssOpen(node, { ca: certs.ca })).rejects.toThrow();
    await expect(wssOpen(node, { ca: certs.ca, cert: otherCert, key: otherKey })).rejects.toThrow();
  });

  it("a node with a certificate from another CA cannot join", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    const victim = (leader + 1) % 3;
    const original = cluster.nodes[victim]!;
    const ports = {
      extTcp: original.extTcp.port,
      extHttp: original.extHttp.port,
      intTcp: original.intTcp.port,
      intHttp: original.intHttp.port,
    };
    await cluster.kill(victim);
    // The same address and ports, trusting the cluster's CA, but with a certificate of its own CA.
    const seeds = cluster.nodes.map((n) => `${n.intHttp.host}:${n.intHttp.port}`).join(",");
    const rogue = await startNode({
      memDb: true,
      host: original.intTcp.host,
      ports,
      args: [
        "--cluster-size",
        "3",
        "--gossip-seed",
        seeds,
        "--certificate-file",
        otherCa.certFile,
        "--certificate-private-key-file",
        otherCa.keyFile,
        "--trusted-root-certificates-path",
        certs.caFile,
      ],
    });
    try {
      const c = client();
      for (let i = 0; i < 20; i++) {
        await c.appendToStream("tls-rogue", jsonEvent({ type: "R", data: { i } }));
      }
      // Its gossip to both members was refused (they demand a certificate of their CA).
      await waitFor(() => (rogue.output().match(/"gossip failed"/g)?.length ?? 0) >= 2, {
        timeoutMs: 10_000,
        message: "the rogue node's gossip refused",
      });
      expect(rogue.output()).not.toContain('"cluster formed"');
      const info = await getJson(`https://${rogue.httpEndpoint}/info`, 2_000, otherCa.ca);
      const { state, instanceId } = info.body as { state: string; instanceId: string };
      expect(state).toBe("Unknown");
      // Nor do the members know it: they cannot verify its certificate either.
      const gossip = await getJson(
        `https://${cluster.nodes[leader]!.httpEndpoint}/gossip`,
        2_000,
        certs.ca,
      );
      const members = (gossip.body as { members: { instanceId: string }[] }).members;
      expect(members.map((m) => m.instanceId)).not.toContain(instanceId);
      expect(await idsOn(rogue, "tls-rogue", otherCa.ca)).toBeUndefined();
    } finally {
      await rogue.stop();
    }
    // The member itself comes back and catches up.
    await cluster.restart(victim);
    await waitFor(
      async () => (await idsOn(cluster.nodes[victim]!, "tls-rogue", certs.ca))?.length === 20,
      {
        timeoutMs: 20_000,
        message: "the member rejoins and catches up",
      },
    );
  });
});
