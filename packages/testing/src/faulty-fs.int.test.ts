import { constants, existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mountFaultyFs, type FaultyFs } from "./faulty-fs.js";

const mounted = await mountFaultyFs();

/** Syncs directory `dir` (its entries become durable). */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
const skipReason = typeof mounted === "string" ? mounted : null;

describe.skipIf(skipReason !== null)(
  `mountFaultyFs${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    const fs = mounted as FaultyFs;

    afterAll(async () => {
      await fs.unmount();
    });

    it("passes files through until told to fail, with the errno asked for, and heals", async () => {
      const file = join(fs.dir, "data");
      await writeFile(file, "hello");
      expect(await readFile(file, "utf8")).toBe("hello");

      const fh = await open(file, "r+");
      try {
        await fh.write("a", 0);
        await fh.datasync();
        await fs.fail(["fsync"]);
        await expect(fh.datasync()).rejects.toMatchObject({ code: "EIO" });
        // Only syncs fail: writes go on.
        await fh.write("b", 1);

        await fs.fail(["write", "fsync"], "ENOSPC");
        await expect(fh.write("c", 2)).rejects.toMatchObject({ code: "ENOSPC" });
        await expect(fh.sync()).rejects.toMatchObject({ code: "ENOSPC" });

        await fs.heal();
        await fh.write("c", 2);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      expect(await readFile(file, "utf8")).toBe("abclo");

      // A file opened afresh is read from the file system, not from the page cache.
      await fs.fail(["read"]);
      await expect(readFile(file, "utf8")).rejects.toMatchObject({ code: "EIO" });
      await fs.heal();
      expect(await readFile(file, "utf8")).toBe("abclo");
      await expect(fs.fail([])).rejects.toThrow(/at least one operation/);

      // A slow disk: each sync takes 300 ms longer, until healed.
      await fs.slow(["fsync"], 300);
      const slow = await open(file, "r+");
      try {
        let started = performance.now();
        await slow.datasync();
        expect(performance.now() - started).toBeGreaterThanOrEqual(290);
        await fs.heal();
        started = performance.now();
        await slow.datasync();
        expect(performance.now() - started).toBeLessThan(290);
      } finally {
        await slow.close();
      }
      await expect(fs.slow(["fsync"], -1)).rejects.toThrow(/delayMs/);
    });

    it("loses power: what was synced stays, what was not is gone", async () => {
      const root = join(fs.dir, "power");
      await rm(root, { recursive: true, force: true });
      await mkdir(root);
      await syncDir(fs.dir);
      const at = (name: string): string => join(root, name);
      const read = (name: string): Promise<string | undefined> =>
        readFile(at(name), "utf8").catch(() => undefined);

      // Durable: synced data, and directory entries whose directory was synced.
      await writeFile(at("kept"), "durable", { flush: true });
      await writeFile(at("dsync"), "abc", { flush: true });
      await writeFile(at("renamed-away"), "moved", { flush: true });
      await writeFile(at("removed"), "still here", { flush: true });
      await mkdir(at("other"));
      await writeFile(at("other/replaced"), "old", { flush: true });
      await syncDir(root);
      await syncDir(at("other"));

      // Data not synced: overwritten and appended bytes are lost.
      const fh = await open(at("kept"), "r+");
      await fh.write("XX", 0);
      await fh.write(" and more", 7);
      await fh.close();
      // Synced, but its directory entry was not.
      await writeFile(at("new"), "synced data", { flush: true });
      // Directory operations whose directory was not synced.
      await rename(at("renamed-away"), at("moved-to"));
      await unlink(at("removed"));
      await mkdir(at("sub"));
      await writeFile(join(at("sub"), "inner"), "x", { flush: true });
      await syncDir(at("sub"));
      // The durable replacement of a file (in another directory): the rename and the directory
      // synced.
      await writeFile(at("other/replaced.tmp"), "new", { flush: true });
      await rename(at("other/replaced.tmp"), at("other/replaced"));
      await syncDir(at("other"));
      await writeFile(at("unsynced-new"), "y");
      // A write through a descriptor opened with O_DSYNC is durable when it returns.
      const dsync = await open(at("dsync"), constants.O_RDWR | constants.O_DSYNC);
      await dsync.write("Z", 0);
      await dsync.close();

      const report = await fs.powerLoss();
      expect(await read("kept")).toBe("durable");
      expect(await read("dsync")).toBe("Zbc");
      expect(await read("new")).toBeUndefined();
      expect(await read("renamed-away")).toBe("moved");
      expect(await read("moved-to")).toBeUndefined();
      expect(await read("removed")).toBe("still here");
      expect(existsSync(at("sub"))).toBe(false);
      expect(await read("other/replaced")).toBe("new");
      expect(await read("other/replaced.tmp")).toBeUndefined();
      expect(await read("unsynced-new")).toBeUndefined();
      expect(report.files).toBeGreaterThanOrEqual(2);
      expect(report.writes).toBeGreaterThanOrEqual(3);
      // new, the rename, the removal, sub, unsynced-new.
      expect(report.directoryOps).toBe(5);

      // The file system is back, healed, and works as before.
      await writeFile(at("after"), "after", { flush: true });
      expect(await read("after")).toBe("after");
      await rm(root, { recursive: true });
    });

    it("a torn power loss keeps part of what was not durable, page by page, at random", async () => {
      const page = 4096;
      const file = join(fs.dir, "torn");
      const seen = { kept: 0, lost: 0 };
      for (let seed = 1; seed <= 4; seed++) {
        await writeFile(file, Buffer.alloc(8 * page, "a"), { flush: true });
        await syncDir(fs.dir);
        const fh = await open(file, "r+");
        await fh.write(Buffer.alloc(8 * page, "b"), 0, 8 * page, 0);
        await fh.write(Buffer.alloc(8 * page, "c"), 0, 8 * page, 8 * page);
        await fh.close();

        const report = await fs.powerLoss({ torn: { seed } });
        const after = await readFile(file);
        expect(after.length).toBeGreaterThanOrEqual(8 * page);
        expect(after.length).toBeLessThanOrEqual(16 * page);
        let keptHere = 0;
        for (let p = 0; p * page < after.length; p++) {
          const bytes = new Set(after.subarray(p * page, (p + 1) * page));
          expect(bytes.size).toBe(1);
          const [byte] = [...bytes];
          // Each page whole: what was durable, or what was written (zeros: appended, not kept).
          expect(p < 8 ? [0x61, 0x62] : [0x63, 0]).toContain(byte);
          if (byte === 0x62 || byte === 0x63) keptHere++;
          else seen.lost++;
        }
        expect(report.keptPages).toBe(keptHere);
        seen.kept += keptHere;
      }
      expect(seen.kept).toBeGreaterThan(0);
      expect(seen.lost).toBeGreaterThan(0);
      await rm(file);
      await expect(fs.powerLoss({ torn: { seed: -1 } })).rejects.toThrow(/seed/);
      await expect(fs.powerLoss({ tron: true } as never)).rejects.toThrow(/unknown option tron/);
    });

    it("syncAll makes what is there durable", async () => {
      const dir = join(fs.dir, "copied", "deep");
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "file"), "copied");
      await fs.syncAll();
      await writeFile(join(dir, "later"), "not synced");
      const lost = await fs.powerLoss();
      expect(await readFile(join(dir, "file"), "utf8")).toBe("copied");
      expect(existsSync(join(dir, "later"))).toBe(false);
      expect(lost.directoryOps).toBe(1);
      await rm(join(fs.dir, "copied"), { recursive: true });
    });

    it("cuts the power before stopping its users: a sync after the cut makes nothing durable", async () => {
      const file = join(fs.dir, "busy");
      await writeFile(file, "synced", { flush: true });
      await syncDir(fs.dir);
      const fh = await open(file, "r+");
      await fh.write("SYNCED", 0);
      // Still in use: refused, and the power stays off.
      await expect(fs.powerLoss()).rejects.toThrow(/gone \(it is busy; the power stays off/);
      // Too late: the power is off.
      await expect(fh.datasync()).rejects.toMatchObject({ code: "EIO" });
      await fh.close();
      // stop() runs with the power off (here: nothing left to stop).
      let stopped = false;
      const losing = fs.powerLoss({
        stop: async () => {
          stopped = true;
        },
      });
      // A second one while it runs would ignore its options: refused.
      await expect(fs.powerLoss()).rejects.toThrow(/a power loss of this file system is under way/);
      await losing;
      expect(stopped).toBe(true);
      expect(await readFile(file, "utf8")).toBe("synced");
      await rm(file);
    });

    it("unmounts and removes its directories, idempotently", async () => {
      const other = await mountFaultyFs();
      if (typeof other === "string") throw new Error(other);
      await writeFile(join(other.dir, "x"), "x");
      await Promise.all([other.unmount(), other.unmount()]);
      expect(existsSync(other.dir)).toBe(false);
      const mounts = await readFile("/proc/mounts", "utf8");
      expect(mounts).not.toContain(other.dir);
    });
  },
);
