import { ChorusClient } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { main, tenantStreams } from "./multi-tenant.js";

const GROUPS = ["p1", "p2"];
const nodes: Record<string, TestNode> = {};

beforeAll(async () => {
  await Promise.all(
    GROUPS.map(async (name) => {
      nodes[name] = await startNode({
        memDb: true,
        args: ["--partition", name, "--partitions", GROUPS.join(",")],
      });
    }),
  );
});
afterAll(async () => {
  await Promise.allSettled(Object.values(nodes).map((n) => n.stop()));
});

async function streamsOf(name: string): Promise<Set<string>> {
  const client = new ChorusClient(nodes[name]!.connectionString);
  try {
    const streams = new Set<string>();
    for await (const e of client.readAll()) streams.add(e.event.streamId);
    return streams;
  } finally {
    await client.close();
  }
}

it("keeps each tenant's streams together in one group and spreads the tenants over the groups", async () => {
  const lines: string[] = [];
  const summary = await main({
    partitions: Object.fromEntries(GROUPS.map((g) => [g, nodes[g]!.connectionString])),
    tenants: 8,
    ordersPerTenant: 3,
    runId: "t",
    log: (line) => lines.push(line),
  });
  const held = Object.fromEntries(
    await Promise.all(GROUPS.map(async (g) => [g, await streamsOf(g)] as const)),
  );
  for (const [tenant, t] of Object.entries(summary.tenants)) {
    // Every order and the ledger are in the tenant's group, and only there.
    const streams = [0, 1, 2].map((n) => tenantStreams.order(tenant, n));
    streams.push(tenantStreams.ledger(tenant));
    for (const stream of streams) {
      expect(held[t.partition]!.has(stream), `${stream} in ${t.partition}`).toBe(true);
      for (const other of GROUPS.filter((g) => g !== t.partition))
        expect(held[other]!.has(stream), `${stream} not in ${other}`).toBe(false);
    }
    expect(t.seenIn).toEqual([t.partition]);
    expect(t.ordersSeen).toBe(3);
  }
  // Totals: tenant k's orders are 10(k+1), 10(k+1)+1, 10(k+1)+2.
  for (let k = 0; k < 8; k++) expect(summary.tenants[`t-${k}`]!.total).toBe(30 * (k + 1) + 3);
  // Both groups hold tenants.
  expect(GROUPS.every((g) => (summary.perPartition[g] ?? 0) > 0)).toBe(true);
  expect(lines.at(-1)).toMatch(/^tenants per group: p1 \d+, p2 \d+$/);
});
