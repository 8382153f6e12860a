// A node runs at most 16 page reads at once for all its clients together (read-gate.ts); the
// others wait their turn. Each connection alone was bounded, but 100 HTTP clients that each
// asked for a page of ~4 MiB at once had a disk node read and hold them all together: its
// memory grew by about a GiB (300 clients: 2.7 GB).
//
// One real disk node holding ~40 MB of events; 100 raw HTTP connections ask for a page each,
// all at once, and read their answers. Every answer comes whole; reads wait for their turn
// meanwhile; the node's memory grows by far less than the pages asked for.
import { ChorusClient } from "@chorus/client";
import { startNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { closedAfterEach } from "./helpers.js";
import { fillLarge, metric, readAnswer, rssMiB, unreadHttpGet } from "./unread-output.js";

/** HTTP clients asking at once. */
const READERS = 100;
/** How much the node's memory may grow while it serves them (about 1 GiB without the bound). */
const GROWTH_MIB = 600;

const started = closedAfterEach();

describe("page reads at once", () => {
  it(
    "wait for their turn past 16: a hundred pages asked at once all come whole, in bounded memory",
    { timeout: 180_000 },
    async () => {
      const n = (started.node = await startNode());
      const client = new ChorusClient(n.connectionString);
      try {
        await fillLarge(client);
      } finally {
        await client.close();
      }
      const beforeMiB = rssMiB(n.pid!);
      let peakMiB = beforeMiB;
      const sampler = setInterval(() => {
        peakMiB = Math.max(peakMiB, rssMiB(n.pid!));
      }, 50);
      try {
        // Pages of ~2,000 events of ~2 KB each, from the ten streams fillLarge wrote.
        const sockets = Array.from({ length: READERS }, (_, i) =>
          unreadHttpGet(n, `/streams/filled-${i % 10}?count=4096`),
        );
        started.sockets.push(...sockets);
        const answers = Promise.all(sockets.map((s) => readAnswer(s, 120_000)));
        let waitingSeen = 0;
        let runningSeen = 0;
        for (let k = 0; k < 20 && waitingSeen === 0; k++) {
          waitingSeen = Math.max(waitingSeen, await metric(n, "chorus_reads_waiting"));
          runningSeen = Math.max(runningSeen, await metric(n, "chorus_reads_running"));
        }
        expect(await answers).toEqual(Array.from({ length: READERS }, () => "whole"));
        expect(waitingSeen).toBeGreaterThan(0);
        expect(runningSeen).toBeLessThanOrEqual(16);
      } finally {
        clearInterval(sampler);
      }
      expect(peakMiB - beforeMiB).toBeLessThan(GROWTH_MIB);
      expect(await metric(n, "chorus_reads_waiting")).toBe(0);
    },
  );
});
