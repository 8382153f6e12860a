// Peer links and disk stalls against a healthy leader: links reset again and again, a link
// that goes silent (blackholed), a leader and a follower whose fdatasync stalls past the
// election timeout. None of them may change the leader; the write checker runs after each.
// Then a leader whose disk stalls for good: it hands leadership over, and writes go on.
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

/** A cluster whose nodes stall their log syncs as a file in their data directory asks. */
async function startStallableCluster(): Promise<TestCluster> {
  // Read by storage/sync-stall.ts in the server processes started below (and only there).
  process.env["CHORUS_TEST_SYNC_STALL"] = "1";
  try {
    return await startCluster({ size: 3 });
  } finally {
    delete process.env["CHORUS_TEST_SYNC_STALL"];
  }
}

/**
 * A stallable cluster (startStallableCluster) with `writerCount` writers whose writes flow:
 * its leader, the leader's epoch, and every node's role-change count (for electionsSince).
 */
async function steadyStallableCluster(writerCount: number) {
  const c = (cluster = await startStallableCluster());
  const w = (writers = startWriters(c, writerCount));
  await writesContinue(w, 100, "writes flowing");
  const leader = await c.leader();
  const epoch = await epochOf(c.nodes[leader]!);
  const marks = c.nodes.map((n) => roleChanges(n).length);
  return { c, w, leader, epoch, marks };
}

/** The value of an unlabelled metric that node `i` of `c` exposes now. */
async function metricOf(c: TestCluster, i: number, name: string): Promise<number> {
  const res = await fetch(`http://${c.nodes[i]!.httpEndpoint}/metrics`, {
    signal: AbortSignal.timeout(5_000),
  });
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(await res.text());
  if (!m) throw new Error(`node ${i} exposes no ${name}`);
  return Number(m[1]);
}

/** Makes each log sync of node `i` take `stallMs` longer from now on; unlink the file returned to stop. */
async function stallSyncs(c: TestCluster, i: number, stallMs: number): Promise<string> {
  const file = join(c.nodes[i]!.dataDir!, "sync-stall-ms");
  await writeFile(file, String(stallMs));
  return file;
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
    // One writer: every write is a lone write, the kind a node may sync inline.
    const { c, w, leader, epoch, marks } = await steadyStallableCluster(1);
    const stallMs = 3 * ELECTION_TIMEOUT_MS;
    const stallFile = await stallSyncs(c, leader, stallMs);
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
  it("a follower whose fdatasync stalls past the election timeout holds up nothing; it catches up after", async () => {
    // One writer: every write is a lone write, which a follower syncs inline while syncs are fast.
    const { c, w, leader, epoch, marks } = await steadyStallableCluster(1);
    const follower = (leader + 1) % 3;
    const stallMs = 3 * ELECTION_TIMEOUT_MS;
    const stallFile = await stallSyncs(c, follower, stallMs);
    const stalledAt = performance.now();
    let during: number;
    try {
      // The leader commits with its own sync and the other follower's: the writes do not wait
      // for the stalled one, not even for its first stall, which holds up its event loop.
      await writesContinue(w, 100, "writes during the stall");
      during = performance.now() - stalledAt;
    } finally {
      await unlink(stallFile);
    }
    expect(during).toBeLessThan(stallMs);
    await writesContinue(w, 50, "writes after the stall");
    await w.stop();
    // Every acknowledged write on every node: the stalled follower woke and caught up.
    await checkHistory(c, w);
    // It did stall: one of its syncs took longer than 1 s.
    const syncs = await metricOf(c, follower, "chorus_fsync_duration_seconds_count");
    const underOneSecond = await metricOf(
      c,
      follower,
      'chorus_fsync_duration_seconds_bucket\\{le="1"\\}',
    );
    expect(syncs - underOneSecond).toBeGreaterThanOrEqual(1);
    // When it woke, its timers ran before the leader's messages waiting in its socket: it may
    // have stood for a pre-vote. Nobody granted one: no candidate, the same leader and epoch.
    const elections = electionsSince(c, marks);
    expect(elections.filter((e) => !e.startsWith(`node ${follower}: preCandidate`))).toEqual([]);
    expect(await c.leader()).toBe(leader);
    expect(await epochOf(c.nodes[leader]!)).toBe(epoch);
  });
});

describe("a leader whose disk stalls for good", () => {
  it("hands leadership over after 4 election timeouts; writes go on at the new leader, none lost", async () => {
    const { c, w, leader, epoch } = await steadyStallableCluster(2);
    // Longer than the test waits for the hand-over: for the cluster, the disk stalls for good.
    const stallMs = 16 * ELECTION_TIMEOUT_MS;
    const stallFile = await stallSyncs(c, leader, stallMs);
    const stalledAt = performance.now();
    let next = -1;
    try {
      await waitFor(
        async () => {
          for (const i of [0, 1, 2]) {
            if (i !== leader && (await c.stateOf(i)) === "Leader") next = i;
          }
          return next >= 0;
        },
        { timeoutMs: stallMs / 2, message: "a follower takes over" },
      );
      const handOverMs = performance.now() - stalledAt;
      expect(handOverMs).toBeGreaterThan(4 * ELECTION_TIMEOUT_MS);
      expect(handOverMs).toBeLessThan(stallMs / 2);
      // What an operator's alert sees: the sync still running on the old leader.
      expect(await metricOf(c, leader, "chorus_fsync_running_seconds")).toBeGreaterThanOrEqual(
        (4 * ELECTION_TIMEOUT_MS) / 1000,
      );
      expect(await metricOf(c, next, "chorus_fsync_running_seconds")).toBeLessThan(1);
      const ready = await fetch(`http://${c.nodes[leader]!.httpEndpoint}/health/ready`, {
        signal: AbortSignal.timeout(5_000),
      });
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { message: string }).message).toMatch(/^the disk stalls/);
      // While the old leader's disk still stalls, the cluster takes writes.
      await writesContinue(w, 100, "writes at the new leader");
      expect(performance.now() - stalledAt).toBeLessThan(stallMs);
    } finally {
      await unlink(stallFile);
    }
    expect(c.nodes[leader]!.output()).toContain("(the disk stalls): handing leadership over");
    expect(await epochOf(c.nodes[next]!)).toBeGreaterThan(epoch);
    // The old leader's stalled sync ends: it follows the new leader and has every write.
    await waitFor(async () => (await c.stateOf(leader)) === "Follower", {
      timeoutMs: 2 * stallMs,
      message: "the old leader follows once its disk answers",
    });
    await writesContinue(w, 50, "writes after the stall");
    await w.stop();
    await checkHistory(c, w);
  });
});
