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

    it("refuses a power loss while a process uses the file system, changing nothing", async () => {
      const file = join(fs.dir, "busy");
      await writeFile(file, "unsynced");
      const fh = await open(file, "r");
      try {
        await expect(fs.powerLoss()).rejects.toThrow(/needs every process using .* gone first/);
        expect(await readFile(file, "utf8")).toBe("unsynced");
      } finally {
        await fh.close();
      }
      await fs.powerLoss();
      expect(existsSync(file)).toBe(false);
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
