// A real chorus-server on disk writes zeros ahead of its log's end (docs/storage.md,
// "Preallocation"); killed with SIGKILL while its appends sit in those zeros, it restarts
// with every acknowledged event, reads the zeros as the end of its log without calling them
// a torn tail, and appends on from there.
import { ChorusClient, ConnectionSettings, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { startNode, waitFor } from "@chorus/testing";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";

/** The node's default preallocation: 4 MiB, far beyond what this test appends. */
const PREALLOCATED_AT_LEAST = 2 * 1024 * 1024;

it("restarts after a SIGKILL with every acknowledged event, the zeros ahead read as the end", async () => {
  const node = await startNode();
  const client = new ChorusClient(
    ConnectionSettings.create()
      .withSingleNode(node.httpEndpoint)
      .keepReconnecting()
      .withReconnectionDelay(50)
      .withDiscoverDelay(50)
      .build(),
  );
  const segment = join(node.dataDir as string, "chunk-000000.log");
  try {
    let last = 0n;
    for (let i = 0; i < 50; i++) {
      const r = await client.appendToStream("zeros", jsonEvent({ type: "E", data: { i } }));
      last = r.position;
    }
    await waitFor(async () => (await stat(segment)).size >= PREALLOCATED_AT_LEAST, {
      timeoutMs: 10_000,
      message: "zeros written ahead of the log's end",
    });
    // Appended after the zeros were there: they land in them, the file does not grow.
    const size = (await stat(segment)).size;
    for (let i = 50; i < 60; i++) {
      const r = await client.appendToStream("zeros", jsonEvent({ type: "E", data: { i } }));
      last = r.position;
    }
    expect((await stat(segment)).size).toBe(size);
    expect(last).toBeLessThan(BigInt(size));

    await node.kill();
    await node.restart();
    const events: ResolvedEvent[] = [];
    for await (const e of client.readStream("zeros")) events.push(e);
    expect(events.map((e) => (e.event.data as { i: number }).i)).toEqual(
      Array.from({ length: 60 }, (_, i) => i),
    );
    const next = await client.appendToStream("zeros", jsonEvent({ type: "E", data: { i: 60 } }), {
      expectedVersion: 59n,
    });
    expect(next.nextExpectedVersion).toBe(60n);
    expect(node.output()).not.toContain("torn tail");
  } finally {
    await client.close();
    await node.stop();
  }
});
