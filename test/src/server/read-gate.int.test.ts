// A node runs at most 16 page reads at once for all its clients together (read-gate.ts); the
// others wait their turn. Each connection alone was bounded, but 100 HTTP clients that each
// asked for a page of ~4 MiB at once had a disk node read and hold them all together: its
// memory grew by about a GiB (300 clients: 2.7 GB).
//
// One real disk node holding ~40 MB of events; 100 raw HTTP connections ask for a page each,
// all at once, and read their answers. Every answer comes whole; reads wait for their turn
// meanwhile; the node's memory grows by far less than the pages asked for.
//
// A read still waiting for its turn when its client leaves never runs: 100 reads wait, the
// clients of 60 of them leave, and the node serves (and counts) only about those that stayed.
// Without that, it read all 100 pages for nobody, and the clients still there waited for them.
import { ChorusClient } from "@chorus/client";
import { decodeFrame, encodeFrame } from "@chorus/protocol";
import { startNode, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
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
      const n = await filledNode();
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

  it.each(["http", "native"] as const)(
    "a read whose %s client left before its turn never runs",
    { timeout: 180_000 },
    async (api) => {
      const n = await filledNode();
      const readers = api === "http" ? httpReaders(n) : nativeReaders(n);
      // Once 80 of the 100 reads wait, at most 20 have started: of the 60 reads whose clients
      // now leave, at least 40 are still waiting.
      await until(async () => (await metric(n, "chorus_reads_waiting")) >= 80, 60_000);
      readers.leave();
      expect(await readers.answers()).toBe(STAYING);
      await until(
        async () =>
          (await metric(n, "chorus_reads_waiting")) === 0 &&
          (await metric(n, "chorus_reads_running")) === 0,
        60_000,
      );
      const served = await metric(n, `chorus_reads_total{interface="${api}",kind="stream"}`);
      // Without dropping them: all 100 were read, for nobody.
      expect(served).toBeGreaterThanOrEqual(STAYING);
      expect(served).toBeLessThanOrEqual(70);
    },
  );

  it(
    "a read the client gave up on (its deadline passed) is dropped while it waits",
    { timeout: 180_000 },
    async () => {
      const n = await filledNode();
      const readers = httpReaders(n, 100);
      await until(async () => (await metric(n, "chorus_reads_waiting")) >= 80, 60_000);
      // 20 reads behind 80 waiting pages (at about ten pages a second here, the first of them
      // could start after some 6 s), each with a deadline of 1 s: when it passes, the client
      // tells the node, which drops the read.
      const client = (started.client = new ChorusClient(
        `${n.connectionString}&operationTimeout=1000`,
      ));
      await client.connect();
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          try {
            for await (const _ of client.readStream(`filled-${i % 10}`, { maxCount: 4096 }));
            return "read";
          } catch (err) {
            return (err as Error).name;
          }
        }),
      );
      expect(outcomes).toEqual(Array.from({ length: 20 }, () => "TimeoutError"));
      expect(await readers.answers()).toBe(100);
      await until(
        async () =>
          (await metric(n, "chorus_reads_waiting")) === 0 &&
          (await metric(n, "chorus_reads_running")) === 0,
        60_000,
      );
      // Without telling the node: all 20 were read, for nobody.
      expect(await metric(n, `chorus_reads_total{interface="native",kind="stream"}`)).toBe(0);
    },
  );
});

/** A node of this test, holding what fillLarge writes. */
async function filledNode(): Promise<TestNode> {
  const n = (started.node = await startNode());
  const client = new ChorusClient(n.connectionString);
  try {
    await fillLarge(client);
  } finally {
    await client.close();
  }
  return n;
}

/** Of the 100 page reads of the test above, those whose clients stay for their answers. */
const STAYING = 40;

interface Readers {
  /** The clients of all reads but the first STAYING leave. */
  leave(): void;
  /** Waits for the answers of the reads that stayed; how many came whole. */
  answers(): Promise<number>;
}

/**
 * 100 raw HTTP connections, each asking for a page of ~2,000 events of ~2 KB; the first
 * `staying` stay for their answers.
 */
function httpReaders(n: TestNode, staying = STAYING): Readers {
  const sockets = Array.from({ length: 100 }, (_, i) =>
    unreadHttpGet(n, `/streams/filled-${i % 10}?count=4096`),
  );
  started.sockets.push(...sockets);
  const answers = sockets.slice(0, staying).map((s) => readAnswer(s, 120_000));
  return {
    leave: () => sockets.slice(staying).forEach((s) => s.destroy()),
    answers: async () => (await Promise.all(answers)).filter((a) => a === "whole").length,
  };
}

/** 25 native connections, each sending four reads of such pages at once (its limit). */
function nativeReaders(n: TestNode): Readers {
  const conns = Array.from({ length: 25 }, (_, c) => {
    const ws = new WebSocket(`ws://${n.extTcp.host}:${n.extTcp.port}/`);
    let pages = 0;
    const four = new Promise<number>((resolve, reject) => {
      ws.on("error", () => undefined);
      ws.on("close", () => resolve(pages));
      ws.on("message", (data: Buffer) => {
        const frame = decodeFrame(data);
        if (frame.error) reject(new Error(`read ${frame.correlationId}: ${frame.error.message}`));
        if (frame.readResult && ++pages === 4) resolve(pages);
      });
      ws.once("open", () => {
        for (let id = 1; id <= 4; id++) {
          const streamId = `filled-${(c * 4 + id) % 10}`;
          const readStream = { streamId, fromRevision: 0, maxCount: 4096 };
          ws.send(encodeFrame({ correlationId: id, readStream }));
        }
      });
    });
    return { ws, four };
  });
  const staying = conns.slice(0, STAYING / 4);
  return {
    leave: () => conns.slice(STAYING / 4).forEach((c) => c.ws.terminate()),
    answers: async () => {
      const pages = await Promise.all(staying.map((c) => c.four));
      staying.forEach((c) => c.ws.close());
      return pages.reduce((a, b) => a + b, 0);
    },
  };
}

/** Polls `condition` until it holds; fails after `timeoutMs`. */
async function until(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not so within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
