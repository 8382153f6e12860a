/**
 * A disk that fails on demand: a pass-through FUSE file system (fuse/faulty-fs.py, on
 * Debian's python3-fusepy) whose reads, writes or syncs return an I/O error while a test
 * asks, or that are slow. The process using it gets the errors from the kernel, as from a
 * failing disk. It can also lose power: what was not yet durable in the strict POSIX sense
 * (data not synced, directory entries whose directory was not synced) is lost, as after a
 * machine's crash (the approach of LazyFS, which Jepsen uses for the same purpose). Mounting
 * needs root, /dev/fuse and python3-fusepy; where it cannot be mounted, `mountFaultyFs` says
 * why, so a test can skip with the reason.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
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

/** What a power loss undid: what the disk's cache still held when the power went. */
export interface PowerLossReport {
  /** Files whose data written since their last sync was lost (cut back, pages put back). */
  readonly files: number;
  /** The writes (and truncations) to those files that were lost. */
  readonly writes: number;
  /** Directory entries created, removed or renamed whose directory was not synced since, undone. */
  readonly directoryOps: number;
  /** Torn: pages of not yet durable data the disk had written all the same (kept). */
  readonly keptPages: number;
}

export interface PowerLossOptions {
  /**
   * Stops every process using the file system (for example `() => node.kill()`): called once
   * the power is cut, so nothing they do from then on becomes durable, not even a sync that
   * was under way (syncs fail with EIO from the cut: a process still running cannot tell
   * anyone that data is durable when it is not). Without it they must be gone already.
   */
  readonly stop?: () => Promise<void>;
  /**
   * The disk had written part of what was not durable, chosen at random (with `seed`): each
   * changed page kept or lost, a random length of what was appended (its pages kept or
   * zeros), a random prefix of the directory operations. Without it everything not durable
   * is lost.
   */
  readonly torn?: { readonly seed: number };
}

export interface FaultyFs {
  /** The mount point (a fresh directory). */
  readonly dir: string;
  /**
   * From the next operation on, every one of `operations` fails with `errno` (EIO unless
   * given), until `heal()` or another `fail`.
   */
  fail(operations: readonly DiskOperation[], errno?: DiskErrno): Promise<void>;
  /**
   * From the next operation on, every one of `operations` takes `delayMs` longer (a slow
   * disk), until `heal()` or a `fail`.
   */
  slow(operations: readonly DiskOperation[], delayMs: number): Promise<void>;
  /** Operations succeed again, at full speed. */
  heal(): Promise<void>;
  /**
   * The machine loses power: everything not yet durable in the strict POSIX sense is lost,
   * that is file data written since the file's last fsync/fdatasync, and directory entries
   * created, removed or renamed since their directory's last fsync. The power is cut first,
   * then `stop` stops the processes using the file system (they die with the machine); they
   * must all be gone then, or this throws (and the power stays off: stop them and call it
   * again). The file system comes back at the same mount point, healed, as the disk would be
   * found when the power comes back.
   */
  powerLoss(options?: PowerLossOptions): Promise<PowerLossReport>;
  /**
   * Syncs every file and directory on the mount, so what is there now survives a power loss
   * (for data a test put there itself, by a copy that does not sync).
   */
  syncAll(): Promise<void>;
  /** Unmounts and removes everything. Idempotent; also done when the process exits. */
  unmount(): Promise<void>;
}

interface Mounted {
  readonly child: ChildProcess;
  /** Resolves with what the process printed once it exits. */
  readonly exited: Promise<string>;
  hasExited(): boolean;
  stderr(): string;
}

