// Shared-database mode: an instance cut off from the database in the middle of a write
// transaction holds the head lock, which every instance's writes take. The database ends
// that transaction after IDLE_IN_TRANSACTION_TIMEOUT_MS (2 s) of waiting for the instance,
// so the other instances' writes are held up that long, not until the partition heals.
// (Before, the bound was 15 s: two cuts in five stalled every instance's writes for 15 s.)
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startFaultProxy, startNode, waitFor, type TestNode } from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { sharedPostgres } from "./helpers.js";

const pg = sharedPostgres();

/** How long each cut lasts at least: longer than the bound under test. */
const CUT_MS = 3_500;
/** Cuts at most, and the ones that catch a transaction holding the head lock to wait for. */
const MAX_CUTS = 10;
const CAUGHT_ENOUGH = 2;
/** A pause of the other instance's writes longer than this means the cut caught the lock. */
const CAUGHT_MS = 1_000;
/** The bound: the database's 2 s, then the held-up writes and their answers. */
const BOUND_MS = 5_000;

describe.skipIf(!pg.runs)("an instance cut off from the database mid-write", () => {
  it("holds up the other instances' writes for about 2 s, not until the partition heals", async () => {
    const url = new URL(await pg().createDatabase());
    // The first instance reaches the database through a proxy that can hold its traffic (a
    // partition: nothing is closed); the second connects directly.
    const proxy = await startFaultProxy({ target: { host: pg().host, port: pg().port } });
    const cutUrl = new URL(url);
    cutUrl.host = `${proxy.endpoint.host}:${proxy.endpoint.port}`;
    const nodes: TestNode[] = [];
    const clients: ChorusClient[] = [];
    let stop = false;
    const loops: Promise<void>[] = [];
    try {
      const cut = await startNode({ databaseUrl: cutUrl.toString() });
      nodes.push(cut);
      const other = await startNode({ databaseUrl: url.toString() });
      nodes.push(other);
      const cutClient = new ChorusClient(
        `${cut.connectionString}&operationTimeout=60000&maxRetries=0`,
      );
      const otherClient = new ChorusClient(`${other.connectionString}&operationTimeout=60000`);
      clients.push(cutClient, otherClient);

      // The cut instance appends to a new stream each time: a transaction that takes the head
      // lock and reads, then writes what it decided, in a second round trip.
      let cutAcked = 0;
      for (let w = 0; w < 4; w++) {
        loops.push(
          (async () => {
            for (let i = 0; !stop && i < 100_000; i++) {
              try {
                await cutClient.appendToStream(`cut-${w}-${i}`, jsonEvent({ type: "T", data: {} }));
                cutAcked++;
              } catch {
                // Cut off: the outcome is unknown, and does not matter here.
              }
            }
          })(),
        );
      }
      // The other instance's writes, timed.
      let otherAcked = 0;
      let lastAckMs = Date.now();
      let longestGapMs = 0;
      loops.push(
        (async () => {
          for (let i = 0; !stop && i < 1_000_000; i++) {
            await otherClient.appendToStream("other", jsonEvent({ type: "T", data: { i } }));
            const now = Date.now();
            longestGapMs = Math.max(longestGapMs, now - lastAckMs);
            lastAckMs = now;
            otherAcked++;
          }
        })(),
      );

      const stalls: number[] = [];
      for (let cuts = 0; cuts < MAX_CUTS; cuts++) {
        if (stalls.filter((ms) => ms > CAUGHT_MS).length >= CAUGHT_ENOUGH) break;
        const cutBefore = cutAcked;
        await waitFor(() => cutAcked > cutBefore + 20, {
          timeoutMs: 30_000,
          message: "the cut instance writing",
        });
        const otherBefore = otherAcked;
        longestGapMs = 0;
        lastAckMs = Date.now();
        proxy.blackhole();
        const cutAt = Date.now();
        await waitFor(() => Date.now() - cutAt >= CUT_MS && otherAcked > otherBefore, {
          timeoutMs: 30_000,
          message: "the other instance's writes going on during the cut",
        });
        stalls.push(longestGapMs);
        proxy.heal();
      }
      // Some cut caught a transaction holding the head lock (else this shows nothing), and
      // none held the other instance up for long.
      expect(Math.max(...stalls), `stalls ${stalls.join(", ")} ms`).toBeGreaterThan(CAUGHT_MS);
      expect(Math.max(...stalls), `stalls ${stalls.join(", ")} ms`).toBeLessThan(BOUND_MS);
    } finally {
      stop = true;
      proxy.heal();
      await Promise.all(loops.map((l) => l.catch(() => undefined)));
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      await proxy.close();
    }
  }, 240_000);
});
