// A three-node cluster under process faults, with the write checker of quality.md
// (write-checker.ts): every acknowledged append is present exactly once on every voting node
// after healing, revisions are gapless, one leader per epoch, every log a prefix of one log,
// and a paused old leader acknowledges nothing after it resumes.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";
import {
  checkHistory,
  startWriters,
  streamOn,
  writesContinue,
  type Writers,
} from "./write-checker.js";

/** Leader kills in the long write test (issue target: 20); CHORUS_CHAOS_WRITE_KILLS overrides. */
const WRITE_KILLS = Number(process.env.CHORUS_CHAOS_WRITE_KILLS ?? 20);
/**
 * Each kill is a failover (well under a second), a process start and a store open (about a
 * second on an idle machine, more on a loaded one); every wait in it has its own deadline.
 */
const WRITE_KILLS_TIMEOUT_MS = 30_000 + WRITE_KILLS * 6_000;

let cluster: TestCluster | undefined;
let writers: Writers | undefined;
const clients: ChorusClient[] = [];

afterEach(async () => {
  await writers?.stop();
  writers = undefined;
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await cluster?.stop();
  cluster = undefined;
});

describe("three-node cluster under faults", () => {
  it("loses no acknowledged write when the leader is SIGKILLed under four writers", async () => {
    cluster = await startCluster({ size: 3 });
    const w = (writers = startWriters(cluster, 4));
    await writesContinue(w, 200, "writes flowing");
    const old = await cluster.leader();
    await cluster.kill(old);
    await writesContinue(w, 200, "writes resume");
    await cluster.restart(old);
    await waitFor(async () => (await cluster!.stateOf(old)) === "Follower", {
      timeoutMs: 20_000,
      message: "old leader follows",
    });
    await w.stop();
    await checkHistory(cluster, w);
  });

  it(
    `loses and duplicates no acknowledged write across ${WRITE_KILLS} leader SIGKILLs`,
    {
      timeout: WRITE_KILLS_TIMEOUT_MS,
    },
    async () => {
      cluster = await startCluster({ size: 3 });
      const w = (writers = startWriters(cluster, 2));
      await writesContinue(w, 50, "writes flowing");
      for (let k = 0; k < WRITE_KILLS; k++) {
        const old = await cluster.leader({ timeoutMs: 20_000 });
        await cluster.kill(old);
        await writesContinue(w, 50, `writes resume after kill ${k + 1}`);
        await cluster.restart(old);
      }
      await w.stop();
      await checkHistory(cluster, w);
    },
  );

  it("a leader paused past the election timeout acknowledges nothing after it resumes", async () => {
    cluster = await startCluster({ size: 3 });
    const w = (writers = startWriters(cluster, 2));
    await writesContinue(w, 100, "writes flowing");
    const old = await cluster.leader();
    const oldNode = cluster.nodes[old]!;
    // A client pinned to the old leader, with an append in flight while it is paused.
    const pinned = new ChorusClient(
      `chorus://${oldNode.httpEndpoint}?tls=false&operationTimeout=15000`,
    );
    clients.push(pinned);
    await pinned.appendToStream("pinned", jsonEvent({ type: "P", data: { before: true } }));
    oldNode.pause();
    const stuck = jsonEvent({ type: "P", data: { during: true } });
    const outcome = pinned.appendToStream("pinned", stuck).then(
      () => "acknowledged" as const,
      () => "failed" as const,
    );
    // The others elect a new leader and the writers carry on without the paused node.
    await writesContinue(w, 100, "writes resume");
    oldNode.resume();
    await waitFor(async () => (await cluster!.stateOf(old)) === "Follower", {
      timeoutMs: 20_000,
      message: "old leader steps down",
    });
    const result = await outcome;
    await w.stop();
    await checkHistory(cluster, w);
    // Whatever the pinned client was told, the stream holds the event at most once, and
    // if it was acknowledged it is there on every node.
    const views = await Promise.all(cluster.nodes.map((n) => streamOn(n, "pinned")));
    const copies = views.map((v) => v.ids.filter((id) => id === stuck.id).length);
    for (const n of copies) expect(n).toBeLessThanOrEqual(1);
    if (result === "acknowledged") expect(copies).toEqual([1, 1, 1]);
  });
});