/** Syncs `path` and, when it is a directory, everything below it (deepest first). */
async function syncTree(path: string, isDir: boolean): Promise<void> {
  if (isDir) {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      if (entry.isDirectory() || entry.isFile())
        await syncTree(join(path, entry.name), entry.isDirectory());
    }
  }
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Starts the file system's process on `dir`; resolves once mounted, or with why not. */
async function launch(
  backing: string,
  dir: string,
  control: string,
  stash: string,
): Promise<Mounted | string> {
  let exited = false;
  let stdout = "";
  let stderr = "";
  const child: ChildProcess = spawn(PYTHON, [SCRIPT, backing, dir, control, stash], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-2_000);
  });
  const done = new Promise<string>((resolve) =>
    // "close": once its output is read to the end too ("exit" may come before).
    child.once("close", () => {
      exited = true;
      resolve(stdout);
    }),
  );
  const mounted = async (): Promise<boolean> =>
    (await readFile("/proc/mounts", "utf8")).split("\n").some((l) => l.split(" ")[1] === dir);
  try {
    await waitFor(async () => exited || (await mounted()), {
      timeoutMs: MOUNT_TIMEOUT_MS,
      message: "the faulty file system to be mounted",
    });
  } catch (err) {
    child.kill("SIGKILL");
    return `mounting the faulty file system failed: ${(err as Error).message}`;
  }
  if (exited) {
    return `mounting the faulty file system failed: ${stderr.trim().split("\n").pop() ?? "no reason given"}`;
  }
  return { child, exited: done, hasExited: () => exited, stderr: () => stderr };
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
  const stash = join(root, "stash");
  await Promise.all([mkdir(dir), mkdir(backing), mkdir(stash)]);

  let current: Mounted | undefined;
  const unmountSync = (): void => {
    try {
      execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    } catch {
      // not mounted
    }
    current?.child.kill("SIGKILL");
  };
  process.once("exit", unmountSync);
  const first = await launch(backing, dir, control, stash);
  if (typeof first === "string") {
    process.removeListener("exit", unmountSync);
    await rm(root, { recursive: true, force: true });
    return first;
  }
  current = first;

  const setControl = async (line: string): Promise<void> => {
    // Written aside and renamed, so the file system never reads half a line.
    await writeFile(`${control}.next`, line);
    await rename(`${control}.next`, control);
  };
  let done: Promise<void> | undefined;
  let losing: Promise<PowerLossReport> | undefined;
  return {
    dir,
    fail: async (operations, errno = "EIO") => {
      if (operations.length === 0) throw new TypeError("fail() needs at least one operation");
      await setControl(`${errno} ${operations.join(",")}\n`);
    },
    slow: async (operations, delayMs) => {
      if (operations.length === 0) throw new TypeError("slow() needs at least one operation");
      if (!Number.isSafeInteger(delayMs) || delayMs < 0)
        throw new TypeError(`slow(): delayMs must be an integer >= 0, not ${delayMs}`);
      await setControl(`delay=${delayMs} ${operations.join(",")}\n`);
    },
    heal: () => setControl(""),
    powerLoss(options = {}) {
      if (done !== undefined) return Promise.reject(new Error("the file system is unmounted"));
      if (losing !== undefined) {
        // Its options (stop, torn) would be silently ignored: refused instead.
        return Promise.reject(new Error("a power loss of this file system is under way"));
      }
      const unknown = Object.keys(options).filter((k) => k !== "torn" && k !== "stop");
      if (unknown.length > 0) {
        return Promise.reject(new TypeError(`powerLoss: unknown option ${unknown.join(", ")}`));
      }
      const seed = options.torn?.seed;
      if (seed !== undefined && !(Number.isSafeInteger(seed) && seed >= 0)) {
        return Promise.reject(new TypeError(`powerLoss: torn.seed must be an integer >= 0`));
      }
      losing = (async () => {
        const was = current!;
        await setControl(`powerloss${seed === undefined ? "" : ` torn ${seed}`}\n`);
        await options.stop?.();
        try {
          await run("umount", [dir]);
        } catch (err) {
          const busy = /busy/i.test((err as { stderr?: string }).stderr ?? "");
          throw new Error(
            busy
              ? `a power loss needs every process using ${dir} gone (it is busy; the power ` +
                  `stays off: stop them and call powerLoss again)`
              : `unmounting ${dir} failed: ${(err as Error).message}`,
          );
        }
        const printed = await was.exited;
        await setControl("");
        const next = await launch(backing, dir, control, stash);
        if (typeof next === "string") throw new Error(`after a power loss: ${next}`);
        current = next;
        const last = printed.trim().split("\n").pop() ?? "";
        if (!last.startsWith("{")) {
          throw new Error(`the power loss was not applied: ${was.stderr().trim() || "no report"}`);
        }
        return JSON.parse(last) as PowerLossReport;
      })().finally(() => (losing = undefined));
      return losing;
    },
    syncAll: () => syncTree(dir, true),
    unmount() {
      done ??= (async () => {
        await losing?.catch(() => undefined);
        process.removeListener("exit", unmountSync);
        // (Not mounted any more when the file system's process has died.)
        await run("umount", [dir])
          .catch(() => run("umount", ["-l", dir]))
          .catch(() => undefined);
        const last = current!;
        if (!last.hasExited()) {
          last.child.kill("SIGTERM");
          await waitFor(() => last.hasExited(), { timeoutMs: 2_000 }).catch(() =>
            last.child.kill("SIGKILL"),
          );
        }
        await rm(root, { recursive: true, force: true });
      })();
      return done;
    },
  };
}
