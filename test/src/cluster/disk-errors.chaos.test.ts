/**
 * A disk that fails: each node's data directory on its own faulty file system (a FUSE mount
 * of @chorus/testing whose syncs or writes return EIO on demand, as a failing disk does; the
 * server processes get the errors from the kernel). Skipped with the reason where it cannot
 * be mounted (root, /dev/fuse and python3-fusepy are needed).
 *
 * - The leader's syncs fail: the appends in flight are answered NOT_LEADER, not "internal
 *   error": their records may already be on the followers, and there the next leader commits
 *   them. The clients retry with the same event ids and are told the original result, so
 *   none of them sees a failure. Another node leads and writes go on. The failed node stops
 *   taking part and asks for a restart on /health/live (503, naming the error) and in the
 *   `chorus_restart_needed` gauge. Once the disk
 *   is healthy and the node restarted, it catches up, and every node holds every acknowledged
 *   append exactly once.
 * - A follower's writes fail: the other two go on; the follower asks for a restart, and
 *   catches up after one.
 * - A single node's syncs fail: the append is refused with the cause named, reads go on, and
 *   /health/live asks for a restart. Restarted while the disk still fails, it refuses to
 *   start, naming the error; once the disk heals, it starts with every acknowledged event.
 */
import { ChorusClient, jsonEvent, ServerError } from "@chorus/client";
import {
  getJson,
  startCluster,
  startNode,
  waitFor,
  type TestCluster,
  type TestNode,
} from "@chorus/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { metricSample } from "../server/helpers.js";
import { faultyDataDirs, faultyFsPerNode, idsOn } from "./helpers.js";
import { checkWrites, startWriters, writesContinue, type Writers } from "./write-checker.js";

const { mounts, skipReason } = await faultyFsPerNode(3);

/** An empty data directory on each mount, its faults healed (whatever a retry left there). */
const freshDataDirs = (): Promise<string[]> => faultyDataDirs(mounts, true);

/** The node's `chorus_restart_needed` gauge. */
async function restartNeededMetric(node: TestNode): Promise<number | undefined> {
  const res = await fetch(`http://${node.httpEndpoint}/metrics`, {
    signal: AbortSignal.timeout(2_000),
  });
  return metricSample(await res.text(), "chorus_restart_needed");
}

/** What node `node`'s /health/live answers. */
async function liveness(node: TestNode): Promise<{ status: number; message?: string }> {
  const res = await getJson(`http://${node.httpEndpoint}/health/live`, 2_000);
  return { status: res.status, message: (res.body as { message?: string }).message };
}

/**
 * Node `i`'s disk is healthy again: the node is restarted, catches up as a follower, and then
 * no writer saw a failure (appends in flight when the disk failed were retried, not failed)
 * and every node holds every acknowledged append exactly once (the write checker).
 */
async function healRestartAndCheck(c: TestCluster, w: Writers, i: number): Promise<void> {
  await mounts[i]!.heal();
  await c.kill(i);
  await c.restart(i);
  await waitFor(async () => (await c.stateOf(i)) === "Follower", {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: `node ${i} back as a follower after its restart`,
  });
  await writesContinue(w, 100, "writes with every node back");
  await w.stop();
  expect([...w.unknown]).toEqual([]);
  await checkWrites(c, w);
}

