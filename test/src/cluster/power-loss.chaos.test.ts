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
 * - The same with the last write torn (the disk wrote some of its sectors, not others, in any
 *   order): the node starts every time (a damaged write that valid records follow is
 *   recognised as torn by its never-written sectors, not refused as corruption).
 * - All three nodes of a cluster lose power together (a data centre's power), again and
 *   again, torn or not: the same.
 * - The leader alone loses power, again and again: another node leads, and the old leader
 *   catches up after its restart.
 *
 * Each round must have thrown something away (writes the disk's cache still held), or it
 * showed nothing. Skipped with the reason where the file system cannot be mounted (root,
 * /dev/fuse and python3-fusepy are needed).
 */
import {
  startCluster,
  startNode,
  waitFor,
  type PowerLossReport,
  type TestCluster,
  type TestNode,
} from "@chorus/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { faultyDataDirs, faultyFsPerNode } from "./helpers.js";
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

const { mounts, skipReason } = await faultyFsPerNode(3);

/** A data directory on each of the first `n` mounts, not yet there: the node creates it. */
const freshDataDirs = (n: number): Promise<string[]> => faultyDataDirs(mounts.slice(0, n), false);

/**
 * Nodes `indexes` lose power together: their disks' power is cut, the nodes die, and the
 * disks lose what was not durable (`torn`: part of it, from `seed`).
 */
async function powerLoss(
  c: Nodes,
  indexes: readonly number[],
  torn?: { seed: number },
): Promise<PowerLossReport[]> {
  return Promise.all(
    indexes.map((i) =>
      mounts[i]!.powerLoss({
        stop: () => c.kill(i),
        ...(torn !== undefined && { torn: { seed: torn.seed * 10 + i } }),
      }),
    ),
  );
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
      "a single node loses power with its last write torn, again and again: it starts each time, with every acknowledged append",
      { timeout: 180_000 },
      async () => {
        const [dataDir] = await freshDataDirs(1);
        const node = await startNode({ dataDir: dataDir! });
        const c = (cluster = single(node));
        // Many writers of 3 KB events on a slow disk: group commits of many pages, which a
        // power loss tears.
        const w = (writers = startWriters(c, 48, 3_000));
        let keptPages = 0;
        let recognised = 0;
        // Until a torn write with valid records after its damage was recognised (a few rounds
        // do it: each needs the disk to have lost a sector of the last write and kept a later
        // one), at least three rounds and at most twelve.
        for (let round = 0; round < 12 && (round < 3 || recognised === 0); round++) {
          // A slow disk (each sync 30 ms longer): appends gather into large group commits.
          await mounts[0]!.slow(["fsync"], 30);
          await writesContinue(w, 300, `writes flowing (round ${round})`);
          const [report] = await powerLoss(c, [0], { seed: round + 1 });
          keptPages += report!.keptPages;
          await c.restart(0);
          recognised = node.output().split("the disk never wrote").length - 1;
        }
        expect(keptPages).toBeGreaterThan(0);
        expect(recognised).toBeGreaterThan(0);
        await writesContinue(w, 100, "writes after the last restart");
        await w.stop();
        await checkWrites(c, w);
      },
    );

    it(
      "a whole cluster loses power under writes, three times (the last two torn): every acknowledged append stays",
      { timeout: 180_000 },
      async () => {
        const all = [0, 1, 2];
        const c = (cluster = await startCluster({ size: 3, dataDirs: await freshDataDirs(3) }));
        const w = (writers = startWriters(c, 4));
        for (let round = 0; round < 3; round++) {
          await writesContinue(w, 200, `writes flowing (round ${round})`);
          const reports = await powerLoss(c, all, round === 0 ? undefined : { seed: round });
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
