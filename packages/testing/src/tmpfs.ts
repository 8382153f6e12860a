/**
 * A size-limited tmpfs for disk-full tests: a real file system that runs out of space.
 * Mounting needs root; where it cannot be mounted, `mountTmpfs` says why, so a test can skip
 * with the reason.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtemp, open, rm, rmdir, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Tmpfs {
  /** The mount point (a fresh directory). */
  readonly dir: string;
  /**
   * Fills the file system up with a filler file (`.filler` in `dir`) until at most
   * `leaveBytes` (default 0) are free: writes of anything else then fail with ENOSPC.
   */
  fill(leaveBytes?: number): Promise<void>;
  /** Removes the filler file: the space is back. */
  free(): Promise<void>;
  /** Unmounts and removes the mount point. Idempotent; also done when the process exits. */
  unmount(): Promise<void>;
}

/** The name of the filler file `fill()` writes. */
const FILLER = ".filler";

/**
 * Mounts a tmpfs of `sizeBytes` at a fresh temp directory, or returns why it cannot (not
 * root, or `mount -t tmpfs` failed).
 */
export async function mountTmpfs(sizeBytes: number): Promise<Tmpfs | string> {
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  const dir = await mkdtemp(join(tmpdir(), "chorus-tmpfs-"));
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${Math.ceil(sizeBytes / 1024)}k`, "tmpfs", dir]);
  } catch (err) {
    await rmdir(dir);
    return `mount -t tmpfs failed: ${(err as Error).message.split("\n")[0]}`;
  }
  const unmountSync = (): void => {
    try {
      execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    } catch {
      // already unmounted
    }
  };
  process.once("exit", unmountSync);
  let done: Promise<void> | undefined;
  const filler = join(dir, FILLER);
  return {
    dir,
    async fill(leaveBytes = 0) {
      const file = await open(filler, "a");
      try {
        // Big chunks first, then smaller ones for the last bytes. Bounded: the file system
        // holds at most sizeBytes, and each chunk written takes at least a block of it.
        for (const size of [1024 * 1024, 4096, 1]) {
          const chunk = Buffer.alloc(size, 1);
          for (let written = 0; written < sizeBytes; written += size) {
            const st = await statfs(dir);
            if (st.bavail * st.bsize - size < leaveBytes) break;
            try {
              await file.write(chunk);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === "ENOSPC") break;
              throw err;
            }
          }
        }
      } finally {
        await file.close();
      }
    },
    free: () => rm(filler, { force: true }),
    unmount() {
      done ??= (async () => {
        process.removeListener("exit", unmountSync);
        await run("umount", [dir]).catch(() => run("umount", ["-l", dir]));
        await rmdir(dir);
      })();
      return done;
    },
  };
}
