// A single node whose disk stalls: /health/ready says so (503, naming the stall) while a log
// sync has run past 4 election timeouts, and the node is ready again once the disk answers.
// The stall is the server's test hook (storage/sync-stall.ts), in a real server process.
import { unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ChorusClient, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { closedAfterEach } from "./helpers.js";

/** The default --election-timeout-ms: the node calls a sync stalled after 4 of them. */
const STALLED_AFTER_MS = 4 * 500;

const started = closedAfterEach();

async function readiness(n: TestNode): Promise<{ status: number; message?: string }> {
  const res = await fetch(`http://${n.httpEndpoint}/health/ready`, {
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json()) as { message?: string };
  return { status: res.status, ...(body.message !== undefined && { message: body.message }) };
}

describe("a single node whose disk stalls", () => {
  it("is not ready while a log sync runs past 4 election timeouts, and ready again after", async () => {
    const n = (started.node = await startNode({ env: { CHORUS_TEST_SYNC_STALL: "1" } }));
    const c = (started.client = new ChorusClient(`${n.connectionString}&operationTimeout=30000`));
    const append = (i: number) =>
      c.appendToStream("stalled", jsonEvent({ type: "T", data: { i } }));
    await append(0);
    expect(await readiness(n)).toEqual({ status: 200 });
    const stallMs = 3 * STALLED_AFTER_MS;
    const stallFile = join(n.dataDir!, "sync-stall-ms");
    await writeFile(stallFile, String(stallMs));
    let stalled: { status: number; message?: string } | undefined;
    try {
      // The first stalled sync runs on the event loop (the disk was fast): the node cannot
      // answer until it ends. Slow syncs then go to the thread pool, and the node answers.
      await append(1);
      const second = append(2);
      await waitFor(
        async () => {
          const r = await readiness(n);
          if (r.status === 503) stalled = r;
          return stalled !== undefined;
        },
        { timeoutMs: 2 * stallMs, message: "the node reports the stalled disk" },
      );
      await unlink(stallFile);
      await second;
    } finally {
      await unlink(stallFile).catch(() => undefined);
    }
    expect(stalled?.message).toMatch(/^the disk stalls: a log sync has been running for \d+ ms$/);
    const ranMs = Number(/(\d+) ms$/.exec(stalled!.message!)![1]);
    expect(ranMs).toBeGreaterThanOrEqual(STALLED_AFTER_MS);
    expect(ranMs).toBeLessThan(stallMs + 1_000);
    expect(await readiness(n)).toEqual({ status: 200 });
    const read: ResolvedEvent[] = [];
    for await (const e of c.readStream("stalled")) read.push(e);
    expect(read.map((e) => e.event?.data)).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
  });
});
