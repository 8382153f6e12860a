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

interface TreeNode {
  label: string;
  children: TreeNode[];
}

/** Parses the printed tree (two spaces per level) back into nodes; labels without order-N. */
function parseTree(lines: readonly string[]): TreeNode[] {
  const roots: TreeNode[] = [];
  const path: TreeNode[] = [];
  for (const line of lines) {
    const depth = (line.length - line.trimStart().length) / 2;
    expect(Number.isInteger(depth) && depth <= path.length).toBe(true);
    const node = { label: line.trim().replace(/ order-\d+/, " order-N"), children: [] };
    if (depth === 0) roots.push(node);
    else path[depth - 1]!.children.push(node);
    path.length = depth;
    path.push(node);
  }
  return roots;
}

/** A node with its children sorted by label (consumers run at once: either may start first). */
function sorted(n: TreeNode): TreeNode {
  return {
    label: n.label,
    children: n.children.map(sorted).sort((a, b) => a.label.localeCompare(b.label)),
  };
}

it("the tracing example prints one trace from the writer to both consumers as a tree", async () => {
  const lines: string[] = [];
  await run(node.connectionString, (line) => lines.push(line));
  const at = lines.findIndex((l) => l.startsWith("trace "));
  const deliveries = lines.slice(0, at).sort();
  expect(deliveries).toHaveLength(2);
  const ids = deliveries.map((l) => {
    const m =
      /^(billing|shipping): OrderPlaced carrying \$traceparent 00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(
        l,
      );
    expect(m, l).not.toBeNull();
    return m![2]!;
  });
  // Both consumers got the writer's trace, and the tree is that trace.
  const traceId = ids[0]!;
  expect(ids[1]).toBe(traceId);
  expect(lines[at]).toBe(`trace ${traceId}:`);
  // The tree lines are indented by two spaces under the header.
  const tree = lines.slice(at + 1);
  expect(tree.every((l) => l.startsWith("  "))).toBe(true);
  const roots = parseTree(tree.map((l) => l.slice(2)));
  // One root: the writer's span; the append under it; both deliveries under the append.
  expect(roots).toHaveLength(1);
  expect(sorted(roots[0]!)).toEqual({
    label: "place order (INTERNAL)",
    children: [
      {
        label: "chorus append order-N (PRODUCER)",
        children: [
          {
            label: "chorus deliver order-N (CONSUMER, catchUp)",
            children: [{ label: "ship order (INTERNAL)", children: [] }],
          },
          {
            label: "chorus deliver order-N (CONSUMER, persistent group billing)",
            children: [
              {
                label: "bill order (INTERNAL)",
                children: [{ label: "chorus ack order-N (CLIENT)", children: [] }],
              },
            ],
          },
        ],
      },
    ],
  });
});
