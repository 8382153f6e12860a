// /metrics of a real three-node cluster, checked by Prometheus' own `promtool check metrics`,
// with the replication and persistent-ack series an operator alerts on.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metricSample } from "./helpers.js";

const PROMTOOL = "/usr/bin/promtool";
const PROMTOOL_TIMEOUT_MS = 20_000;
const STREAM = "promtool-orders";
const EVENTS = 30;

// CI installs promtool (.ci/run); elsewhere the test is skipped when it is missing.
const missing = !existsSync(PROMTOOL) && process.env.CI !== "true";
const title = missing
  ? `/metrics checked by promtool (skipped: ${PROMTOOL} not found; apt-get install prometheus)`
  : "/metrics checked by promtool";

/** `promtool check metrics` on `text` (stdin): its exit code and everything it printed. */
function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return promtool(["check", "metrics"], text);
}

function promtool(args: string[], input = ""): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, args, {
      stdio: ["pipe", "pipe", "pipe"],
      timeout: PROMTOOL_TIMEOUT_MS,
    });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== null) reject(new Error(`promtool ended by ${signal}: ${output}`));
      else resolve({ code, output });
    });
    child.stdin.on("error", reject);
    child.stdin.end(input);
  });
}

async function scrape(node: TestNode): Promise<string> {
  const res = await fetch(`http://${node.httpEndpoint}/metrics`, {
    signal: AbortSignal.timeout(10_000),
  });
  expect(res.status).toBe(200);
  return res.text();
}

const internalEndpoint = (n: TestNode): string => `${n.intTcp.host}:${n.intTcp.port}`;

