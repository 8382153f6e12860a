import { existsSync } from "node:fs";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mountFaultyFs, type FaultyFs } from "./faulty-fs.js";

const mounted = await mountFaultyFs();
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
