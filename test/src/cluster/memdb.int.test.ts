// A three-voter --mem-db cluster whose nodes restart empty: a restarted voter recovers from
// the leader before it votes or counts, and no acknowledged write is lost on the way.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metricSample } from "../server/helpers.js";
import { idsOn } from "./helpers.js";

let cluster: TestCluster;
let client: ChorusClient;
const written: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ size: 3, memDb: true });
  client = new ChorusClient(cluster.connectionString);
});

afterAll(async () => {
  await client?.close();
  await cluster?.stop();
});

async function appendSome(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const event = jsonEvent({ type: "Counted", data: { i: written.length } });
    await client.appendToStream("memdb-counter", event);
    written.push(event.id);
  }
}

/** Waits until node `index` reports `state` in /info. */
async function waitForState(index: number, state: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await cluster.stateOf(index)) === state, {
    timeoutMs,
    intervalMs: 50,
    message: `node ${index} ${state}`,
  });
}

/** Waits until node `index` serves exactly what was written. */
async function waitForAll(index: number): Promise<void> {
  await waitFor(
    async () => {
      const ids = await idsOn(cluster.nodes[index]!, "memdb-counter");
      return ids !== undefined && ids.join() === written.join();
    },
    { timeoutMs: 20_000, intervalMs: 100, message: `node ${index} serves all ${written.length}` },
  );
}

describe("--mem-db voters that restart empty", () => {
  it("a new in-memory cluster elects a leader once every voter is up", async () => {
    const leader = await cluster.leader({ timeoutMs: 20_000 });
    for (let i = 0; i < 3; i++) if (i !== leader) await waitForState(i, "Follower");
    await appendSome(100);

    // The metrics an operator alerts on: role, epoch, elections, leader changes, append latency.
    const scrapes = await Promise.all(
      cluster.nodes.map(async (n) => (await fetch(`http://${n.httpEndpoint}/metrics`)).text()),
    );
    let elections = 0;
    for (const [i, text] of scrapes.entries()) {
      const role = i === leader ? "Leader" : "Follower";
      expect(metricSample(text, `chorus_node_role{role="${role}"}`), `node ${i}`).toBe(1);
      expect(metricSample(text, 'chorus_node_role{role="CatchingUp"}'), `node ${i}`).toBe(0);
      expect(metricSample(text, "chorus_epoch"), `node ${i}`).toBeGreaterThanOrEqual(1);
      expect(metricSample(text, "chorus_leader_changes_total"), `node ${i}`).toBeGreaterThanOrEqual(
        1,
      );
      elections += metricSample(text, "chorus_elections_total") ?? 0;
    }
    expect(elections).toBeGreaterThanOrEqual(1);
    expect(
      metricSample(scrapes[leader]!, 'chorus_append_duration_seconds_count{interface="native"}'),
    ).toBeGreaterThanOrEqual(100);
  });

  it("a restarted follower comes back empty, catches up, and then counts again", async () => {
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    await cluster.kill(follower);
    await appendSome(50); // committed by the two that remain
    await cluster.restart(follower);
    await waitForState(follower, "Follower");
    await waitForAll(follower);
    // The leader still leads: a recovering node does not stand or disrupt it.
    expect(await cluster.leader()).toBe(leader);
  });

  it("the old leader, killed and restarted empty, recovers under the new one", async () => {
    const leader = await cluster.leader();
    await cluster.kill(leader);
    const next = await cluster.leader({ timeoutMs: 20_000 });
    expect(next).not.toBe(leader);
    await appendSome(50);
    await cluster.restart(leader);
    await waitForState(leader, "Follower");
    await waitForAll(leader);
    // Every node holds every acknowledged write, once.
    for (let i = 0; i < 3; i++) await waitForAll(i);
  });
});