describe.skipIf(missing)(title, () => {
  let cluster: TestCluster;
  let client: ChorusClient;

  beforeAll(async () => {
    cluster = await startCluster({ size: 3 });
    client = new ChorusClient(cluster.connectionString);
  });

  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  });

  it("leader and follower expositions pass promtool and carry the replication and ack series", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    const followers = [0, 1, 2].filter((i) => i !== leader);

    for (let i = 0; i < EVENTS; i++) {
      await client.appendToStream(STREAM, jsonEvent({ type: "Ordered", data: { i } }));
    }
    const ps = client.persistentSubscriptions;
    const group = `billing-${randomUUID()}`; // a group of its own, should the test be retried
    await ps.create(STREAM, group, { startFrom: "start" });
    const sub = ps.subscribe(STREAM, group, { bufferSize: 10 });
    let handled = 0;
    for await (const e of sub) {
      await sub.ack(e);
      if (++handled === EVENTS) break;
    }

    const leaderNode = cluster.nodes[leader]!;
    const ackCount = `chorus_persistent_ack_latency_seconds_count{stream="${STREAM}",group="${group}"}`;
    const lag = (metric: string, f: number) =>
      `${metric}{follower="${internalEndpoint(cluster.nodes[f]!)}"}`;
    // Idle now: both followers acknowledge the leader's whole log, so their lag drops to 0.
    const text = await waitFor(
      async () => {
        const t = await scrape(leaderNode);
        const caughtUp = followers.every(
          (f) =>
            metricSample(t, lag("chorus_replication_lag_bytes", f)) === 0 &&
            metricSample(t, lag("chorus_replication_lag_seconds", f)) === 0,
        );
        return caughtUp ? t : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100, message: "both followers' lag at 0 on the leader" },
    );
    expect(metricSample(text, "chorus_replication_round_trip_seconds_count")).toBeGreaterThan(0);
    expect(metricSample(text, "chorus_replication_round_trip_seconds_sum")).toBeGreaterThan(0);
    expect(metricSample(text, ackCount)).toBeGreaterThanOrEqual(EVENTS);
    expect(metricSample(text, 'chorus_node_role{role="Leader"}')).toBe(1);
    // One lag series per follower, none for the leader itself.
    const lagSeries = text.split("\n").filter((l) => l.startsWith("chorus_replication_lag_bytes{"));
    expect(lagSeries).toHaveLength(2);
    expect(metricSample(text, lag("chorus_replication_lag_bytes", leader))).toBeUndefined();

    const leaderCheck = await promtoolCheck(text);
    expect(leaderCheck.output).toBe("");
    expect(leaderCheck.code).toBe(0);

    // A follower measures no replication (it does not lead) and still passes promtool.
    const follower = cluster.nodes[followers[0]!]!;
    const followerText = await scrape(follower);
    expect(metricSample(followerText, 'chorus_node_role{role="Follower"}')).toBe(1);
    expect(metricSample(followerText, "chorus_replication_round_trip_seconds_count")).toBe(0);
    expect(followerText).not.toMatch(/^chorus_replication_lag_bytes\{/m);
    const followerCheck = await promtoolCheck(followerText);
    expect(followerCheck.output).toBe("");
    expect(followerCheck.code).toBe(0);
  }, 90_000);

  it("a follower that stops shows a growing lag on the leader; the other stays caught up", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    const [gone, alive] = [0, 1, 2].filter((i) => i !== leader) as [number, number];
    await cluster.kill(gone);
    for (let i = 0; i < 5; i++) {
      await client.appendToStream(STREAM, jsonEvent({ type: "Ordered", data: { after: i } }));
    }
    const leaderNode = cluster.nodes[leader]!;
    const of = (metric: string, f: number) =>
      `${metric}{follower="${internalEndpoint(cluster.nodes[f]!)}"}`;
    const first = await waitFor(
      async () => {
        const t = await scrape(leaderNode);
        const ok =
          (metricSample(t, of("chorus_replication_lag_bytes", gone)) ?? 0) > 0 &&
          metricSample(t, of("chorus_replication_lag_bytes", alive)) === 0;
        return ok ? t : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50, message: "the stopped follower's lag on the leader" },
    );
    const firstSeconds = metricSample(first, of("chorus_replication_lag_seconds", gone))!;
    expect(firstSeconds).toBeGreaterThan(0);
    expect(metricSample(first, of("chorus_replication_lag_seconds", alive))).toBe(0);
    // The stopped follower is still a member: its series stays, and its age keeps growing.
    await waitFor(
      async () => {
        const t = await scrape(leaderNode);
        return (
          (metricSample(t, of("chorus_replication_lag_seconds", gone)) ?? 0) >= firstSeconds + 0.2
        );
      },
      { timeoutMs: 10_000, intervalMs: 50, message: "the stopped follower's lag growing" },
    );
    const check = await promtoolCheck(await scrape(leaderNode));
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
  }, 60_000);

  it("every sample query in docs/metrics.md is valid PromQL", async () => {
    const doc = await readFile(new URL("../../../docs/metrics.md", import.meta.url), "utf8");
    const queries = [...doc.matchAll(/```promql\n([\s\S]*?)```/g)].flatMap((m) =>
      m[1]!.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")),
    );
    expect(queries.length).toBeGreaterThanOrEqual(10);
    const dir = await mkdtemp(join(tmpdir(), "chorus-promql-"));
    try {
      const rules = queries.map(
        (q, i) => `      - record: doc_query_${i}\n        expr: ${JSON.stringify(q)}`,
      );
      const file = join(dir, "queries.yml");
      await writeFile(file, `groups:\n  - name: docs\n    rules:\n${rules.join("\n")}\n`);
      const check = await promtool(["check", "rules", file]);
      expect(check.output).toContain(`${queries.length} rules found`);
      expect(check.code).toBe(0);
      // The check does refuse a broken query.
      await writeFile(
        file,
        "groups:\n  - name: docs\n    rules:\n      - record: x\n        expr: 'rate(x[5m]'\n",
      );
      expect((await promtool(["check", "rules", file])).code).not.toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the example alerting rules are valid and fire as their unit tests expect", async () => {
    const dir = new URL("../../../examples/prometheus/", import.meta.url).pathname;
    const check = await promtool(["check", "rules", join(dir, "chorus-alerts.yml")]);
    expect(check.output).toContain("SUCCESS: 4 rules found");
    expect(check.code).toBe(0);
    const test = await promtool(["test", "rules", join(dir, "chorus-alerts.test.yml")]);
    expect(test.output).toContain("SUCCESS");
    expect(test.code).toBe(0);
  });

  it("the promtool check fails on a lint problem and on a malformed exposition", async () => {
    const lint = await promtoolCheck("# HELP x_total a gauge\n# TYPE x_total gauge\nx_total 1\n");
    expect(lint.code).not.toBe(0);
    expect(lint.output).toMatch(/x_total/);
    const broken = await promtoolCheck("# TYPE x gauge\nx{a=b} 1\n");
    expect(broken.code).not.toBe(0);
  });
});
