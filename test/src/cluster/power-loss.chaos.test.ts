/**
 * Power loss: each node's data directory on its own faulty file system (a FUSE mount of
 * @chorus/testing that remembers what a disk's cache would still hold). A power loss kills
 * the node and then throws away everything that was not durable in the strict POSIX sense:
 * data written since its file's last sync, and files, renames and removals whose directory
 * was not synced since. What a crash of the process alone cannot show: a missing sync (of a
 * file, or of the directory a file was created in) loses acknowledged events here.
 *
 * - A single node loses power under writers, again and again: every acknowledged append is
 *   there after each restart, exactly once.
 * - All three nodes of a cluster lose power together (a data centre's power), again and
 *   again: the same.
 * - The leader alone loses power, again and again: another node leads, and the old leader
 *   catches up after its restart.
 *
 * Each round must have thrown something away (writes the disk's cache still held), or it
 * showed nothing. Skipped with the reason where the file system cannot be mounted (root,
 * /dev/fuse and python3-fusepy are needed).
 */
import {
  mountFaultyFs,
  startCluster,
  startNode,
  waitFor,
  type FaultyFs,
  type PowerLossReport,
  type TestCluster,
  type TestNode,
} from "@chorus/testing";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  checkWrites,
  startWriters,
  writesContinue,
  type WriteTarget,
  type Writers,
} from "./write-checker.js";

/** Nodes whose disks can lose power: a cluster, or one node. */
type Nodes = WriteTarget & Pick<TestCluster, "kill" | "restart" | "stop">;

function single(node: TestNode): Nodes {
  return {
    connectionString: node.connectionString,
    nodes: [node],
    kill: () => node.kill(),
    restart: () => node.restart(),
    stop: () => node.stop(),
  };
}

const mounts: FaultyFs[] = [];
let skipReason: string | null = null;
for (let i = 0; i < 3 && skipReason === null; i++) {
  const m = await mountFaultyFs();
  if (typeof m === "string") skipReason = m;
  else mounts.push(m);
}

/** A data directory on each of the first `n` mounts, not yet there: the node creates it. */
async function freshDataDirs(n: number): Promise<string[]> {
  return Promise.all(
    mounts.slice(0, n).map(async (m) => {
      await m.heal();
      const dir = join(m.dir, "db");
      await rm(dir, { recursive: true, force: true });
      return dir;
    }),
  );
}

/** Nodes `indexes` lose power together: killed, then their disks lose what was not durable. */
async function powerLoss(c: Nodes, indexes: readonly number[]): Promise<PowerLossReport[]> {
  await Promise.all(indexes.map((i) => c.kill(i)));
  return Promise.all(indexes.map((i) => mounts[i]!.powerLoss()));
}

async function restart(c: Nodes, indexes: readonly number[]): Promise<void> {
  await Promise.all(indexes.map((i) => c.restart(i)));
}

/** Writes lost from the disks' caches over `reports`. */
const lostWrites = (reports: readonly PowerLossReport[]): number =>
  reports.reduce((n, r) => n + r.writes, 0);

describe.skipIf(skipReason !== null)(
  `power loss${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let cluster: Nodes | undefined;
    let writers: Writers | undefined;

    afterEach(async () => {
      await writers?.stop();
      await cluster?.stop();
      writers = undefined;
      cluster = undefined;
    });

    afterAll(async () => {
      for (const m of mounts) await m.unmount();
    });

    it(
      "a single node loses power under writes, three times: every acknowledged append stays",
      { timeout: 120_000 },
      async () => {
        const [dataDir] = await freshDataDirs(1);
        const c = (cluster = single(await startNode({ dataDir: dataDir! })));
        const w = (writers = startWriters(c, 4));
        for (let round = 0; round < 3; round++) {
          await writesContinue(w, 200, `writes flowing (round ${round})`);
          const reports = await powerLoss(c, [0]);
          expect(lostWrites(reports), `round ${round} lost something`).toBeGreaterThan(0);
          await restart(c, [0]);
        }
        await writesContinue(w, 100, "writes after the last restart");
        await w.stop();
        await checkWrites(c, w);
      },
    );

    it(
      "a whole cluster loses power under writes, three times: every acknowledged append stays",
      { timeout: 180_000 },
      async () => {
        const all = [0, 1, 2];
        const c = (cluster = await startCluster({ size: 3, dataDirs: await freshDataDirs(3) }));
        const w = (writers = startWriters(c, 4));
        for (let round = 0; round < 3; round++) {
          await writesContinue(w, 200, `writes flowing (round ${round})`);
          const reports = await powerLoss(c, all);
          expect(lostWrites(reports), `round ${round} lost something`).toBeGreaterThan(0);
          await restart(c, all);
          await c.leader({ timeoutMs: 30_000 });
        }
        await writesContinue(w, 100, "writes after the last restart");
        await w.stop();
        await checkWrites(c, w);
      },
    );

    it(
      "the leader loses power under writes, three times: another leads, it catches up",
      { timeout: 180_000 },
      async () => {
        const c = (cluster = await startCluster({ size: 3, dataDirs: await freshDataDirs(3) }));
        const w = (writers = startWriters(c, 4));
        for (let round = 0; round < 3; round++) {
          await writesContinue(w, 200, `writes flowing (round ${round})`);
          const lost = await c.leader({ timeoutMs: 30_000 });
          const reports = await powerLoss(c, [lost]);
          expect(lostWrites(reports), `round ${round} lost something`).toBeGreaterThan(0);
          await writesContinue(w, 100, `writes going on without node ${lost}`);
          await restart(c, [lost]);
          await waitFor(async () => (await c.stateOf(lost)) === "Follower", {
            timeoutMs: 30_000,
            intervalMs: 100,
            message: `node ${lost} back as a follower`,
          });
        }
        await writesContinue(w, 100, "writes after the last restart");
        await w.stop();
        await checkWrites(c, w);
      },
    );
  },
);
