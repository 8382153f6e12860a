/**
 * A real full disk: a 4 MiB tmpfs (mounting needs root; skipped with the reason otherwise)
 * filled by the store's own appends, then space freed by deleting a filler file.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreError } from "../streams/types.js";
import { createDiskStore, type LogStore } from "./index.js";
import { newEvent } from "./test-helpers.js";

const run = promisify(execFile);
const TMPFS_SIZE = "4m";
const FILLER_BYTES = 1024 * 1024;

/** Mounts a size-limited tmpfs at a fresh directory, or says why it cannot. */
async function mountTmpfs(): Promise<{ dir: string; unmount: () => Promise<void> } | string> {
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  const dir = await mkdtemp(join(tmpdir(), "chorus-full-"));
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE}`, "tmpfs", dir]);
  } catch (err) {
    await rmdir(dir);
    return `mount -t tmpfs failed: ${(err as Error).message.split("\n")[0]}`;
  }
  return {
    dir,
    unmount: async () => {
      await run("umount", [dir]);
      await rmdir(dir);
    },
  };
}

async function waitUntil(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const probe = await mountTmpfs();
if (typeof probe !== "string") await probe.unmount();
const skipReason = typeof probe === "string" ? probe : null;

describe.skipIf(skipReason !== null)(
  `a full disk on a ${TMPFS_SIZE} tmpfs${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let mount: { dir: string; unmount: () => Promise<void> };
    const stores: LogStore[] = [];

    beforeAll(async () => {
      const m = await mountTmpfs();
      if (typeof m === "string") throw new Error(m);
      mount = m;
    });
    afterAll(async () => {
      for (const s of stores.splice(0)) await s.abort();
      await mount?.unmount();
    });

    it("refuses writes with STORAGE_FULL, acknowledges only what it wrote, keeps reads, resumes when space returns", async () => {
      const filler = join(mount.dir, "filler");
      await writeFile(filler, Buffer.alloc(FILLER_BYTES, 1));
      const dbDir = join(mount.dir, "db");
      await mkdir(dbDir);
      const open = async (): Promise<LogStore> => {
        const s = createDiskStore({
          dir: dbDir,
          segmentBytes: 1024 * 1024,
          storageFullProbeEveryMs: 10,
        });
        stores.push(s);
        await s.open();
        return s;
      };
      const store = await open();

      // Fill the disk with the store's own appends, several at a time (group commits).
      const acked: string[] = [];
      const refused: unknown[] = [];
      for (let round = 0; round < 1000 && refused.length === 0; round++) {
        const batch = Array.from({ length: 8 }, (_, i) =>
          newEvent({ round, i, pad: "x".repeat(16_000) }),
        );
        const results = await Promise.allSettled(
          batch.map((e, i) => store.append(`fill-${i}`, { kind: "any" }, [e])),
        );
        results.forEach((r, i) => {
          if (r.status === "fulfilled" && r.value.ok) acked.push(batch[i]!.id);
          else if (r.status === "rejected") refused.push(r.reason);
        });
      }
      expect(refused.length).toBeGreaterThan(0);
      expect(acked.length).toBeGreaterThan(50);
      for (const err of refused) {
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe("STORAGE_FULL");
        expect((err as StoreError).message).toMatch(/^the disk is full \(ENOSPC/);
      }
      expect(store.stats().storageFull).toBe(true);

      // The log is back to its durable end, on disk too.
      const logBytes = async (): Promise<number> => {
        const names = (await readdir(dbDir)).filter((n) => n.startsWith("chunk-"));
        const sizes = await Promise.all(names.map(async (n) => (await stat(join(dbDir, n))).size));
        return sizes.reduce((a, b) => a + b, 0);
      };
      await waitUntil(async () => (await logBytes()) === store.durableEnd);
      expect(store.endPosition).toBe(store.durableEnd);

      // Full: refused at once; reads served, with every acknowledged event.
      await expect(
        store.append("after", { kind: "any" }, [newEvent({ while: "full" })]),
      ).rejects.toMatchObject({ code: "STORAGE_FULL" });
      const readIds = async (s: LogStore): Promise<string[]> =>
        (await s.readAll({ direction: "forwards", fromPosition: 0, maxCount: 100_000 })).events.map(
          (e) => e.id,
        );
      expect(await readIds(store)).toEqual(acked);

      // Space returns: writes resume by themselves.
      await rm(filler);
      await waitUntil(() => !store.stats().storageFull);
      const late = newEvent({ after: "space returned" });
      const r = await store.append("after", { kind: "no_stream" }, [late]);
      expect(r.ok).toBe(true);
      await store.close();

      // Only what was acknowledged is in the log.
      const reopened = await open();
      expect(await readIds(reopened)).toEqual([...acked, late.id]);
      await reopened.close();
    });
  },
);
