/**
 * A three-node cluster, each node's data directory on its own small tmpfs (mounting needs
 * root; skipped with the reason otherwise).
 *
 * The leader's disk fills up: leadership moves to a node with room, writes go on there,
 * nothing acknowledged is lost, and once space is freed the old leader catches up by itself.
 *
 * A follower's disk fills up and frees again, over and over, while the others take writes:
 * each time space returns, the follower catches up by itself (its commit reaches the
 * leader's). When its disk fills, a follower refuses the leader's records and starts its
 * part in the cluster over. A durable report (or a tick) queued just then used to be skipped
 * with its "queued" flag left set: the follower never reported what it had synced again, and
 * its commit stayed behind for good (found by `npm run chaos -- --real`). While the disk stays
 * full, the follower takes the leader's Appends without their records and starts over no more
 * (it used to, about once per heartbeat): checked with `chorus_role_restarts_total`. Its
 * replies say its storage is full, and the leader sends it heartbeats only until it has room
 * (it used to send the same records again every heartbeat): checked with the bytes the
 * follower's process read meanwhile.
 *
 * A voter that started its part over for a full disk, and leads later, replicates to the
 * read-only replica. It used not to: its new consensus core was formed without the replicas
 * (only changes to them were handed over), so the replica stayed at the old leader's last
 * epoch for good, with its readers (found by `npm run chaos -- --real` with a replica).
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { getJson, startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { readFile, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { metricSample } from "../server/helpers.js";
import { emptyDataDirs, idsOn, tmpfsPerNode } from "./helpers.js";

const { mounts, skipReason } = await tmpfsPerNode(3, 48 * 1024 * 1024);

const CYCLES = 5;
/** Appends the cluster commits in each cycle while the follower's disk stays full. */
const HOLD_APPENDS = 1_000;
const WRITERS = 8;
/** Bounds of the follower test's load: it stops at whichever comes first. */
const MAX_APPENDS = 150_000;
const MAX_LOAD_MS = 120_000;

