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
import { chorus, encodeFrame } from "@chorus/protocol";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";

const EVENT_BYTES = 2_000;
const EVENTS = 20_000;
const HOLDERS = 4;
const READS = 64;

let node: TestNode | undefined;
const sockets: WebSocket[] = [];

afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await node?.stop();
  node = undefined;
});

async function metric(n: TestNode, name: string): Promise<number> {
  const res = await fetch(`http://${n.httpEndpoint}/metrics`, {
    signal: AbortSignal.timeout(5_000),
  });
  const line = (await res.text()).split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/** A connection that sends READS reads of `$all` from the start and reads nothing back. */
async function holder(n: TestNode): Promise<WebSocket> {
  const ws = new WebSocket(`ws://${n.extTcp.host}:${n.extTcp.port}/`);
  sockets.push(ws);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  for (let id = 1; id <= READS; id++) {
    ws.send(
      encodeFrame({
        correlationId: id,
        readAll: { fromPosition: 0, maxCount: 4096, direction: chorus.Direction.FORWARDS },
      }),
    );
  }
  return ws;
}

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
        const big = "x".repeat(EVENT_BYTES);
        for (let b = 0; b < EVENTS / 100; b++) {
          await client.appendToStream(
            `filled-${b % 10}`,
            Array.from({ length: 100 }, (_, i) => jsonEvent({ type: "T", data: { big, i } })),
          );
        }
        for (let i = 0; i < HOLDERS; i++) await holder(n);
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
        expect(read).toBeGreaterThanOrEqual(EVENTS);
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
