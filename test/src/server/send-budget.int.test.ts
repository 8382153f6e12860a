// A node bounds the output it holds for all its native clients together
// (--send-budget-bytes). Each connection alone is bounded (past its high-water mark its reads
// and subscriptions wait), but a page of events is up to half a frame, and many connections
// that read nothing would each hold pages.
//
// One real node (frames up to 1 MiB, a budget of 4 MiB) holding ~40 MB of events; four raw
// connections each send 64 reads of `$all` and read nothing. Connections are closed until
// what the node holds fits the budget; a client that reads its answers reads all of `$all`
// meanwhile, and appends.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import type WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { fillLarge, LARGE_EVENTS, metric, unreadReads } from "./unread-output.js";

const HOLDERS = 4;
const READS = 64;

let node: TestNode | undefined;
const sockets: WebSocket[] = [];

afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
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
