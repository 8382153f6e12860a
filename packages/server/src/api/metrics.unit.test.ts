import { describe, expect, it } from "vitest";
import type { ClusterView, NodeState, RoleChangeCounts } from "../node-types.js";
import type { ConsumerHandle } from "../persistent/group.js";
import { AckTimer, NodeMetrics } from "./metrics.js";

/**
 * Checks a text exposition without prom-client: every line is a comment or a sample in the
 * exposition format, each family has one HELP and one TYPE (before its samples), and each
 * sample belongs to a declared family. Returns the samples, `name{labels}` -> value.
 */
export function parseExposition(text: string): Map<string, number> {
  const sample =
    /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)( -?\d+)?$/;
  const help = new Map<string, number>();
  const type = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (kind === "HELP") help.set(name, (help.get(name) ?? 0) + 1);
      else {
        expect(type.has(name), `TYPE ${name} twice`).toBe(false);
        expect(rest).toMatch(/^(counter|gauge|histogram|summary|untyped)$/);
        type.set(name, rest);
      }
      continue;
    }
    const m = sample.exec(line);
    expect(m, `not a sample line: ${line}`).not.toBeNull();
    const [, name, labels, value] = m as unknown as [string, string, string | undefined, string];
    // Prometheus parses values with Go's ParseFloat: NaN and Inf in any case (prom-client
    // writes "Nan").
    expect(value, line).toMatch(/^(-?\d+(\.\d+)?([eE][-+]?\d+)?|nan|[+-]inf)$/i);
    const family = [...type.keys()].find(
      (f) =>
        f === name ||
        (type.get(f) === "histogram" && /^(_bucket|_sum|_count)$/.test(name.slice(f.length))) ||
        (type.get(f) === "summary" && /^(_sum|_count)$/.test(name.slice(f.length))),
    );
    expect(family, `no TYPE before ${name}`).toBeDefined();
    const key = `${name}${labels ?? ""}`;
    expect(samples.has(key), `${key} twice`).toBe(false);
    samples.set(key, /nan/i.test(value) ? NaN : Number(value.replace(/inf/i, "Infinity")));
  }
  for (const name of type.keys()) expect(help.get(name), `HELP ${name}`).toBe(1);
  return samples;
}

function fakeCluster(epoch: number, counts?: RoleChangeCounts): ClusterView {
  return {
    writeRefusal: () => undefined,
    epoch,
    logEnd: 0,
    epochInfo: () => undefined,
    gossip: undefined as unknown as ClusterView["gossip"],
    ...(counts && { roleChanges: () => counts }),
  };
}

