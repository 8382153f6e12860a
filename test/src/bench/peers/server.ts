/**
 * A peer's server process (nats-server, etcd) in a temp directory of its own, which nothing
 * outlives: the server runs under a small watchdog shell that holds a pipe from the bench and,
 * once that pipe closes (stop() closes it; so does the end of the bench, Ctrl-C and SIGKILL
 * included), stops the server (SIGTERM, SIGKILL after 10 s) and removes the directory.
 */
import { waitFor } from "@chorus/testing";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

/** How long a stopped server and its watchdog may take to be gone. */
const STOP_TIMEOUT_MS = 20_000;
/** How long the watchdog may take to say the server's pid. */
const SPAWN_TIMEOUT_MS = 10_000;

/**
 * $1 the log file, $2 the directory to remove, then the command. Prints the server's pid,
 * then waits for its stdin to close. The server gets default signal dispositions; the shell
 * ignores Ctrl-C (it is in a process group of its own anyway) so that it always cleans up.
 */
const WATCHDOG_SCRIPT = `
log="$1"; dir="$2"; shift 2
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
trap '' INT HUP TERM
echo "$pid"
cat >/dev/null 2>&1
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
`;

/** The path of `name` on PATH or in the usual sbin directories, or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/bin", "/sbin"];
  return dirs
    .filter((dir) => dir.startsWith("/"))
    .map((dir) => join(dir, name))
    .find((path) => existsSync(path));
}

/** A fresh temp directory for one server (removed by its watchdog). */
export function serverDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `chorus-peer-${label}-`));
}

export interface ServerProcess {
  readonly label: string;
  readonly pid: number;
  readonly dir: string;
  /** The last `maxChars` of the server's log (stdout and stderr). */
  logTail(maxChars?: number): string;
  /** Stops the server and removes its directory; resolves once both are done. */
  stop(): Promise<void>;
}

/** Starts `command args` (its output to `dir`/server.log) under a watchdog. */
export async function startServer(options: {
  label: string;
  command: string;
  args: string[];
  dir: string;
}): Promise<ServerProcess> {
  const logFile = join(options.dir, "server.log");
  const watchdog = spawn(
    "sh",
    [
      "-c",
      WATCHDOG_SCRIPT,
      "chorus-peer-watchdog",
      logFile,
      options.dir,
      options.command,
      ...options.args,
    ],
    { detached: true, stdio: ["pipe", "pipe", "ignore"] },
  );
  watchdog.stdin?.on("error", () => undefined);
  let pid: number;
  try {
    pid = await serverPid(watchdog, options.label);
  } catch (err) {
    watchdog.kill("SIGKILL");
    await rm(options.dir, { recursive: true, force: true });
    throw err;
  }
  let stopping: Promise<void> | undefined;
  const server: ServerProcess = {
    label: options.label,
    pid,
    dir: options.dir,
    logTail(maxChars = 2_000) {
      try {
        return readFileSync(logFile, "utf8").slice(-maxChars);
      } catch {
        return "(no log)";
      }
    },
    stop() {
      stopping ??= (async () => {
        const exited = watchdog.exitCode !== null || watchdog.signalCode !== null;
        watchdog.stdin?.end();
        if (!exited)
          await waitFor(() => watchdog.exitCode !== null || watchdog.signalCode !== null, {
            timeoutMs: STOP_TIMEOUT_MS,
            intervalMs: 25,
            message: `${options.label} stopped and its directory removed`,
          });
      })();
      return stopping;
    },
  };
  // The watchdog does not keep the bench alive: when the bench ends, its pipe closes.
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return server;
}

/** The server's pid, the first line the watchdog prints. */
async function serverPid(watchdog: ChildProcess, label: string): Promise<number> {
  let out = "";
  watchdog.stdout?.setEncoding("utf8").on("data", (s: string) => (out += s));
  const failed = new Promise<never>((_, reject) => {
    watchdog.once("error", (err) => reject(new Error(`${label}: cannot run sh: ${err.message}`)));
  });
  failed.catch(() => undefined);
  const pid = await Promise.race([
    failed,
    waitFor(() => (out.includes("\n") ? Number(out.trim()) : undefined), {
      timeoutMs: SPAWN_TIMEOUT_MS,
      intervalMs: 10,
      message: `${label}: the watchdog said the server's pid`,
    }),
  ]);
  watchdog.stdout?.removeAllListeners("data");
  watchdog.stdout?.destroy();
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${label}: bad pid ${out}`);
  return pid;
}

/** Whether process `pid` still runs (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * Waits until every server answers `ready(i)`, at most `timeoutMs`; a server that exits
 * meanwhile fails at once. On failure all are stopped and the error names the late server
 * and carries its log's tail.
 */
export async function waitReady(
  servers: readonly ServerProcess[],
  ready: (i: number) => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  try {
    await Promise.all(
      servers.map(async (server, i) => {
        // A server that exited fails the wait at once (waitFor would retry a thrown error).
        const exited = new AbortController();
        try {
          await waitFor(
            async () => {
              if (alive(server.pid)) return ready(i);
              exited.abort(new Error(`${server.label} exited`));
              return false;
            },
            {
              timeoutMs,
              intervalMs: 50,
              message: `${server.label} ${what}`,
              signal: exited.signal,
            },
          );
        } catch (err) {
          const cause = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
          throw new Error(
            (exited.signal.aborted
              ? `${server.label} exited before it became ready`
              : `${server.label} did not become ready within ${timeoutMs} ms` +
                (cause ? ` (${cause.message})` : "")) +
              `\n--- tail of ${server.label}'s log ---\n${server.logTail()}`,
            { cause: err },
          );
        }
      }),
    );
  } catch (err) {
    await stopAll(servers);
    throw err;
  }
}

/** Stops every server; the first failure is thrown after all have been tried. */
export async function stopAll(servers: readonly ServerProcess[]): Promise<void> {
  const results = await Promise.allSettled(servers.map((s) => s.stop()));
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** Stops the servers one after the other, in this order; the first failure is thrown last. */
export async function stopInOrder(servers: readonly ServerProcess[]): Promise<void> {
  let failure: Error | undefined;
  for (const server of servers) {
    try {
      await server.stop();
    } catch (err) {
      failure ??= err instanceof Error ? err : new Error(String(err));
    }
  }
  if (failure !== undefined) throw failure;
}
