// A client that sends many reads and does not read the answers holds up its own reads, not
// the node's memory. Each read answer is a page of events of up to 4 MiB; the node took up to
// 256 requests of a connection at once, so 256 unread `$all` pages made a node of 150 MiB
// grow past 1.5 GiB, and a few such connections would have it killed for want of memory.
//
// One real node holding ~40 MB of events; a raw WebSocket connection sends 64 reads of `$all`
// from the start and reads nothing. The node serves a few (READS_AT_ONCE, and not while the
// answers sent are unread) and grows by far less than the pages; once the client reads again,
// every read is answered, in full; another client is served throughout.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { decodeFrame } from "@chorus/protocol";
import { getJson, startNode, waitFor, type TestNode } from "@chorus/testing";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { fillLarge, metric, resumeReading, rssMiB, unreadReads } from "./unread-output.js";

const READS = 64;

let node: TestNode | undefined;
let ws: WebSocket | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  ws?.terminate();
  ws = undefined;
  for (const s of sockets.splice(0)) s.destroy();
  await node?.stop();
  node = undefined;
});

/** The node's count of reads served (`chorus_reads_total`) with these labels. */
function readsServed(n: TestNode, labels: string): Promise<number> {
  return metric(n, `chorus_reads_total{${labels}}`);
}

/** A node filled by fillLarge, its RSS in MiB then, and a client of it. */
async function filledNode(): Promise<{ n: TestNode; client: ChorusClient; beforeMiB: number }> {
  const n = (node = await startNode({ memDb: true }));
  const client = new ChorusClient(n.connectionString);
  try {
    await fillLarge(client);
  } catch (err) {
    await client.close();
    throw err;
  }
  return { n, client, beforeMiB: rssMiB(n.pid!) };
}

/**
 * Waits until the node has done what it does while the client reads nothing: its count of
 * reads served and its memory stay put for a second (without the bound, every read ran and
 * the node grew by more than a GiB within a few seconds). The count served, and the node's
 * peak growth in MiB.
 */
async function settle(
  n: TestNode,
  labels: string,
  beforeMiB: number,
): Promise<{ served: number; growthMiB: number }> {
  let served = -1;
  let settledMiB = beforeMiB;
  let stableSince = performance.now();
  let peakMiB = beforeMiB;
  await waitFor(
    async () => {
      const rss = rssMiB(n.pid!);
      peakMiB = Math.max(peakMiB, rss);
      const now = await readsServed(n, labels);
      if (now !== served || Math.abs(rss - settledMiB) > 8) {
        served = now;
        settledMiB = rss;
        stableSince = performance.now();
        return false;
      }
      return now > 0 && performance.now() - stableSince >= 1_000;
    },
    { timeoutMs: 60_000, intervalMs: 100, message: "the node's reads settle" },
  );
  return { served, growthMiB: peakMiB - beforeMiB };
}

describe("reads whose answers the client does not read", () => {
  it(
    "wait for the client to read: the node does not hold every page; all are answered after",
    { timeout: 120_000 },
    async () => {
      const { n, client, beforeMiB: before } = await filledNode();
      try {
        const sock = (ws = await unreadReads(n, READS));
        const answered = new Map<number, number>();
        sock.on("message", (data: Buffer) => {
          const frame = decodeFrame(new Uint8Array(data), 64 * 1024 * 1024);
          const events = frame.readResult?.events?.length ?? -1;
          answered.set(Number(frame.correlationId), events);
        });
        const { served, growthMiB } = await settle(n, 'interface="native",kind="all"', before);
        expect(served).toBeGreaterThan(0);
        expect(served).toBeLessThanOrEqual(12);
        // The pages not served are not held: 64 pages of ~4 MiB took ~1.3 GiB before.
        expect(growthMiB).toBeLessThan(400);

        // Another client is served meanwhile.
        const other = jsonEvent({ type: "Other", data: {} });
        await client.appendToStream("other", other);

        // The client reads again: every read is answered with its page.
        resumeReading(sock);
        await waitFor(() => answered.size === READS, {
          timeoutMs: 60_000,
          intervalMs: 50,
          message: `all ${READS} reads answered`,
        });
        for (let id = 1; id <= READS; id++) expect(answered.get(id)).toBeGreaterThan(100);
        const live = await getJson(`http://${n.httpEndpoint}/health/live`, 5_000);
        expect(live.status).toBe(200);
      } finally {
        await client.close();
      }
    },
  );

  it(
    "over HTTP, pipelined on one connection, are served one at a time; all are answered after",
    { timeout: 120_000 },
    async () => {
      const { n, client, beforeMiB: before } = await filledNode();
      try {
        const [host, port] = n.httpEndpoint.split(":") as [string, string];
        const sock = connect({ host, port: Number(port) });
        sockets.push(sock);
        await once(sock, "connect");
        // Status lines counted as they come, the bodies dropped (a line may span two chunks:
        // the end of the last one is kept, shorter than a whole line).
        const STATUS = "HTTP/1.1 200 OK";
        let answers = 0;
        let tail = "";
        sock.setEncoding("latin1");
        sock.on("data", (chunk: string) => {
          const text = tail + chunk;
          answers += text.split(STATUS).length - 1;
          tail = text.slice(-(STATUS.length - 1));
        });
        sock.pause();
        // Each answer: the 2,000 events of one stream as JSON, ~4.5 MB.
        const request = (i: number) =>
          `GET /streams/filled-${i % 10}?count=4096 HTTP/1.1\r\nHost: node\r\n\r\n`;
        sock.write(Array.from({ length: READS }, (_, i) => request(i)).join(""));
        const { served, growthMiB } = await settle(n, 'interface="http",kind="stream"', before);
        expect(served).toBeGreaterThan(0);
        expect(served).toBeLessThanOrEqual(4);
        expect(growthMiB).toBeLessThan(400);

        const other = jsonEvent({ type: "Other", data: {} });
        await client.appendToStream("other", other);

        sock.resume();
        await waitFor(() => answers === READS, {
          timeoutMs: 60_000,
          intervalMs: 50,
          message: `all ${READS} HTTP reads answered`,
        });
        expect(await readsServed(n, 'interface="http",kind="stream"')).toBe(READS);
      } finally {
        await client.close();
      }
    },
  );
});
