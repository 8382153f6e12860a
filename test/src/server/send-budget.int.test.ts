// A node bounds the output it holds for all its native clients together
// (--send-budget-bytes). Each connection alone is bounded (past its high-water mark its reads
// and subscriptions wait), but a page of events is up to half a frame, and many connections
// that read nothing would each hold pages.
//
// One real node (frames up to 1 MiB, a budget of 4 MiB) holding ~40 MB of events; four raw
// connections each send 64 reads of `$all` and read nothing. Connections are closed until
// what the node holds fits the budget; a client that reads its answers reads all of `$all`
// meanwhile, and appends. HTTP answers count too: of eight raw HTTP connections that each ask
// for a page of ~4 MiB and read nothing, the node closes all but what fits.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import type { Socket } from "node:net";
import type WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import {
  fillLarge,
  LARGE_EVENTS,
  metric,
  readAnswer,
  unreadHttpGet,
  unreadReads,
} from "./unread-output.js";

const HOLDERS = 4;
const READS = 64;

/** Raw HTTP connections that each ask for a page and read none of it yet. */
const HTTP_HOLDERS = 8;

let node: TestNode | undefined;
const sockets: WebSocket[] = [];
const httpSockets: Socket[] = [];

afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const s of httpSockets.splice(0)) s.destroy();
  await node?.stop();
  node = undefined;
});

describe("the send budget", () => {
  it(
    "closes the connections holding the most unsent output; a client that reads is served",
    { timeout: 120_000 },
    async () => {
      const n = (node = await startNode({
        memDb: true,
        args: ["--max-frame-bytes", "1MiB", "--send-budget-bytes", "4MiB"],
      }));
      const client = new ChorusClient(n.connectionString);
      try {
        await fillLarge(client);
        for (let i = 0; i < HOLDERS; i++) sockets.push(await unreadReads(n, READS));
        await waitFor(async () => (await metric(n, "chorus_send_budget_evictions_total")) >= 1, {
          timeoutMs: 30_000,
          intervalMs: 100,
          message: "a connection closed for the budget",
        });
        expect(n.output()).toMatch(/the budget \(--send-budget-bytes\) is spent/);

        // A client that reads its answers reads every event meanwhile, and appends.
        let read = 0;
        for await (const _ of client.readAll({ fromPosition: "start", maxCount: 1_000_000 }))
          read++;
        expect(read).toBeGreaterThanOrEqual(LARGE_EVENTS);
        await client.appendToStream("after", jsonEvent({ type: "After", data: {} }));
      } finally {
        await client.close();
      }
    },
  );

  it(
    "closes the HTTP connections holding the most unread answers; the others and a client that reads are served",
    { timeout: 120_000 },
    async () => {
      const n = (node = await startNode({
        memDb: true,
        args: ["--max-frame-bytes", "4MiB", "--send-budget-bytes", "10MiB"],
      }));
      const client = new ChorusClient(n.connectionString);
      try {
        await fillLarge(client);
        // Each asks for a page of ~2 KB events (a page ends before 4 MiB of events: ~4.4 MB of
        // JSON, more than the sockets take) and reads nothing yet: the budget holds two such
        // answers, not eight.
        const path = "/streams/filled-0?count=4096";
        for (let i = 0; i < HTTP_HOLDERS; i++) httpSockets.push(unreadHttpGet(n, path));
        // Every answer is built before any is read: none can make room for another.
        const served = 'chorus_reads_total{interface="http",kind="stream"}';
        await waitFor(async () => (await metric(n, served)) >= HTTP_HOLDERS, {
          timeoutMs: 30_000,
          intervalMs: 100,
          message: "every page answered",
        });
        expect(await metric(n, "chorus_send_budget_evictions_total")).toBeGreaterThanOrEqual(1);
        expect(n.output()).toMatch(/the budget \(--send-budget-bytes\) is spent/);

        // Read now: the connections closed for the budget end before their answer; the ones
        // that fitted get it whole.
        const answers = await Promise.all(httpSockets.map((socket) => readAnswer(socket)));
        const whole = answers.filter((a) => a === "whole").length;
        expect(answers.filter((a) => a === "cut short").length).toBeGreaterThanOrEqual(1);
        expect(whole).toBeGreaterThanOrEqual(1);
        expect(whole).toBeLessThanOrEqual(2);

        // A client that reads its answers is served meanwhile: the same page, whole.
        const res = await fetch(`http://${n.httpEndpoint}${path}`, {
          signal: AbortSignal.timeout(30_000),
        });
        expect(res.status).toBe(200);
        const page = (await res.json()) as { events: unknown[] };
        expect(page.events.length).toBeGreaterThan(1_000);
        await client.appendToStream("after", jsonEvent({ type: "After", data: {} }));
      } finally {
        await client.close();
      }
    },
  );

  it("must leave room for a connection's output: smaller than two frames is refused", async () => {
    await expect(
      startNode({
        memDb: true,
        args: ["--max-frame-bytes", "2MiB", "--send-budget-bytes", "3MiB"],
        startTimeoutMs: 10_000,
      }),
    ).rejects.toThrow(/sendBudgetBytes must be at least twice maxFrameBytes/);
  });
});
