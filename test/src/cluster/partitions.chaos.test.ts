// A three-node cluster on 127.0.0.1, .2 and .3 with a fault proxy on every node-to-node link
// (startCluster's linkProxies): partitions and a follower's power loss under load, each
// followed by the write checker of quality.md (write-checker.ts).
import { open, readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";
import { append, jsonEvent, RawClient } from "../server/helpers.js";
import { epochOf, idsOn } from "./helpers.js";
import {
  checkHistory,
  checkOneLeaderPerEpoch,
  startWriters,
  writesContinue,
  type Writers,
} from "./write-checker.js";

/** The election timeout's upper bound: twice the default --election-timeout-ms. */
const ELECTION_TIMEOUT_MAX_MS = 1_000;

let cluster: TestCluster | undefined;
let writers: Writers | undefined;

afterEach(async () => {
  await writers?.stop();
  writers = undefined;
  await cluster?.stop();
  cluster = undefined;
});

async function start(): Promise<{ c: TestCluster; w: Writers; leader: number }> {
  const c = (cluster = await startCluster({ size: 3, linkProxies: true }));
  const w = (writers = startWriters(c, 3));
  await writesContinue(w, 100, "writes flowing");
  return { c, w, leader: await c.leader() };
}

async function waitForState(c: TestCluster, index: number, state: string): Promise<void> {
  await waitFor(async () => (await c.stateOf(index)) === state, {
    timeoutMs: 20_000,
    message: `node ${index} is ${state}`,
  });
}

/**
 * Power loss after a SIGKILL: cuts the node's log back to the durable position its checkpoint
 * records (what was fsync'd), dropping any write that had reached the page cache only, and
 * leaves a torn record after it, as a write cut short by the power going off.
 */
async function cutToLastSync(dataDir: string): Promise<{ durable: number; droppedBytes: number }> {
  const { segmentBytes } = JSON.parse(await readFile(join(dataDir, "log.json"), "utf8")) as {
    segmentBytes: number;
  };
  const durable = (await readFile(join(dataDir, "checkpoint"))).readDoubleLE(0);
  const segments = (await readdir(dataDir)).filter((n) => /^chunk-\d{6}\.log$/.test(n)).sort();
  const last = Math.floor(durable / segmentBytes);
  let end = 0;
  for (const [i, name] of segments.entries()) {
    const path = join(dataDir, name);
    end = i * segmentBytes + (await stat(path)).size;
    if (i > last) await unlink(path);
  }
  const fh = await open(join(dataDir, segments[last] ?? segments[segments.length - 1]!), "r+");
  try {
    const offset = durable - last * segmentBytes;
    await fh.truncate(offset);
    // The torn record: a header's worth of bytes that never made it whole.
    if (offset + 13 <= segmentBytes) await fh.write(Buffer.alloc(13, 0xab), 0, 13, offset);
  } finally {
    await fh.close();
  }
  return { durable, droppedBytes: end - durable };
}

describe("three-node cluster under partitions", () => {
  it("a leader cut off from both followers stops acknowledging; the majority goes on; it rejoins", async () => {
    const { c, w, leader } = await start();
    const others = [0, 1, 2].filter((i) => i !== leader);
    const oldNode = c.nodes[leader]!;
    const pinned = await RawClient.connect(`ws://${oldNode.extTcp.host}:${oldNode.extTcp.port}/`);
    const cutAt = performance.now();
    c.partition([leader], others);
    // An append that reaches the isolated leader: it writes it, can never commit it, and
    // must not acknowledge it.
    const lost = jsonEvent("Isolated", {});
    const answer = append(pinned, "isolated", [lost]).finally(() => pinned.close());
    // Check-quorum: the old leader steps down within the election timeout (plus a tick,
    // and the poll of its state on a loaded machine).
    await waitFor(async () => (await c.stateOf(leader)) !== "Leader", {
      timeoutMs: 10_000,
      intervalMs: 10,
      message: "the isolated leader steps down",
    });
    const stepDownMs = performance.now() - cutAt;
    expect(stepDownMs).toBeLessThan(ELECTION_TIMEOUT_MAX_MS + 1_000);
    const reply = await answer;
    expect(reply.body).toBe("notHandled");
    // The majority elects a new leader and the writers carry on there.
    const next = await c.leader({ timeoutMs: 20_000 });
    expect(others).toContain(next);
    await writesContinue(w, 100, "writes continue on the majority");
    c.heal();
    // The old leader follows the new one: its log matches again, any suffix it could not
    // commit is gone (the checker compares every node's log).
    await waitForState(c, leader, "Follower");
    // It first hears the new leader, then drops its conflicting suffix once the new leader's
    // appends have backed up to where their logs match (after the links came back).
    await waitFor(() => oldNode.output().includes("truncating an uncommitted suffix"), {
      timeoutMs: 10_000,
      message: "the old leader truncates its uncommitted suffix",
    });
    await writesContinue(w, 50, "writes after healing");
    await w.stop();
    await checkHistory(c, w);
    expect(await Promise.all(c.nodes.map((n) => idsOn(n, "isolated")))).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
  });

  it("an isolated follower cannot depose the leader; it catches up when the partition heals", async () => {
    const { c, w, leader } = await start();
    const follower = (leader + 1) % 3;
    const epoch = await epochOf(c.nodes[leader]!);
    c.partition(
      [follower],
      [0, 1, 2].filter((i) => i !== follower),
    );
    // It loses its leader (no heartbeats) and stands by pre-vote, which nobody answers.
    await waitFor(async () => (await c.stateOf(follower)) === "Unknown", {
      timeoutMs: 10_000,
      message: "the isolated follower has lost its leader",
    });
    await writesContinue(w, 150, "writes continue without the follower");
    c.heal();
    await waitForState(c, follower, "Follower");
    // Pre-vote: its attempts while cut off did not move the epoch, so the leader stayed.
    expect(await c.leader()).toBe(leader);
    expect(await epochOf(c.nodes[leader]!)).toBe(epoch);
    await writesContinue(w, 50, "writes after healing");
    await w.stop();
    await checkHistory(c, w);
    expect(Math.max(...checkOneLeaderPerEpoch(c).keys())).toBe(epoch);
  });

  it("a follower that loses power (log cut back to its last fsync) recovers and catches up", async () => {
    const { c, w, leader } = await start();
    const follower = (leader + 1) % 3;
    const node = c.nodes[follower]!;
    await c.kill(follower);
    const cut = await cutToLastSync(node.dataDir!);
    expect(cut.durable).toBeGreaterThan(0);
    await writesContinue(w, 150, "writes continue without the follower");
    await c.restart(follower);
    // Recovery cuts the torn record off, then the leader sends what the node lacks.
    expect(node.output()).toContain("truncating a torn tail of the log");
    await waitForState(c, follower, "Follower");
    await writesContinue(w, 50, "writes after the restart");
    await w.stop();
    await checkHistory(c, w);
  });

  it("a leader and a follower that cannot reach each other while both reach the third: the leader stays, writes go on", async () => {
    const { c, w, leader } = await start();
    const [cut, bridge] = [(leader + 1) % 3, (leader + 2) % 3];
    const epoch = await epochOf(c.nodes[leader]!);
    // Partial connectivity: only the links between the leader and `cut` fail; the bridge
    // reaches both. The cut follower loses its leader and asks for votes, which the bridge
    // (still hearing the leader) must refuse, or the leadership would bounce between them.
    c.partition([leader], [cut]);
    await waitFor(async () => (await c.stateOf(cut)) === "Unknown", {
      timeoutMs: 10_000,
      message: "the cut follower has lost its leader",
    });
    for (let round = 0; round < 3; round++)
      await writesContinue(w, 100, `writes go on under partial connectivity (round ${round})`);
    expect(await c.leader()).toBe(leader);
    expect(await epochOf(c.nodes[leader]!)).toBe(epoch);
    expect(await c.stateOf(bridge)).toBe("Follower");
    c.heal();
    await waitForState(c, cut, "Follower");
    await writesContinue(w, 50, "writes after healing");
    await w.stop();
    await checkHistory(c, w);
    expect(Math.max(...checkOneLeaderPerEpoch(c).keys())).toBe(epoch);
  });
});
