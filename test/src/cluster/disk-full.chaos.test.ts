/**
 * A three-node cluster, each node's data directory on its own small tmpfs (mounting needs
 * root; skipped with the reason otherwise). The leader's disk fills up: leadership moves to a
 * node with room, writes go on there, nothing acknowledged is lost, and once space is freed
 * the old leader catches up by itself.
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { emptyDataDirs, idsOn, tmpfsPerNode } from "./helpers.js";

const { mounts, skipReason } = await tmpfsPerNode(3, 32 * 1024 * 1024);

describe.skipIf(skipReason !== null)(
  `a cluster whose leader's disk fills up${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let cluster: TestCluster | undefined;
    let client: ChorusClient | undefined;

    afterAll(async () => {
      await client?.close();
      await cluster?.stop();
      for (const m of mounts) await m.unmount();
    });

    it("hands leadership to a node with room, loses nothing, and the old leader catches up", async () => {
      cluster = await startCluster({ size: 3, dataDirs: await emptyDataDirs(mounts) });
      client = new ChorusClient(cluster.connectionString);
      const full = await cluster.leader({ timeoutMs: 20_000 });

      // Leave the leader about 1 MiB, then write ~2 MiB more.
      const mount = mounts[full]!;
      const st = await statfs(mount.dir);
      const filler = join(mount.dir, "filler");
      await writeFile(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 1024 * 1024), 1));

      const pad = "x".repeat(8_000);
      const acked: string[] = [];
      const unknown: string[] = [];
      let newLeader: number | undefined;
      const deadlineMs = performance.now() + 60_000;
      for (let i = 0; i < 400 && performance.now() < deadlineMs; i++) {
        const event = jsonEvent({ type: "Filled", data: { i, pad } });
        try {
          await client.appendToStream("full-cluster", event, { timeoutMs: 10_000 });
          acked.push(event.id);
        } catch {
          unknown.push(event.id); // StorageFullError or a timeout: the outcome is unknown
        }
        if (i >= 250 && newLeader === undefined) {
          const leader = await cluster.leader({ timeoutMs: 10_000 });
          if (leader !== full) newLeader = leader;
        }
        if (newLeader !== undefined && acked.length >= 300) break;
      }
      newLeader ??= await cluster.leader({ timeoutMs: 10_000 });
      expect(newLeader).not.toBe(full);
      expect(acked.length).toBeGreaterThan(250);

      // Space comes back: the old leader catches up by itself, no restart.
      await rm(filler);
      await waitFor(async () => (await cluster!.stateOf(full)) === "Follower", {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: "the old leader back as a follower",
      }).catch((err: unknown) => {
        const tail = cluster!.nodes[full]!.output().split("\n").slice(-15).join("\n");
        throw new Error(`${(err as Error).message}; its log ends:\n${tail}`);
      });
      // Every node holds every acknowledged event exactly once, in one common order.
      let reference: string[] | undefined;
      for (let i = 0; i < 3; i++) {
        await waitFor(
          async () => {
            const ids = await idsOn(cluster!.nodes[i]!, "full-cluster");
            if (ids === undefined) return false;
            const have = new Set(ids);
            if (have.size !== ids.length) throw new Error(`node ${i} holds an event twice`);
            if (!acked.every((id) => have.has(id))) return false;
            if (ids.some((id) => !acked.includes(id) && !unknown.includes(id)))
              throw new Error(`node ${i} holds an event nobody wrote`);
            reference ??= ids;
            return ids.join() === reference.join();
          },
          {
            timeoutMs: 30_000,
            intervalMs: 200,
            message: `node ${i} holds every acknowledged event`,
          },
        );
      }
    });
  },
);
