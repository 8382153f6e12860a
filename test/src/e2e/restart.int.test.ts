/**
 * The client against a real on-disk node that restarts: appends in flight are
 * retried with the same event ids (no duplicates, no losses), catch-up
 * subscriptions resume after the last delivered event, and data survives.
 */
import { ChorusClient, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

let node: TestNode;
let client: ChorusClient;

beforeEach(async () => {
  node = await startNode();
  client = new ChorusClient(
    `${node.connectionString}&operationTimeout=20000&reconnectionDelay=50&maxReconnections=1000&queueTimeout=20000`,
  );
});
afterEach(async () => {
  await client?.close();
  await node?.stop();
});

async function readAllOf(stream: string): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of client.readStream(stream, { direction: "forwards", fromRevision: "start" }))
    out.push(e);
  return out;
}

describe("node restarts under the client", () => {
  it("keeps every acknowledged append exactly once across a SIGKILL and restart", async () => {
    const stream = "restart-appends";
    const acked: number[] = [];
    const failed: number[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; i < 10_000 && !stop; i++) {
        try {
          await client.appendToStream(stream, jsonEvent({ type: "N", data: { i } }));
          acked.push(i);
        } catch {
          failed.push(i);
        }
      }
    })();
    await waitFor(() => acked.length >= 200, {
      timeoutMs: 20_000,
      message: "200 appends before the kill",
    });
    await node.kill();
    const beforeRestart = acked.length;
    await node.restart();
    await waitFor(() => acked.length >= beforeRestart + 200, {
      timeoutMs: 30_000,
      message: "appends resume after restart",
    });
    stop = true;
    await writer;

    const stored = (await readAllOf(stream)).map((e) => (e.event.data as { i: number }).i);
    const seen = new Set(stored);
    expect(seen.size).toBe(stored.length); // no duplicates
    for (const i of acked) expect(seen.has(i)).toBe(true); // nothing acknowledged is lost
    // Revisions are gapless.
    const revisions = (await readAllOf(stream)).map((e) => Number(e.event.revision));
    expect(revisions).toEqual(revisions.map((_, k) => k));
    expect(failed).toEqual([]);
  });

  it("resumes a catch-up subscription after the restart with no gap and no repeat", async () => {
    const stream = "restart-subscription";
    for (let i = 0; i < 50; i++)
      await client.appendToStream(stream, jsonEvent({ type: "N", data: { i } }));
    const sub = client.subscribeToStream(stream, { fromRevision: "start" });
    const got: number[] = [];
    const reader = (async () => {
      for await (const e of sub) {
        got.push(Number(e.event.revision));
        if (got.length === 100) break;
      }
    })();
    await waitFor(() => got.length >= 50, { message: "history delivered" });
    await node.kill();
    await node.restart();
    for (let i = 50; i < 100; i++)
      await client.appendToStream(stream, jsonEvent({ type: "N", data: { i } }));
    await reader;
    expect(got).toEqual(Array.from({ length: 100 }, (_, k) => k));
  });

  it("returns the original result for a retried append after a restart", async () => {
    const stream = "restart-idempotent";
    const events = [
      jsonEvent({ type: "A", data: { a: 1 } }),
      jsonEvent({ type: "B", data: { b: 2 } }),
    ];
    const first = await client.appendToStream(stream, events, { expectedVersion: "no_stream" });
    await node.kill();
    await node.restart();
    const again = await client.appendToStream(stream, events, { expectedVersion: "no_stream" });
    expect(again).toEqual(first);
    const any = await client.appendToStream(stream, events, { expectedVersion: "any" });
    expect(any).toEqual(first);
    expect(await readAllOf(stream)).toHaveLength(2);
  });
});
