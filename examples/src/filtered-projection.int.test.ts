import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./filtered-projection.js";

let node: TestNode;
beforeAll(async () => {
  node = await startNode({ memDb: true });
});
afterAll(async () => {
  await node?.stop();
});

it("the filtered projection sees only its events and resumes where it stopped", async () => {
  const lines: string[] = [];
  await run(node.connectionString, (line) => lines.push(line));
  expect(lines).toEqual([
    "first run applied 8 events", // 4 orders x (placed, shipped)
    "second run applied 4 events", // only the 2 new orders
    "placed 6, shipped 6",
  ]);
});
