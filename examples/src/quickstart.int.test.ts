import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./quickstart.js";

let node: TestNode;
beforeAll(async () => {
  node = await startNode({ memDb: true });
});
afterAll(async () => {
  await node?.stop();
});

it("the quick-start example runs end to end against a real node", async () => {
  const lines: string[] = [];
  await run(node.connectionString, (line) => lines.push(line));
  expect(lines[0]).toMatch(/^appended revision 0 at position \d+$/);
  expect(lines).toContain("stale write rejected: expected 0, actual 1");
  expect(lines.filter((l) => l.startsWith("read "))).toHaveLength(2);
  expect(lines.filter((l) => l.startsWith("subscription ")).map((l) => l.split(": ")[1])).toEqual([
    "OrderPlaced",
    "OrderPaid",
    "OrderShipped",
  ]);
});
