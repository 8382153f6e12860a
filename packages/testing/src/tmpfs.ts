/**
 * A size-limited tmpfs for disk-full tests: a real file system that runs out of space.
 * Mounting needs root; where it cannot be mounted, `mountTmpfs` says why, so a test can skip
 * with the reason.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtemp, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Tmpfs {
  /** The mount point (a fresh directory). */
  readonly dir: string;
  /** Unmounts and removes the mount point. Idempotent; also done when the process exits. */
  unmount(): Promise<void>;
}

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
  return {
    dir,
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
