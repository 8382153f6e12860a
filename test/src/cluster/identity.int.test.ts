// Voter identity: the voters a cluster formed with are kept in each disk node's hard state, so
// a node whose internal endpoint moved (an IP change) can neither join under another name nor
// make the others count a different set of voters.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, startNode, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { afterAll, describe, expect, it } from "vitest";

let cluster: TestCluster | undefined;
let moved: TestNode | undefined;
let client: ChorusClient | undefined;

afterAll(async () => {
  await client?.close();
  await moved?.stop();
  await cluster?.stop();
});

/** The voters of every "cluster formed" line a node logged, oldest first. */
function formedVoters(node: TestNode): string[][] {
  return node
    .output()
    .split("\n")
    .filter((line) => line.includes('"cluster formed"'))
    .map((line) => (JSON.parse(line) as { voters: string[] }).voters);
}

describe("voter identity", () => {
  it("a node whose internal endpoint moved is refused; the others keep their voters", async () => {
    cluster = await startCluster({ size: 3 });
    client = new ChorusClient(cluster.connectionString);
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    await client.appendToStream("identity", jsonEvent({ type: "T", data: { i: 0 } }));
    const [victim, witness] = [0, 1, 2].filter((i) => i !== leader) as [number, number];
    const original = formedVoters(cluster.nodes[witness]!)[0];
    expect(original).toHaveLength(3);

    // The victim comes back on other ports with its data directory: a moved endpoint.
    const dataDir = cluster.nodes[victim]!.dataDir;
    expect(dataDir).toBeDefined();
    await cluster.kill(victim);
    const seeds = cluster.nodes.map((n) => `${n.intHttp.host}:${n.intHttp.port}`).join(",");
    moved = await startNode({
      dataDir: dataDir!,
      args: ["--cluster-size", "3", "--gossip-seed", seeds],
    });
    await waitFor(async () => moved!.output().includes("cannot take part in its cluster"), {
      timeoutMs: 15_000,
      message: "the moved node refuses to take part",
    });
    expect(moved.output()).toContain("is not among the voters it formed its cluster with");
    expect(formedVoters(moved)).toEqual([]);

    // A voter that restarts meanwhile (gossip now shows the moved endpoint) forms with the
    // voters it had, and the cluster keeps taking writes with its two members.
    await cluster.kill(witness);
    await cluster.restart(witness);
    await waitFor(async () => formedVoters(cluster!.nodes[witness]!).length >= 2, {
      timeoutMs: 15_000,
      message: "the restarted voter formed again",
    });
    expect(formedVoters(cluster.nodes[witness]!).at(-1)).toEqual(original);
    await client.appendToStream("identity", jsonEvent({ type: "T", data: { i: 1 } }));
  });
});
