/**
 * Rough in-process numbers for the disk store. Skipped unless CHORUS_PERF=1 (slow, heavy on
 * disk): `CHORUS_PERF=1 npx vitest run packages/server/src/storage/perf.int.test.ts`.
 * CHORUS_PERF_EVENTS sets the size of the recovery test (default 1,000,000).
 */
import { randomUUID } from "node:crypto";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { NewEvent } from "../streams/types.js";
import { createDiskStore } from "./index.js";
import { tempDir } from "./test-helpers.js";

const PAYLOAD = Buffer.from(JSON.stringify({ pad: "x".repeat(88) })); // ~100 bytes

function ev(): NewEvent {
  return {
    id: randomUUID(),
    type: "Bench",
    isJson: true,
    data: PAYLOAD,
    metadata: new Uint8Array(0),
  };
}

function report(row: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(row) + "\n");
}

describe.runIf(process.env.CHORUS_PERF === "1")("disk store performance", () => {
  it("appends sequentially and pipelined", async () => {
    const tmp = await tempDir();
    const store = createDiskStore({ dir: tmp.dir });
    await store.open();
    try {
      const seqN = 2000;
      let t = performance.now();
      for (let i = 0; i < seqN; i++) await store.append(`seq-${i % 10}`, { kind: "any" }, [ev()]);
      report({
        test: "append-seq",
        n: seqN,
        ops_per_s: Math.round(seqN / ((performance.now() - t) / 1000)),
      });

      const pipeN = 50_000;
      const inFlight = 256;
      const syncsBefore = store.stats().syncs;
      t = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < pipeN) {
            next++;
            await store.append(`pipe-${next % 100}`, { kind: "any" }, [ev()]);
          }
        }),
      );
      const syncs = store.stats().syncs - syncsBefore;
      report({
        test: "append-pipelined",
        n: pipeN,
        ops_per_s: Math.round(pipeN / ((performance.now() - t) / 1000)),
        syncs,
      });
      expect(store.stats().events).toBe(seqN + pipeN);
      expect(syncs).toBeLessThan(pipeN / 10);
    } finally {
      await store.close();
      await tmp.remove();
    }
  });

  it("opens a large log quickly, with and without a snapshot", async () => {
    const total = Number(process.env.CHORUS_PERF_EVENTS ?? 1_000_000);
    const streams = 10_000;
    const tmp = await tempDir();
    try {
      const store = createDiskStore({ dir: tmp.dir });
      await store.open();
      let t = performance.now();
      const batch = 100;
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < total / batch; i++) {
        pending.push(
          store.append(`stream-${i % streams}`, { kind: "any" }, Array.from({ length: batch }, ev)),
        );
        if (pending.length >= 64) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
      report({
        test: "append-batch",
        n: total,
        ops_per_s: Math.round(total / ((performance.now() - t) / 1000)),
      });
      await store.close();

      for (const withSnapshot of [true, false]) {
        if (!withSnapshot) await unlink(join(tmp.dir, "index.snapshot"));
        const again = createDiskStore({ dir: tmp.dir });
        t = performance.now();
        await again.open();
        const readyMs = Math.round(performance.now() - t);
        global.gc?.();
        report({
          test: "recovery",
          snapshot: withSnapshot,
          n: total,
          ready_ms: readyMs,
          rss_mb: Math.round(process.memoryUsage().rss / 2 ** 20),
        });
        expect(again.stats().events).toBe(total);
        if (withSnapshot) {
          t = performance.now();
          let from: number | "end" = 0;
          let n = 0;
          for (;;) {
            const page = await again.readAll({
              direction: "forwards",
              fromPosition: from,
              maxCount: 4096,
            });
            n += page.events.length;
            if (page.endOfStream) break;
            from = page.nextPosition;
          }
          report({
            test: "read-all",
            n,
            ops_per_s: Math.round(n / ((performance.now() - t) / 1000)),
          });
          expect(n).toBe(total);
          t = performance.now();
          for (let i = 0; i < 2000; i++) {
            await again.readStream(`stream-${(i * 5) % Math.min(streams, total / batch)}`, {
              direction: "forwards",
              fromRevision: 37,
              maxCount: 20,
            });
          }
          report({
            test: "read-stream-page",
            n: 2000,
            ops_per_s: Math.round(2000 / ((performance.now() - t) / 1000)),
          });
        }
        await again.close();
      }
    } finally {
      await tmp.remove();
    }
  }, 600_000);
});
