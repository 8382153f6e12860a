import type { ResolvedEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";

/** The flags of a node of group `name` in a deployment of `groups`. */
export function partitionArgs(name: string, groups: readonly string[]): string[] {
  return ["--partition", name, "--partitions", groups.join(",")];
}

/** One single-node group per name, in memory; stopped together. */
export async function startGroups(
  groups: readonly string[],
): Promise<{ nodes: Record<string, TestNode>; stop: () => Promise<void> }> {
  const started = await Promise.allSettled(
    groups.map((name) => startNode({ memDb: true, args: partitionArgs(name, groups) })),
  );
  const nodes: Record<string, TestNode> = {};
  const stop = async () => {
    await Promise.allSettled(Object.values(nodes).map((n) => n.stop()));
  };
  started.forEach((r, i) => {
    if (r.status === "fulfilled") nodes[groups[i]!] = r.value;
  });
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { nodes, stop };
}

export async function collect(iterable: AsyncIterable<ResolvedEvent>): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

/** What a promise settles with: its value, or the error it rejects with. */
export function settle(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => v,
    (err: unknown) => err,
  );
}
