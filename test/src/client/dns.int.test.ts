// Discovery through DNS against a real DNS server (dnsmasq) and a real node.
import { ChorusClient, ConnectionSettings, DiscoveryError, jsonEvent } from "@chorus/client";
import {
  startDnsServer,
  startNode,
  waitFor,
  type TestDnsServer,
  type TestNode,
} from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let node: TestNode;
let dns: TestDnsServer;
const clients: ChorusClient[] = [];

beforeAll(async () => {
  node = await startNode({ memDb: true });
  dns = await startDnsServer();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await dns?.stop();
  await node?.stop();
});

function clientFor(name: string, options: { srv?: boolean; maxDiscoverAttempts?: number } = {}) {
  const client = new ChorusClient(
    ConnectionSettings.create()
      .withClusterDns(name, {
        gossipPort: node.extHttp.port,
        dnsServers: [dns.address],
        srv: options.srv ?? false,
      })
      .withMaxDiscoverAttempts(options.maxDiscoverAttempts ?? 3)
      .withDiscoverDelay(20)
      .withGossipTimeout(500)
      .withOperationTimeout(10_000)
      .build(),
  );
  clients.push(client);
  return client;
}

describe("DNS discovery", () => {
  it("uses every A record as a seed, including the ones where nothing runs", async () => {
    // Only 127.0.0.1 runs the node; .2 and .3 refuse.
    await dns.setRecords({
      addresses: { "cluster.test": ["127.0.0.2", "127.0.0.3", "127.0.0.1"] },
    });
    const client = clientFor("cluster.test");
    const result = await client.appendToStream("dns-a", jsonEvent({ type: "T", data: {} }));
    expect(result.nextExpectedVersion).toBe(0n);
    const members = await client.clusterMembers();
    expect(members.map((m) => m.externalHttp?.port)).toEqual([node.extHttp.port]);
  });

  it("follows SRV records _chorus._tcp.NAME to hosts and ports", async () => {
    await dns.setRecords({
      addresses: { "node1.cluster.test": ["127.0.0.1"] },
      srv: {
        "_chorus._tcp.cluster.test": [{ target: "node1.cluster.test", port: node.extHttp.port }],
      },
    });
    const client = new ChorusClient(
      `chorus+srv://cluster.test?dnsServer=${dns.address}&maxDiscoverAttempts=2`,
    );
    clients.push(client);
    const result = await client.appendToStream("dns-srv", jsonEvent({ type: "T", data: {} }));
    expect(result.nextExpectedVersion).toBe(0n);
  });

  it("falls back to TCP when the UDP answer is truncated", async () => {
    // 60 A records do not fit a 512-byte UDP answer; only a TCP retry returns them all,
    // and the node's address is the last one.
    const many = Array.from({ length: 59 }, (_, i) => `127.0.1.${i + 1}`);
    await dns.setRecords({ addresses: { "big.test": [...many, "127.0.0.1"] } });
    const client = clientFor("big.test");
    const result = await client.appendToStream("dns-tcp", jsonEvent({ type: "T", data: {} }));
    expect(result.nextExpectedVersion).toBe(0n);
  });

  it("names an unknown name as such", async () => {
    await dns.setRecords({ addresses: { "cluster.test": ["127.0.0.1"] } });
    const client = clientFor("missing.test", { maxDiscoverAttempts: 1 });
    const error = await client.connect().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(DiscoveryError);
    expect(
      String((error as Error).message) +
        JSON.stringify((error as DiscoveryError).causes.map((c) => String(c.error))),
    ).toMatch(/unknown name missing\.test \(NXDOMAIN/);
  });

  it("re-resolves the name on every discovery round", async () => {
    // First round: the name points where nothing runs; a later round sees the fix.
    await dns.setRecords({ addresses: { "moving.test": ["127.0.0.2"] } });
    const failedRounds: unknown[] = [];
    const client = new ChorusClient(
      ConnectionSettings.create()
        .withClusterDns("moving.test", { gossipPort: node.extHttp.port, dnsServers: [dns.address] })
        .withMaxDiscoverAttempts(1000)
        .withDiscoverDelay(20)
        .withLogger({
          debug: (message) => {
            if (message === "discovery round found no node") failedRounds.push(message);
          },
          info: () => undefined,
          warn: () => undefined,
          error: () => undefined,
        })
        .build(),
    );
    clients.push(client);
    const connected = client.connect();
    await waitFor(() => failedRounds.length >= 1, { message: "a failed discovery round" });
    await dns.setRecords({ addresses: { "moving.test": ["127.0.0.1"] } });
    const member = await connected;
    expect(member.externalHttp?.port).toBe(node.extHttp.port);
    expect(failedRounds.length).toBeGreaterThanOrEqual(1);
  });
});
