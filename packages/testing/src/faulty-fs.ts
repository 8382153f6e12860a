/**
 * A disk that fails on demand: a pass-through FUSE file system (fuse/faulty-fs.py, on
 * Debian's python3-fusepy) whose reads, writes or syncs return an I/O error while a test
 * asks. The process using it gets the errors from the kernel, as from a failing disk. Mounting
 * needs root, /dev/fuse and python3-fusepy; where it cannot be mounted, `mountFaultyFs` says
 * why, so a test can skip with the reason.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor } from "./wait.js";

const run = promisify(execFile);

const SCRIPT = fileURLToPath(new URL("../fuse/faulty-fs.py", import.meta.url));
const PYTHON = "/usr/bin/python3";
const MOUNT_TIMEOUT_MS = 10_000;

/** The operations a fault can fail: file reads, file writes (and truncations), syncs. */
export type DiskOperation = "read" | "write" | "fsync";

/** The error a failed operation returns. */
export type DiskErrno = "EIO" | "ENOSPC" | "EROFS";

export interface FaultyFs {
  /** The mount point (a fresh directory). */
  readonly dir: string;
  /**
   * From the next operation on, every one of `operations` fails with `errno` (EIO unless
   * given), until `heal()` or another `fail`.
   */
  fail(operations: readonly DiskOperation[], errno?: DiskErrno): Promise<void>;
  /** Operations succeed again. */
  heal(): Promise<void>;
  /** Unmounts and removes everything. Idempotent; also done when the process exits. */
  unmount(): Promise<void>;
}

/**
 * Mounts a faulty file system at a fresh temp directory (its files kept in another temp
 * directory), or returns why it cannot.
 */
export async function mountFaultyFs(): Promise<FaultyFs | string> {
  if (process.getuid?.() !== 0) return "mounting a FUSE file system needs root";
  if (!existsSync("/dev/fuse")) return "/dev/fuse is missing";
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  try {
    await run(PYTHON, ["-c", "import fusepy"]);
  } catch {
    return "python3-fusepy is not installed (apt-get install python3-fusepy)";
  }
  const root = await mkdtemp(join(tmpdir(), "chorus-faulty-fs-"));
  const dir = join(root, "mnt");
  const backing = join(root, "backing");
  const control = join(root, "control");
  await mkdir(dir);
  await mkdir(backing);

  let exited = false;
  let stderr = "";
  const child: ChildProcess = spawn(PYTHON, [SCRIPT, backing, dir, control], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-2_000);
  });
  child.once("exit", () => (exited = true));

  const unmountSync = (): void => {
    try {
      execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    } catch {
      // not mounted
    }
    child.kill("SIGKILL");
  };
  process.once("exit", unmountSync);

  const mounted = async (): Promise<boolean> =>
    (await readFile("/proc/mounts", "utf8")).split("\n").some((l) => l.split(" ")[1] === dir);
  try {
    await waitFor(async () => exited || (await mounted()), {
      timeoutMs: MOUNT_TIMEOUT_MS,
      message: "the faulty file system to be mounted",
    });
  } catch (err) {
    unmountSync();
    process.removeListener("exit", unmountSync);
    await rm(root, { recursive: true, force: true });
    return `mounting the faulty file system failed: ${(err as Error).message}`;
  }
  if (exited) {
    process.removeListener("exit", unmountSync);
    await rm(root, { recursive: true, force: true });
    return `mounting the faulty file system failed: ${stderr.trim().split("\n").pop() ?? "no reason given"}`;
  }

  const setControl = async (line: string): Promise<void> => {
    // Written aside and renamed, so the file system never reads half a line.
    await writeFile(`${control}.next`, line);
    await rename(`${control}.next`, control);
  };
  let done: Promise<void> | undefined;
  return {
    dir,
    fail: async (operations, errno = "EIO") => {
      if (operations.length === 0) throw new TypeError("fail() needs at least one operation");
      await setControl(`${errno} ${operations.join(",")}\n`);
    },
    heal: () => setControl(""),
    unmount() {
      done ??= (async () => {
        process.removeListener("exit", unmountSync);
        // (Not mounted any more when the file system's process has died.)
        await run("umount", [dir])
          .catch(() => run("umount", ["-l", dir]))
          .catch(() => undefined);
        if (!exited) {
          child.kill("SIGTERM");
          await waitFor(() => exited, { timeoutMs: 2_000 }).catch(() => child.kill("SIGKILL"));
        }
        await rm(root, { recursive: true, force: true });
      })();
      return done;
    },
  };
}
