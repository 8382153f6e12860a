import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./tracing.js";

let node: TestNode;
beforeAll(async () => {
  node = await startNode({ memDb: true });
});
afterAll(async () => {
  await node?.stop();
});

it("the tracing example follows one trace from the writer to the consumer", async () => {
  const lines: string[] = [];
  await run(node.connectionString, (line) => lines.push(line));
  const [delivered, ...trace] = lines;
  const traceparent = /carrying \$traceparent 00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(delivered!);
  expect(traceparent).not.toBeNull();
  const traceId = traceparent![1]!;
  expect(trace.map((l) => l.replace(/ order-\d+/, " order-N"))).toEqual([
    `trace ${traceId}: place order (INTERNAL)`,
    `trace ${traceId}: chorus append order-N (PRODUCER)`,
    `trace ${traceId}: chorus deliver order-N (CONSUMER)`,
    `trace ${traceId}: ship order (INTERNAL)`,
  ]);
});
