/**
 * A three-node cluster, each node's data directory on its own small tmpfs (mounting needs
 * root; skipped with the reason otherwise). A follower's disk fills up and frees again, over
 * and over, while the others take writes: each time space returns, the follower catches up
 * by itself (its commit reaches the leader's).
 *
 * While its disk is full, a follower refuses the leader's records and starts its part in the
 * cluster over, again and again. A durable report (or a tick) queued just then used to be
 * skipped with its "queued" flag left set: the follower never reported what it had synced
 * again, and its commit stayed behind for good (found by `npm run chaos -- --real`).
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { getJson, startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { emptyDataDirs, tmpfsPerNode } from "./helpers.js";

const { mounts, skipReason } = await tmpfsPerNode(3, 48 * 1024 * 1024);

const CYCLES = 5;
const WRITERS = 8;
/** Bounds of the load: it stops at whichever comes first. */
const MAX_APPENDS = 150_000;
const MAX_LOAD_MS = 120_000;

describe.skipIf(skipReason !== null)(
  `a follower whose disk fills up again and again${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let cluster: TestCluster | undefined;
    let client: ChorusClient | undefined;

    afterAll(async () => {
      await client?.close();
      await cluster?.stop();
      for (const m of mounts) await m.unmount();
    });

    it("catches up by itself each time space returns", { timeout: 240_000 }, async () => {
      // A retry starts over: the first attempt's cluster stopped, its data gone.
      await client?.close();
      await cluster?.stop();
      cluster = await startCluster({ size: 3, dataDirs: await emptyDataDirs(mounts) });
      const c = cluster;
      client = new ChorusClient(`${c.connectionString}&operationTimeout=5000`);
      const leader = await c.leader({ timeoutMs: 20_000 });
      const follower = (leader + 1) % 3;
      const commitOf = async (i: number): Promise<number> => {
        const res = await getJson(`http://${c.nodes[i]!.httpEndpoint}/stats`, 2_000);
        return Number((res.body as { store: { commitPosition: string } }).store.commitPosition);
      };
      const refusals = () =>
        (c.nodes[follower]!.output().match(/log write failed: the disk is full/g) ?? []).length;

      let stop = false;
      let acked = 0;
      const loadDeadlineMs = performance.now() + MAX_LOAD_MS;
      const writers = Array.from({ length: WRITERS }, async (_, w) => {
        for (let i = 0; !stop && acked < MAX_APPENDS && performance.now() < loadDeadlineMs; i++) {
          try {
            await client!.appendToStream(
              `filling-${w}`,
              jsonEvent({ type: "Filled", data: { i, pad: "y".repeat(200) } }),
            );
            acked++;
          } catch {
            // A leader change: the next append goes to the new leader.
          }
        }
      });

      const mount = mounts[follower]!;
      const filler = join(mount.dir, "filler");
      try {
        for (let cycle = 0; cycle < CYCLES; cycle++) {
          // Fill the follower's disk and hold it full until it has refused the leader's records.
          const before = refusals();
          const st = await statfs(mount.dir);
          await writeFile(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 4096), 1)).catch(
            (err: unknown) => {
              // The node wrote meanwhile: the filler took what was left, which is the point.
              if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
            },
          );
          await waitFor(() => refusals() > before, {
            timeoutMs: 20_000,
            intervalMs: 50,
            message: `cycle ${cycle}: the follower refusing records for want of space`,
          });
          await rm(filler);
          const target = await commitOf(await c.leader({ timeoutMs: 10_000 }));
          await waitFor(async () => (await commitOf(follower)) >= target, {
            timeoutMs: 20_000,
            intervalMs: 100,
            message: `cycle ${cycle}: the follower's commit reaching the leader's (${target})`,
          }).catch((err: unknown) => {
            const tail = c.nodes[follower]!.output().split("\n").slice(-10).join("\n");
            throw new Error(`${(err as Error).message}; its log ends:\n${tail}`);
          });
        }
      } finally {
        stop = true;
        await Promise.all(writers);
        await rm(filler, { force: true });
      }
      expect(acked).toBeGreaterThan(0);
      expect(refusals()).toBeGreaterThanOrEqual(CYCLES);
    });
  },
);
