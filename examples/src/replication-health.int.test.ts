import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { histogramQuantile, parseSamples, run } from "./replication-health.js";

describe("histogramQuantile", () => {
  it("interpolates within the bucket that holds the rank, as PromQL does", () => {
    const buckets = new Map([
      [0.001, 0],
      [0.01, 50],
      [0.1, 100],
      [Infinity, 100],
    ]);
    expect(histogramQuantile(0.5, buckets)).toBeCloseTo(0.01);
    expect(histogramQuantile(0.25, buckets)).toBeCloseTo(0.0055);
    expect(histogramQuantile(0.99, buckets)).toBeCloseTo(0.0982);
    expect(histogramQuantile(0.99, new Map([[Infinity, 0]]))).toBeNull();
    // Past the highest finite bound: that bound.
    expect(
      histogramQuantile(
        0.99,
        new Map([
          [1, 1],
          [Infinity, 10],
        ]),
      ),
    ).toBe(1);
  });

  it("reads labels with escapes and +Inf from an exposition", () => {
    const s = parseSamples('# HELP x y\nx_bucket{le="+Inf",a="q\\"b"} 3\ny 1.5\n');
    expect(s).toEqual([
      { name: "x_bucket", labels: { le: "+Inf", a: 'q"b' }, value: 3 },
      { name: "y", labels: {}, value: 1.5 },
    ]);
  });
});

describe("the replication health example", () => {
  let cluster: TestCluster;
  let client: ChorusClient;
  let nodes: string[];

  beforeAll(async () => {
    cluster = await startCluster({ size: 3 });
    client = new ChorusClient(cluster.connectionString);
    nodes = cluster.nodes.map((n) => `http://${n.httpEndpoint}`);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  });

  it("finds the leader, its round trip p99 and both followers caught up", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    for (let i = 0; i < 20; i++) {
      await client.appendToStream("health-example", jsonEvent({ type: "Tick", data: { i } }));
    }
    const lines: string[] = [];
    const health = await waitFor(
      async () => {
        lines.length = 0;
        const h = await run({ nodes, maxLagSeconds: 1 }, (line) => lines.push(line));
        return h.healthy && h.followers.every((f) => f.lagBytes === 0) ? h : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100, message: "both followers caught up" },
    );
    expect(health.leader).toBe(nodes[leader]);
    expect(health.followers).toHaveLength(2);
    expect(health.roundTripP99Seconds).toBeGreaterThan(0);
    expect(health.roundTripP99Seconds).toBeLessThanOrEqual(10);
    expect(lines[0]).toMatch(/^leader http:\/\/.* replication round trip p99 \d+\.\d ms$/);
    expect(lines.filter((l) => l.startsWith("follower "))).toHaveLength(2);
  }, 60_000);

  it("flags a follower that stopped once it is behind more than the limit", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    const stopped = (leader + 1) % 3;
    const endpoint = `${cluster.nodes[stopped]!.intTcp.host}:${cluster.nodes[stopped]!.intTcp.port}`;
    await cluster.kill(stopped);
    await client.appendToStream("health-example", jsonEvent({ type: "Tick", data: { late: 1 } }));
    const lines: string[] = [];
    const health = await waitFor(
      async () => {
        lines.length = 0;
        const h = await run({ nodes, maxLagSeconds: 0.5 }, (line) => lines.push(line));
        return h.healthy ? undefined : h;
      },
      { timeoutMs: 15_000, intervalMs: 100, message: "the stopped follower flagged" },
    );
    const lagging = health.followers.filter((f) => !f.healthy);
    expect(lagging.map((f) => f.follower)).toEqual([endpoint]);
    expect(lagging[0]!.lagBytes).toBeGreaterThan(0);
    expect(lagging[0]!.lagSeconds).toBeGreaterThan(0.5);
    expect(
      lines.some((l) => l.startsWith(`follower ${endpoint}`) && l.endsWith("<- LAGGING")),
    ).toBe(true);
  }, 60_000);
});