describe.skipIf(skipReason !== null)(
  `a node whose disk fails${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let cluster: TestCluster | undefined;
    let writers: Writers | undefined;
    let node: TestNode | undefined;

    afterEach(async () => {
      await writers?.stop();
      await cluster?.stop();
      await node?.stop();
      writers = undefined;
      cluster = undefined;
      node = undefined;
      for (const m of mounts) await m.heal();
    });

    afterAll(async () => {
      for (const m of mounts) await m.unmount();
    });

    it(
      "a leader whose syncs fail: appends in flight are kept once, another node leads, and the node asks for a restart",
      { timeout: 120_000 },
      async () => {
        const c = (cluster = await startCluster({ size: 3, dataDirs: await freshDataDirs() }));
        const w = (writers = startWriters(c, 4));
        await writesContinue(w, 200, "writes flowing");
        const failed = await c.leader({ timeoutMs: 20_000 });

        await mounts[failed]!.fail(["fsync"]);
        // Writes go on through another leader.
        await writesContinue(w, 300, "writes going on after the leader's disk failed");
        const leader = await c.leader({ timeoutMs: 20_000 });
        expect(leader).not.toBe(failed);
        // The failed node stops taking part, and says a restart is needed (and why).
        const live = await waitFor(
          async () => {
            const l = await liveness(c.nodes[failed]!);
            return l.status === 503 ? l : undefined;
          },
          { timeoutMs: 10_000, message: "the failed node asking for a restart" },
        );
        expect(live.message).toMatch(/EIO/);
        expect(live.message).toMatch(/restart the node$/);
        expect(await restartNeededMetric(c.nodes[failed]!)).toBe(1);
        expect(await restartNeededMetric(c.nodes[leader]!)).toBe(0);
        expect(await c.stateOf(failed)).not.toBe("Follower");
        expect(await c.stateOf(failed)).not.toBe("Leader");
        expect(await liveness(c.nodes[leader]!)).toEqual({ status: 200, message: undefined });

        await healRestartAndCheck(c, w, failed);
      },
    );

    it(
      "a follower whose writes fail: the others go on, and it catches up after a restart",
      { timeout: 120_000 },
      async () => {
        const c = (cluster = await startCluster({ size: 3, dataDirs: await freshDataDirs() }));
        const w = (writers = startWriters(c, 4));
        await writesContinue(w, 200, "writes flowing");
        const leader = await c.leader({ timeoutMs: 20_000 });
        const follower = (leader + 1) % 3;

        await mounts[follower]!.fail(["write", "fsync"]);
        await waitFor(async () => (await liveness(c.nodes[follower]!)).status === 503, {
          timeoutMs: 10_000,
          message: "the follower asking for a restart",
        });
        await writesContinue(w, 300, "writes going on without the failed follower");
        expect(await c.leader({ timeoutMs: 5_000 })).toBe(leader);

        await healRestartAndCheck(c, w, follower);
      },
    );

    it("a single node whose syncs fail refuses the append naming the cause, reads go on, and it restarts once the disk heals", async () => {
      const [dir] = await freshDataDirs();
      node = await startNode({ dataDir: dir! });
      const client = new ChorusClient(node.connectionString);
      try {
        for (let i = 0; i < 5; i++)
          await client.appendToStream("single", jsonEvent({ type: "E", data: { i } }));
        await mounts[0]!.fail(["fsync"]);
        const err = await client
          .appendToStream("single", jsonEvent({ type: "E", data: { i: 5 } }))
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).toBeInstanceOf(ServerError);
        expect((err as ServerError).message).toMatch(
          /^storage error: log fsync failed \(EIO: i\/o error, fdatasync\): the write/,
        );
        // Reads go on; writes stay refused; a restart is asked for.
        const ids = await idsOn(node, "single");
        expect(ids?.length).toBeGreaterThanOrEqual(5);
        const live = await liveness(node);
        expect(live.status).toBe(503);
        expect(live.message).toMatch(/^the store refuses writes: log fsync failed \(EIO/);
        await mounts[0]!.heal();
        await expect(
          client.appendToStream("single", jsonEvent({ type: "E", data: { i: 6 } })),
        ).rejects.toThrow(/refuses further writes until the node is restarted/);
      } finally {
        await client.close();
      }
      // Restarted while the disk still fails, the node refuses to start, naming the error.
      await mounts[0]!.fail(["fsync"]);
      await node.kill();
      await expect(node.restart()).rejects.toThrow(
        /cannot open the data directory .*: EIO: i\/o error/,
      );
      // Once the disk is healthy, it starts, with every acknowledged event.
      await mounts[0]!.heal();
      await node.restart();
      const after = await idsOn(node, "single");
      expect(after?.length).toBeGreaterThanOrEqual(5);
    });
  },
);