describe.skipIf(skipReason !== null)(
  `a cluster whose nodes' disks fill up${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let cluster: TestCluster | undefined;
    let client: ChorusClient | undefined;

    // Each test (and each retry) starts a cluster of its own on emptied data directories.
    afterEach(async () => {
      await client?.close();
      await cluster?.stop();
      client = undefined;
      cluster = undefined;
    });

    afterAll(async () => {
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

    it(
      "a follower whose disk fills up again and again catches up each time space returns",
      { timeout: 240_000 },
      async () => {
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
        /** Bytes the follower's process has read (sockets and files), from /proc. */
        const bytesRead = async (): Promise<number> => {
          const pid = c.nodes[follower]!.pid;
          if (pid === undefined) throw new Error("the follower is not running");
          const io = await readFile(`/proc/${pid}/io`, "utf8");
          return Number(/^rchar: (\d+)$/m.exec(io)?.[1] ?? NaN);
        };
        const restarts = async (): Promise<number> => {
          const res = await fetch(`http://${c.nodes[follower]!.httpEndpoint}/metrics`, {
            signal: AbortSignal.timeout(2_000),
          });
          return metricSample(await res.text(), "chorus_role_restarts_total") ?? NaN;
        };

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
            await writeFile(
              filler,
              Buffer.alloc(Math.max(0, st.bavail * st.bsize - 4096), 1),
            ).catch((err: unknown) => {
              // The node wrote meanwhile: the filler took what was left, which is the point.
              if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
            });
            await waitFor(() => refusals() > before, {
              timeoutMs: 20_000,
              intervalMs: 50,
              message: `cycle ${cycle}: the follower refusing records for want of space`,
            });
            // Held full while the other two commit HOLD_APPENDS more (many heartbeats): the
            // follower keeps its leader and does not start its role over at every Append.
            const restartsBefore = await restarts();
            const readBefore = await bytesRead();
            const ackedBefore = acked;
            await waitFor(() => acked >= ackedBefore + HOLD_APPENDS, {
              timeoutMs: 20_000,
              intervalMs: 20,
              message: `cycle ${cycle}: writes going on while the follower's disk is full`,
            });
            const read = (await bytesRead()) - readBefore;
            expect(
              (await restarts()) - restartsBefore,
              `cycle ${cycle}: role restarts of the follower while its disk stayed full`,
            ).toBeLessThanOrEqual(1);
            // Records the follower could not take are not sent again and again: it reads less
            // than the events the others committed meanwhile (HOLD_APPENDS of ~300 bytes).
            expect(
              read,
              `cycle ${cycle}: bytes the follower read while its disk stayed full`,
            ).toBeLessThan(HOLD_APPENDS * 300);
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
      },
    );

    it(
      "a voter that started its part over for a full disk replicates to the read-only replica once it leads",
      { timeout: 180_000 },
      async () => {
        cluster = await startCluster({
          size: 3,
          readOnlyReplicas: 1,
          dataDirs: await emptyDataDirs(mounts),
        });
        const c = cluster;
        client = new ChorusClient(`${c.connectionString}&operationTimeout=5000`);
        const replica = c.nodes[3]!;
        const first = await c.leader({ timeoutMs: 20_000 });
        // `restarted` starts its part over (full disk) and is to lead; `lagging` is kept
        // behind (full disk too) so that it cannot win the election instead.
        const restarted = (first + 1) % 3;
        const lagging = (first + 2) % 3;
        const metric = async (i: number, name: string): Promise<number> => {
          const res = await fetch(`http://${c.nodes[i]!.httpEndpoint}/metrics`, {
            signal: AbortSignal.timeout(2_000),
          });
          return metricSample(await res.text(), name) ?? NaN;
        };
        const commitOf = async (i: number): Promise<number> => {
          const res = await getJson(`http://${c.nodes[i]!.httpEndpoint}/stats`, 2_000);
          return Number((res.body as { store: { commitPosition: string } }).store.commitPosition);
        };
        const refusals = (i: number) =>
          (c.nodes[i]!.output().match(/log write failed: the disk is full/g) ?? []).length;
        const fill = async (i: number): Promise<string> => {
          const filler = join(mounts[i]!.dir, "filler");
          const st = await statfs(mounts[i]!.dir);
          await writeFile(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 4096), 1)).catch(
            (err: unknown) => {
              if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
            },
          );
          return filler;
        };
        // Appends (bounded in count and time) while `until` is false.
        const load = async (until: () => boolean | Promise<boolean>, what: string) => {
          const deadlineMs = performance.now() + 60_000;
          for (let i = 0; i < 20_000; i++) {
            if (await until()) return;
            if (performance.now() > deadlineMs) break;
            await client!
              .appendToStream(
                "load",
                jsonEvent({ type: "Load", data: { i, pad: "z".repeat(500) } }),
              )
              .catch(() => undefined); // a leader change: the next one goes to the new leader
          }
          throw new Error(`no ${what} within the load's bounds`);
        };

        const fillers: string[] = [];
        try {
          // `restarted`'s disk fills: it refuses the leader's records and starts its part over.
          fillers.push(await fill(restarted));
          await load(
            async () => (await metric(restarted, "chorus_role_restarts_total")) >= 1,
            "role restart of the node whose disk is full",
          );
          await rm(fillers.pop()!);
          const target = await commitOf(await c.leader({ timeoutMs: 10_000 }));
          await waitFor(async () => (await commitOf(restarted)) >= target, {
            timeoutMs: 30_000,
            intervalMs: 100,
            message: "the restarted node caught up",
          });
          // `lagging` falls behind; then the leader goes, and only `restarted` can win.
          fillers.push(await fill(lagging));
          const before = refusals(lagging);
          await load(() => refusals(lagging) > before, "refusal by the lagging node");
          // (Its disk gets room again at once: a leader's first record needs a majority. Only
          // a leader could bring its log up to date.)
          await c.kill(first);
          await rm(fillers.pop()!);
          await waitFor(async () => (await c.stateOf(restarted)) === "Leader", {
            timeoutMs: 30_000,
            intervalMs: 50,
            message: "the restarted node leading",
          });
          await c.restart(first);

          // What it commits now reaches the replica.
          const ids: string[] = [];
          for (let i = 0; i < 10; i++) {
            const event = jsonEvent({ type: "After", data: { i } });
            await client.appendToStream("after-restart", event, { timeoutMs: 20_000 });
            ids.push(event.id);
          }
          await waitFor(
            async () => (await idsOn(replica, "after-restart"))?.join() === ids.join(),
            {
              timeoutMs: 20_000,
              intervalMs: 100,
              message: "the replica holding what the restarted leader committed",
            },
          );
          expect(await c.stateOf(3)).toBe("ReadOnlyReplica");
        } finally {
          for (const f of fillers) await rm(f, { force: true });
        }
      },
    );
  },
);
