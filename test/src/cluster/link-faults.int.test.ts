// Peer links and disk stalls against a healthy leader: links reset again and again, a link
// that goes silent (blackholed), and a leader whose fdatasync stalls past the election
// timeout. None of them may change the leader; the write checker runs after each.
import { unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";
import { epochOf, roleChanges } from "./helpers.js";
import { checkHistory, startWriters, writesContinue, type Writers } from "./write-checker.js";

/** The default --election-timeout-ms t. */
const ELECTION_TIMEOUT_MS = 500;

let cluster: TestCluster | undefined;
let writers: Writers | undefined;

afterEach(async () => {
  await writers?.stop();
  writers = undefined;
  await cluster?.stop();
  cluster = undefined;
});

/** Role changes of every node since `marks` (counts from an earlier call), as text. */
function electionsSince(c: TestCluster, marks: readonly number[]): string[] {
  return c.nodes.flatMap((n, i) =>
    roleChanges(n)
      .slice(marks[i])
      .filter((r) => r.role === "preCandidate" || r.role === "candidate")
      .map((r) => `node ${i}: ${r.role} in epoch ${r.epoch}`),
  );
}

describe("peer links and disk stalls around a healthy leader", () => {
  it("links to and from the leader reset again and again: no leader change, writes go on", async () => {
    const c = (cluster = await startCluster({ size: 3, linkProxies: true }));
    const w = (writers = startWriters(c, 2));
    await writesContinue(w, 100, "writes flowing");
    const leader = await c.leader();
    const epoch = await epochOf(c.nodes[leader]!);
    const followers = [0, 1, 2].filter((i) => i !== leader);
    const links = followers.flatMap((f) => [c.link(leader, f).tcp, c.link(f, leader).tcp]);
    const marks = c.nodes.map((n) => roleChanges(n).length);
    for (let round = 1; round <= 10; round++) {
      // Every link is (back) up, so each reset cuts a live connection.
      await waitFor(() => links.every((p) => p.connections > 0), {
        timeoutMs: 10_000,
        message: `links up before reset ${round}`,
      });
      for (const p of links) p.resetAll();
      await writesContinue(w, 20, `writes after reset ${round}`);
    }
    expect(links.every((p) => p.stats.reset >= 10)).toBe(true);
    expect(electionsSince(c, marks)).toEqual([]);
    expect(await c.leader()).toBe(leader);
    expect(await epochOf(c.nodes[leader]!)).toBe(epoch);
    await w.stop();
    await checkHistory(c, w);
  });

  it("a blackholed link is terminated after its keepalive deadline and opens again after heal", async () => {
    const c = (cluster = await startCluster({ size: 3, linkProxies: true }));
    const w = (writers = startWriters(c, 1));
    await writesContinue(w, 50, "writes flowing");
    const leader = await c.leader();
    const follower = (leader + 1) % 3;
    const proxy = c.link(leader, follower).tcp;
    const accepted = proxy.stats.accepted;
    proxy.blackhole();
    // No pong comes back: after 2t the leader terminates the link and dials again (the proxy
    // takes the connection and holds it).
    await waitFor(() => proxy.stats.accepted > accepted, {
      timeoutMs: 10_000,
      message: "the leader gives up the silent link and reconnects",
    });
    expect(c.nodes[leader]!.output()).toContain("peer link silent past its deadline");
    await writesContinue(w, 20, "writes go on with the other follower");
    const reconnected = proxy.stats.accepted;
    proxy.heal();
    // The follower hears the leader again over a new link.
    const bytesBefore = proxy.stats.upstreamBytes;
    await waitFor(async () => (await c.stateOf(follower)) === "Follower", {
      timeoutMs: 20_000,
      message: "the follower follows again",
    });
    await writesContinue(w, 20, "writes after heal");
    expect(proxy.stats.upstreamBytes).toBeGreaterThan(bytesBefore);
    expect(proxy.stats.accepted).toBeGreaterThanOrEqual(reconnected);
    expect(await c.leader()).toBe(leader);
    await w.stop();
    await checkHistory(c, w);
  });

  it("a leader whose fdatasync stalls past the election timeout keeps its followers", async () => {
    // Read by storage/sync-stall.ts in the server processes started below (and only there).
    process.env["CHORUS_TEST_SYNC_STALL"] = "1";
    try {
      cluster = await startCluster({ size: 3 });
    } finally {
      delete process.env["CHORUS_TEST_SYNC_STALL"];
    }
    const c = cluster;
    // One writer: every write is a lone write, the kind a node may sync inline.
    const w = (writers = startWriters(c, 1));
    await writesContinue(w, 100, "writes flowing");
    const leader = await c.leader();
    const epoch = await epochOf(c.nodes[leader]!);
    const marks = c.nodes.map((n) => roleChanges(n).length);
    const stallFile = join(c.nodes[leader]!.dataDir!, "sync-stall-ms");
    const stallMs = 3 * ELECTION_TIMEOUT_MS;
    await writeFile(stallFile, String(stallMs));
    const stalledAt = performance.now();
    try {
      // Each acknowledgement now waits for one stalled sync of the leader: three of them
      // span at least two whole stalls.
      await writesContinue(w, 3, "writes through the stalls");
    } finally {
      await unlink(stallFile);
    }
    expect(performance.now() - stalledAt).toBeGreaterThan(1.5 * stallMs);
    await writesContinue(w, 50, "writes after the stall");
    expect(electionsSince(c, marks)).toEqual([]);
    expect(await c.leader()).toBe(leader);
    expect(await epochOf(c.nodes[leader]!)).toBe(epoch);
    await w.stop();
    await checkHistory(c, w);
  });
});
