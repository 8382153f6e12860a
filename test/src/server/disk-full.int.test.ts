/**
 * A real chorus-server process whose data directory is a 4 MiB tmpfs (mounting needs root;
 * skipped with the reason otherwise): once the disk is full, the client gets a clear
 * StorageFullError, reads still work, and appends succeed again once space is freed.
 */
import { ChorusClient, StorageFullError, jsonEvent, type ResolvedEvent } from "@chorus/client";
import { mountTmpfs, startNode, waitFor, type TestNode } from "@chorus/testing";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const mounted = await mountTmpfs(4 * 1024 * 1024);
const skipReason = typeof mounted === "string" ? mounted : null;

describe.skipIf(skipReason !== null)(
  `chorus-server on a full 4 MiB disk${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let node: TestNode | undefined;
    let client: ChorusClient | undefined;

    afterAll(async () => {
      await client?.close();
      await node?.stop();
      if (typeof mounted !== "string") await mounted.unmount();
    });

    it("refuses appends with StorageFullError, keeps serving reads, and writes again once space is freed", async () => {
      if (typeof mounted === "string") throw new Error(mounted);
      const filler = join(mounted.dir, "filler");
      await writeFile(filler, Buffer.alloc(1024 * 1024, 1));
      const dataDir = join(mounted.dir, "db");
      await mkdir(dataDir);
      node = await startNode({ dataDir });
      client = new ChorusClient(node.connectionString);

      const pad = "x".repeat(16_000);
      let acked = 0;
      let refused: unknown;
      for (let i = 0; i < 1000 && refused === undefined; i++) {
        try {
          await client.appendToStream("full", jsonEvent({ type: "Filled", data: { i, pad } }));
          acked++;
        } catch (err) {
          refused = err;
        }
      }
      expect(acked).toBeGreaterThan(50);
      expect(refused).toBeInstanceOf(StorageFullError);
      expect((refused as StorageFullError).code).toBe("STORAGE_FULL");
      expect((refused as Error).message).toMatch(/disk is full/);
      expect((refused as Error).message).toMatch(/reads still work/);

      // Still full: the next append is refused too, and reads serve every acknowledged event.
      await expect(
        client.appendToStream("other", jsonEvent({ type: "T", data: { pad } })),
      ).rejects.toBeInstanceOf(StorageFullError);
      const read = async (stream: string): Promise<ResolvedEvent[]> => {
        const out: ResolvedEvent[] = [];
        for await (const e of client!.readStream(stream, { fromRevision: "start" })) out.push(e);
        return out;
      };
      const events = await read("full");
      expect(events.map((e) => Number(e.event.revision))).toEqual(
        Array.from({ length: acked }, (_, i) => i),
      );

      // Space returns: appends succeed again without a restart.
      await rm(filler);
      const result = await waitFor(
        async () => {
          try {
            return await client!.appendToStream(
              "after",
              jsonEvent({ type: "Resumed", data: { ok: true } }),
            );
          } catch (err) {
            if (err instanceof StorageFullError) return undefined;
            throw err;
          }
        },
        { timeoutMs: 15_000, intervalMs: 100, message: "an append to succeed after freeing space" },
      );
      expect(result.nextExpectedVersion).toBe(0n);
      expect((await read("after")).length).toBe(1);
      expect((await read("full")).length).toBe(acked);
      expect(node.running).toBe(true);
    });
  },
);
