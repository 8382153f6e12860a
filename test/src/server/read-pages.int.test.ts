// Pages of large events: a read of 4,096 events whose data are hundreds of kilobytes each would
// be gigabytes, read into the node's memory at once by one request (or one catch-up
// subscription's page). A page holds at most about 4 MiB of events, on a disk node and on
// instances over PostgreSQL; readers that page on until the end still read everything, over
// HTTP, the native protocol and subscriptions. Real server processes, real disk, real
// PostgreSQL.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { closedAfterEach } from "./helpers.js";
import { sharedPostgres } from "../postgres/helpers.js";

const pg = sharedPostgres();

/** Events per stream, and the bytes of each one's data (a page of 4 MiB holds 6 of them). */
const EVENTS = 20;
const PAD_BYTES = 600_000;
const PAGE_BYTES = 4 * 1024 * 1024;

interface HttpPage {
  events: Array<{ streamId: string; revision: string; data: { i: number } }>;
  endOfStream: boolean;
  nextRevision?: string;
  nextPosition?: string;
}

const started = closedAfterEach();

async function get(n: TestNode, path: string): Promise<HttpPage> {
  const res = await fetch(`http://${n.httpEndpoint}${path}`, {
    signal: AbortSignal.timeout(30_000),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as HttpPage;
}

/** Every page of `first`, following `next` until the end (at most 100 pages). */
async function pages(
  n: TestNode,
  first: string,
  next: (page: HttpPage) => string,
): Promise<HttpPage[]> {
  const out = [await get(n, first)];
  while (!out[out.length - 1]!.endOfStream) {
    if (out.length > 100) throw new Error("the pages did not end");
    out.push(await get(n, next(out[out.length - 1]!)));
  }
  return out;
}

/** The data's `i` of every event of the pages, in order; and no page past PAGE_BYTES. */
function indexes(ps: readonly HttpPage[]): number[] {
  for (const p of ps) {
    expect(p.events.length).toBeGreaterThan(0);
    expect(p.events.length * PAD_BYTES).toBeLessThanOrEqual(PAGE_BYTES);
  }
  return ps.flatMap((p) => p.events.map((e) => e.data.i));
}

const backends: Array<[string, boolean, () => Promise<TestNode>]> = [
  ["a disk node", true, () => startNode()],
  [
    "an instance over PostgreSQL",
    pg.runs,
    async () => startNode({ databaseUrl: await pg().createDatabase() }),
  ],
];

describe.each(backends)("pages of large events on %s", (_name, runs, start) => {
  it.skipIf(!runs)(
    "end before 4 MiB of events; reading on from where each ends reads every event once",
    async () => {
      const n = (started.node = await start());
      const c = (started.client = new ChorusClient(`${n.connectionString}&operationTimeout=30000`));
      const pad = "p".repeat(PAD_BYTES);
      // Two streams, interleaved in the log: i counts each stream's events.
      for (let i = 0; i < EVENTS; i++) {
        for (const stream of ["big-a", "big-b"])
          await c.appendToStream(stream, jsonEvent({ type: "Big", data: { i, pad } }));
      }
      const all = Array.from({ length: EVENTS }, (_, i) => i);

      // HTTP: a request for 4,096 events answers 6 of them, then pages on.
      const forwards = await pages(
        n,
        "/streams/big-a?count=4096",
        (p) => `/streams/big-a?count=4096&from=${p.nextRevision}`,
      );
      expect(forwards[0]!.events.length).toBe(6);
      expect(forwards[0]!.nextRevision).toBe("6");
      expect(indexes(forwards)).toEqual(all);
      const backwards = await pages(
        n,
        "/streams/big-b?count=4096&from=end&direction=backwards",
        (p) => `/streams/big-b?count=4096&from=${p.nextRevision}&direction=backwards`,
      );
      expect(indexes(backwards)).toEqual([...all].reverse());
      const allPages = await pages(
        n,
        "/streams/%24all?count=4096",
        (p) => `/streams/%24all?count=4096&from=${p.nextPosition}`,
      );
      expect(allPages.length).toBeGreaterThan(5);
      const ours = allPages.flatMap((p) => p.events).filter((e) => e.streamId.startsWith("big-"));
      expect(ours.map((e) => `${e.streamId}/${e.revision}`)).toEqual(
        all.flatMap((i) => [`big-a/${i}`, `big-b/${i}`]),
      );

      // The native protocol: the client pages on by itself.
      const read: number[] = [];
      for await (const e of c.readStream("big-a", { maxCount: 4_096 }))
        read.push((e.event.data as { i: number }).i);
      expect(read).toEqual(all);
      const back: number[] = [];
      for await (const e of c.readStream("big-b", {
        maxCount: 4_096,
        direction: "backwards",
        fromRevision: "end",
      }))
        back.push((e.event.data as { i: number }).i);
      expect(back).toEqual([...all].reverse());

      // A catch-up subscription from the start gets every event once, in order.
      const seen: string[] = [];
      const subscription = c.subscribeToAll({ fromPosition: "start" });
      const deadline = setTimeout(() => void subscription.unsubscribe(), 30_000);
      try {
        for await (const e of subscription) {
          if (e.event.streamId.startsWith("big-"))
            seen.push(`${e.event.streamId}/${e.event.revision}`);
          if (seen.length === 2 * EVENTS) break;
        }
      } finally {
        clearTimeout(deadline);
      }
      expect(seen).toEqual(all.flatMap((i) => [`big-a/${i}`, `big-b/${i}`]));
    },
    120_000,
  );
});
