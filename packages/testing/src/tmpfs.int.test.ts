import { existsSync } from "node:fs";
import { readFile, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { mountTmpfs } from "./tmpfs.js";

const skipReason = process.getuid?.() === 0 ? null : "mounting a tmpfs needs root";

describe.skipIf(skipReason !== null)(
  `mountTmpfs${skipReason !== null ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    it("fills up (all of it, or all but some bytes), frees, and unmounts", async () => {
      const fs = await mountTmpfs(4 * 1024 * 1024);
      if (typeof fs === "string") throw new Error(fs);
      try {
        const free = async () => {
          const st = await statfs(fs.dir);
          return st.bavail * st.bsize;
        };
        const before = await free();
        expect(before).toBeGreaterThan(3 * 1024 * 1024);

        await fs.fill();
        expect(await free()).toBe(0);
        await expect(writeFile(join(fs.dir, "more"), Buffer.alloc(8192))).rejects.toMatchObject({
          code: "ENOSPC",
        });

        await fs.free();
        expect(await free()).toBe(before);

        await fs.fill(64 * 1024);
        const left = await free();
        expect(left).toBeGreaterThanOrEqual(64 * 1024 - 4096);
        expect(left).toBeLessThanOrEqual(64 * 1024 + 4096);
        await writeFile(join(fs.dir, "small"), "fits");
        expect(await readFile(join(fs.dir, "small"), "utf8")).toBe("fits");
        await fs.free();
      } finally {
        await fs.unmount();
      }
      expect(existsSync(fs.dir)).toBe(false);
    });
  },
);
