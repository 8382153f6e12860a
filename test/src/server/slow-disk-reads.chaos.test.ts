/**
 * Stream reads on a disk that answers slowly. A node reads the log blocks of a stream walk
 * synchronously while the page cache answers them; a read the disk has to answer would stall
 * the whole node, so slow synchronous reads send stream reads back to the thread pool
 * (packages/server/src/storage/sync-read-gate.ts). Here the node's data directory is on a
 * faulty file system (FUSE, @chorus/testing) whose reads take READ_DELAY_MS; after a restart
 * nothing of the log is in memory. Aggregates (streams whose events lie far apart in the log)
 * are read back while a probe asks the node's /health/live every PROBE_EVERY_MS: the reads
 * give every event, the node says it paused synchronous reads, and the probe is answered at
 * once most of the time. With every block read synchronously, each probe waits for the read
 * under way (half of READ_DELAY_MS on average). Skipped with the reason where the file system
 * cannot be mounted (root, /dev/fuse and python3-fusepy are needed).
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, describe, expect, it } from "vitest";
import { faultyDataDirs, faultyFsPerNode } from "../cluster/helpers.js";
import { metricSample } from "./helpers.js";

const { mounts, skipReason } = await faultyFsPerNode(1);

/** How much longer each read of the file system takes while it is slow. */
const READ_DELAY_MS = 200;
const PROBE_EVERY_MS = 20;
const STREAMS = 120;
const EVENTS_PER_STREAM = 8;
/** Aggregates read back (at once, as a service loading several does). */
const READ_STREAMS = 8;

afterAll(async () => {
  for (const m of mounts) await m.unmount();
});

describe.skipIf(skipReason !== null)("stream reads on a slow disk", () => {
  it(
    "keep the node answering: slow reads go to the thread pool",
    { timeout: 120_000 },
    async () => {
      const [dir] = await faultyDataDirs(mounts, true);
      const node: TestNode = await startNode({ dataDir: dir! });
      let client = new ChorusClient(node.connectionString);
      try {
        // 2 KB events written one per stream per round: a stream's events lie ~240 KB apart,
        // beyond what the kernel reads ahead.
        const pad = "x".repeat(2_000);
        for (let round = 0; round < EVENTS_PER_STREAM; round++) {
          await Promise.all(
            Array.from({ length: STREAMS }, (_, s) =>
              client.appendToStream(`agg-${s}`, jsonEvent({ type: "T", data: { s, round, pad } })),
            ),
          );
        }
        await client.close();
        // A restart: nothing of the log in the node's memory, and the file's cached pages are
        // dropped as the node opens it again.
        await node.restart();
        client = new ChorusClient(node.connectionString);
        // The streams' states, looked up once (the index), and their last events, before the
        // disk turns slow: what is measured is the walk back through their earlier events.
        for (let s = 0; s < READ_STREAMS; s++) {
          for await (const _ of client.readStream(`agg-${s}`, {
            direction: "backwards",
            fromRevision: "end",
            maxCount: 1,
          }));
        }
        await mounts[0]!.slow(["read"], READ_DELAY_MS);

        const probeMs: number[] = [];
        let reading = true;
        const probe = (async () => {
          while (reading) {
            const start = performance.now();
            const res = await fetch(`http://${node.httpEndpoint}/health/live`, {
              signal: AbortSignal.timeout(10_000),
            });
            await res.arrayBuffer();
            probeMs.push(performance.now() - start);
            await new Promise((resolve) => setTimeout(resolve, PROBE_EVERY_MS));
          }
        })();
        const readStart = performance.now();
        const read = await Promise.all(
          Array.from({ length: READ_STREAMS }, async (_, s) => {
            const rounds: number[] = [];
            for await (const e of client.readStream(`agg-${s}`)) {
              const data = e.event.data as { s: number; round: number };
              expect(data.s).toBe(s);
              rounds.push(data.round);
            }
            return rounds;
          }),
        ).finally(() => (reading = false));
        const readingMs = performance.now() - readStart;
        await probe;
        await mounts[0]!.heal();

        for (const rounds of read) expect(rounds).toEqual([...Array(EVENTS_PER_STREAM).keys()]);
        const metrics = await (await fetch(`http://${node.httpEndpoint}/metrics`)).text();
        expect(metricSample(metrics, "chorus_store_slow_read_pauses_total")).toBeGreaterThan(0);
        // Most probes are answered at once (2-3 ms here). A probe waits for a slow synchronous
        // read only when that read pauses them: the first, and one each time a pause runs out
        // (SYNC_READS_PAUSE_MS, a second), or two when both are only slow.
        probeMs.sort((a, b) => a - b);
        const times = `probe times (ms): ${probeMs.map(Math.round).join(" ")}`;
        const median = probeMs[Math.floor(probeMs.length / 2)]!;
        const waited = probeMs.filter((ms) => ms >= READ_DELAY_MS / 2).length;
        expect(probeMs.length, times).toBeGreaterThan(10);
        expect(median, times).toBeLessThan(READ_DELAY_MS / 4);
        expect(waited, times).toBeLessThanOrEqual(2 * (1 + Math.ceil(readingMs / 1_000)));
      } finally {
        await client.close();
        await node.stop();
        await mounts[0]?.heal();
      }
    },
  );
});
