import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { main } from "./partitioned-consumers.js";

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

it("one worker handles the orders of every group through one $all group, acknowledging each in its group", async () => {
  const lines: string[] = [];
  const summary = await main({
    partitions: Object.fromEntries(GROUPS.map((g) => [g, nodes[g]!.connectionString])),
    tenants: 8,
    log: (line) => lines.push(line),
  });
  // Every order handled once, from both groups.
  expect(Object.values(summary.handled).reduce((a, b) => a + b, 0)).toBe(8);
  expect(GROUPS.every((g) => (summary.handled[g] ?? 0) > 0)).toBe(true);
  // Each group acknowledged exactly its own orders.
  for (const g of GROUPS) expect(summary.ackedPerPartition[g]).toBe(summary.handled[g]);
  expect(lines.filter((l) => l.startsWith("invoice "))).toHaveLength(8);
});