describe("NodeMetrics", () => {
  it("exposes default process metrics in each node's own registry, without clashing", async () => {
    const a = new NodeMetrics(() => undefined);
    const b = new NodeMetrics(() => undefined);
    for (const m of [a, b]) {
      const samples = parseExposition(await m.registry.metrics());
      expect(samples.get("process_cpu_seconds_total")).toBeGreaterThan(0);
      expect(samples.has("nodejs_eventloop_lag_seconds")).toBe(true);
      expect(samples.has("nodejs_heap_size_used_bytes")).toBe(true);
      expect([...samples.keys()].some((k) => k.startsWith("chorus_process_"))).toBe(false);
    }
  });

  it("times appends per interface in a histogram", async () => {
    const m = new NodeMetrics(() => undefined);
    for (let i = 0; i < 3; i++) m.appendDuration.observe({ interface: "native" }, 0.0003);
    m.appendDuration.observe({ interface: "http" }, 20);
    const s = parseExposition(await m.registry.metrics());
    expect(s.get('chorus_append_duration_seconds_count{interface="native"}')).toBe(3);
    expect(s.get('chorus_append_duration_seconds_bucket{le="0.00025",interface="native"}')).toBe(0);
    expect(s.get('chorus_append_duration_seconds_bucket{le="0.0005",interface="native"}')).toBe(3);
    expect(s.get('chorus_append_duration_seconds_bucket{le="10",interface="http"}')).toBe(0);
    expect(s.get('chorus_append_duration_seconds_bucket{le="+Inf",interface="http"}')).toBe(1);
    expect(s.get('chorus_append_duration_seconds_sum{interface="http"}')).toBe(20);
  });

  it("reports the node's role, epoch, elections, leader changes, role restarts and a needed restart when scraped", async () => {
    const m = new NodeMetrics(() => undefined);
    let state: NodeState = "Follower";
    let cluster: ClusterView | undefined = fakeCluster(7, {
      elections: 2,
      leaderChanges: 5,
      roleRestarts: 1,
    });
    let restart: string | undefined = undefined;
    m.node = { state: () => state, cluster: () => cluster, restartNeeded: () => restart };
    let s = parseExposition(await m.registry.metrics());
    expect(s.get("chorus_restart_needed")).toBe(0);
    expect(s.get('chorus_node_role{role="Follower"}')).toBe(1);
    expect(s.get('chorus_node_role{role="Leader"}')).toBe(0);
    expect(s.get('chorus_node_role{role="ShuttingDown"}')).toBe(0);
    expect(s.get("chorus_epoch")).toBe(7);
    expect(s.get("chorus_elections_total")).toBe(2);
    expect(s.get("chorus_leader_changes_total")).toBe(5);
    expect(s.get("chorus_role_restarts_total")).toBe(1);

    state = "Leader";
    cluster = fakeCluster(8, { elections: 3, leaderChanges: 6, roleRestarts: 4 });
    restart = "the store refuses writes: log fsync failed (EIO)";
    s = parseExposition(await m.registry.metrics());
    expect(s.get("chorus_restart_needed")).toBe(1);
    expect(s.get('chorus_node_role{role="Follower"}')).toBe(0);
    expect(s.get('chorus_node_role{role="Leader"}')).toBe(1);
    expect(s.get("chorus_epoch")).toBe(8);
    expect(s.get("chorus_elections_total")).toBe(3);
    expect(s.get("chorus_leader_changes_total")).toBe(6);
    expect(s.get("chorus_role_restarts_total")).toBe(4);

    // A single node: no cluster, no elections.
    cluster = undefined;
    s = parseExposition(await m.registry.metrics());
    expect(s.get("chorus_epoch")).toBe(0);
    expect(s.get("chorus_elections_total")).toBe(0);
  });

  it("exposes log sync durations, at zero before the first sync", async () => {
    const m = new NodeMetrics(() => undefined);
    let s = parseExposition(await m.registry.metrics());
    expect(s.get("chorus_fsync_duration_seconds_count")).toBe(0);
    expect(s.get('chorus_fsync_duration_seconds_bucket{le="+Inf"}')).toBe(0);
    m.fsyncDuration.observe(0.0004);
    m.fsyncDuration.observe(0.3);
    s = parseExposition(await m.registry.metrics());
    expect(s.get("chorus_fsync_duration_seconds_count")).toBe(2);
    expect(s.get("chorus_fsync_duration_seconds_sum")).toBeCloseTo(0.3004, 6);
    expect(s.get('chorus_fsync_duration_seconds_bucket{le="0.0005"}')).toBe(1);
    expect(s.get('chorus_fsync_duration_seconds_bucket{le="+Inf"}')).toBe(2);
  });

  it("exposes replication round trips and each follower's lag, dropping followers gone", async () => {
    const m = new NodeMetrics(() => undefined);
    m.replicationRoundTrip.observe(0.002);
    m.replicationRoundTrip.observe(0.04);
    let lag = [
      { follower: "10.0.0.2:1112", bytes: 0, ms: 0 },
      { follower: "10.0.0.3:1112", bytes: 4096, ms: 1500 },
    ];
    m.replicationLag = () => lag;
    let s = parseExposition(await m.registry.metrics());
    expect(s.get("chorus_replication_round_trip_seconds_count")).toBe(2);
    expect(s.get('chorus_replication_round_trip_seconds_bucket{le="0.0025"}')).toBe(1);
    expect(s.get('chorus_replication_lag_bytes{follower="10.0.0.2:1112"}')).toBe(0);
    expect(s.get('chorus_replication_lag_bytes{follower="10.0.0.3:1112"}')).toBe(4096);
    expect(s.get('chorus_replication_lag_seconds{follower="10.0.0.3:1112"}')).toBe(1.5);

    lag = lag.slice(0, 1);
    s = parseExposition(await m.registry.metrics());
    expect(s.has('chorus_replication_lag_bytes{follower="10.0.0.3:1112"}')).toBe(false);
    expect(s.has('chorus_replication_lag_seconds{follower="10.0.0.3:1112"}')).toBe(false);
    expect(s.get('chorus_replication_lag_bytes{follower="10.0.0.2:1112"}')).toBe(0);
  });

  it("times persistent acks per group from delivery to ack, through the consumer's handle", async () => {
    const m = new NodeMetrics(() => undefined);
    const calls: string[] = [];
    const inner: ConsumerHandle = {
      id: "c1",
      ack: (p) => calls.push(`ack ${p.join(",")}`),
      nack: (p, action) => calls.push(`nack ${p.join(",")} ${action}`),
      close: () => calls.push("close"),
    };
    const timer = m.ackTimer({ streamId: "orders", group: "billing" }, 10);
    const handle = timer.wrap(inner);
    expect(handle.id).toBe("c1");
    timer.delivered([{ position: 10 }, { position: 20 }, { position: 30 }], performance.now());
    handle.ack([10, 20, 99]); // 99 was never delivered here: not timed
    handle.nack([30], "retry", "busy");
    expect(timer.size).toBe(0);
    handle.ack([30]); // nacked: no longer timed
    handle.close();
    expect(calls).toEqual(["ack 10,20,99", "nack 30 retry", "ack 30", "close"]);
    const s = parseExposition(await m.registry.metrics());
    const labels = 'stream="orders",group="billing"';
    expect(s.get(`chorus_persistent_ack_latency_seconds_count{${labels}}`)).toBe(2);
    expect(s.get(`chorus_persistent_ack_latency_seconds_bucket{le="+Inf",${labels}}`)).toBe(2);
  });

  it("an ack timer observes delivery-to-ack time and holds at most its capacity", () => {
    const seen: number[] = [];
    const timer = new AckTimer((seconds) => seen.push(seconds), 2);
    timer.delivered([{ position: 1 }, { position: 2 }], 1000);
    timer.delivered([{ position: 1 }], 1100); // redelivered: the clock restarts
    timer.delivered([{ position: 3 }], 1200); // over capacity: the oldest (2) is forgotten
    expect(timer.size).toBe(2);
    timer.acked([1, 2, 3], 1250);
    expect(seen).toEqual([0.15, 0.05]);
    expect(timer.size).toBe(0);
  });

  it("the exposition check rejects malformed text", () => {
    expect(() => parseExposition("# HELP x y\n# TYPE x gauge\nx{a=b} 1\n")).toThrow();
    expect(() => parseExposition("x 1\n")).toThrow();
    expect(() => parseExposition("# HELP x y\n# TYPE x gauge\n# TYPE x gauge\nx 1\n")).toThrow();
  });
});
