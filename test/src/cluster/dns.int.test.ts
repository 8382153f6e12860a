// A three-node cluster whose nodes find each other through DNS (--cluster-dns), not seeds:
// dnsmasq answers cluster.test -> 127.0.0.1, 127.0.0.2, 127.0.0.3; node i listens on
// 127.0.0.i with the same ports as the others, as nodes behind one DNS name would.
import { ChorusClient, jsonEvent } from "@chorus/client";
import {
  freePortsOnAll,
  retryWhilePortTaken,
  startDnsServer,
  startNode,
  waitFor,
  type TestDnsServer,
  type TestNode,
} from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { idsOn } from "./helpers.js";

const HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"] as const;
const NAME = "cluster.test";

let dns: TestDnsServer | undefined;
const nodes: TestNode[] = [];
let client: ChorusClient | undefined;

async function stateOf(node: TestNode): Promise<string | undefined> {
  try {
    const res = await fetch(`http://${node.httpEndpoint}/info`, {
      signal: AbortSignal.timeout(1_000),
    });
    const info = (await res.json()) as { state?: string };
    return info.state;
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  dns = await startDnsServer({ addresses: { [NAME]: [...HOSTS] } });
  // Ports picked free are bound by the nodes later; another process may take one meanwhile.
  const extHttp = await retryWhilePortTaken(async () => {
    const [extTcp, extHttp, intTcp, intHttp] = (await freePortsOnAll(4, HOSTS)) as [
      number,
      number,
      number,
      number,
    ];
    const started = await Promise.allSettled(
      HOSTS.map((host) =>
        startNode({
          host,
          ports: { extTcp, extHttp, intTcp, intHttp },
          args: [
            "--cluster-size",
            "3",
            "--discover-via-dns=true",
            "--cluster-dns",
            NAME,
            "--cluster-gossip-port",
            String(intHttp),
            "--dns-server",
            (dns as TestDnsServer).address,
          ],
        }),
      ),
    );
    const up = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) {
      await Promise.allSettled(up.map((n) => n.stop()));
      throw failed.reason;
    }
    nodes.push(...up);
    return extHttp;
  });
  client = new ChorusClient(
    `chorus+discover://${HOSTS.map((h) => `${h}:${extHttp}`).join(",")}?tls=false`,
  );
}, 60_000);

afterAll(async () => {
  await client?.close();
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await dns?.stop();
});

describe("DNS discovery", () => {
  it("elects one leader and two followers from the DNS name alone", async () => {
    const states = await waitFor(
      async () => {
        const s = await Promise.all(nodes.map(stateOf));
        const leaders = s.filter((x) => x === "Leader").length;
        const followers = s.filter((x) => x === "Follower").length;
        return leaders === 1 && followers === 2 ? s : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, message: "one Leader and two Followers" },
    );
    expect(states.filter((s) => s === "Leader")).toHaveLength(1);
    expect(states.filter((s) => s === "Follower")).toHaveLength(2);
    // Every node got its peers from DNS (there are no --gossip-seed flags to get them from).
    const seeds = HOSTS.map((h) => `${h}:${(nodes[0] as TestNode).intHttp.port}`).join(",");
    for (const node of nodes) {
      expect(node.output()).toContain("DNS discovery: gossip seeds");
      expect(node.output()).toContain(seeds);
    }
  }, 30_000);

  it("takes a client's append, served afterwards by every node", async () => {
    const event = jsonEvent({ type: "Discovered", data: { via: "dns" } });
    await (client as ChorusClient).appendToStream("dns-discovery", event);
    await waitFor(
      async () => {
        for (const node of nodes) {
          const ids = await idsOn(node, "dns-discovery");
          if (ids?.length !== 1 || ids[0] !== event.id) return false;
        }
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 50, message: "the event served by every node" },
    );
  }, 30_000);
});
