/**
 * Real PostgreSQL servers for tests: a fresh cluster (initdb) in a temp directory on a free
 * loopback port, with an application role and database, and streaming-replication standbys.
 *
 * PostgreSQL refuses to run as root: as root, initdb, postgres and pg_basebackup run as the
 * OS user `postgres` (through `runuser`), and the temp directories belong to that user.
 * Everything a server writes (its log included) stays in its temp directory; nothing goes to
 * this process's stdout.
 *
 * Nothing is left behind: `stop()` shuts a server down and removes its directory; a
 * synchronous `exit` handler of this process kills every server still running and removes
 * its directory; and each server has a watchdog (`sh`, in a process group of its own) that
 * holds a pipe from this process and, when the pipe closes because this process died of a
 * signal (SIGKILL included), kills the server and removes its directory.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import {
  appendFileSync,
  chownSync,
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, isIPv4, isIPv6 } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "./cluster.js";
import { onProcessExit } from "./on-exit.js";
import { waitFor } from "./wait.js";

export interface StartPostgresOptions {
  /** Loopback address to listen on (127.x.y.z or ::1). Default 127.0.0.1. */
  host?: string;
  /** Default: a free port. */
  port?: number;
  /** Extra postgresql.conf settings, e.g. { synchronous_commit: "on", max_connections: 200 }. */
  settings?: Record<string, string | number | boolean>;
  /** Deadline for the server to accept connections. Default 30,000 ms. */
  startTimeoutMs?: number;
  /** Directory of the PostgreSQL binaries. Default /usr/lib/postgresql/15/bin, else `pg_config --bindir`. */
  binDir?: string;
  /** Extra initdb flags, e.g. ["--data-checksums"]. */
  initdbArgs?: string[];
  /** Deadline of each `psql()` call. Default 60,000 ms. */
  psqlTimeoutMs?: number;
}

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  /** URL of the application database as the application role (password authentication over TCP):
   *  postgres://chorus:<password>@127.0.0.1:<port>/chorus */
  readonly url: string;
  /** The application role's password (so a test can check it never appears in logs). */
  readonly password: string;
  /**
   * Superuser URL: role `postgres` with a password of its own (scram-sha-256 over TCP, like
   * the application role), database `postgres`.
   */
  readonly adminUrl: string;
  readonly dataDir: string;
  /** The server's log (its stderr), in the temp directory next to `dataDir`. */
  readonly logFile: string;
  /** Directory of the server's unix socket (the temp directory, never /var/run/postgresql). */
  readonly socketDir: string;
  /** PID of the postmaster (read from postmaster.pid), or undefined while it is down. */
  readonly pid: number | undefined;
  /** Creates a fresh empty database owned by the application role; returns its URL (same form as url). */
  createDatabase(name?: string): Promise<string>;
  /**
   * Runs SQL as the superuser through psql (unix socket, trust); resolves with stdout. The SQL
   * goes to psql's stdin as a script: statements run one by one (CREATE DATABASE works), the
   * first error stops it and rejects. Output is unaligned, tuples only (`psql -At`), e.g.
   * "3\n" for `select count(*) ...`. `database` defaults to the application database
   * (`chorus`). For test setup and checks.
   */
  psql(sql: string, database?: string): Promise<string>;
  /**
   * A crash: SIGKILL of the postmaster and of all its processes at once (none of them gets
   * to write anything more); resolves when they have all exited. The data directory stays.
   */
  kill(): Promise<void>;
  /** Fast shutdown (SIGINT, as `pg_ctl stop -m fast`), keeping the data directory. */
  shutdown(): Promise<void>;
  /**
   * Starts the server again on the same data directory and port (after kill() or
   * shutdown(); a running server is shut down first). Rejects after stop().
   */
  restart(): Promise<void>;
  /** Tail of the server's log, for error messages. */
  logTail(maxChars?: number): string;
  /** Fast shutdown and removal of the data directory. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface TestPostgresPrimary extends TestPostgres {
  /** A streaming-replication hot standby of this server (pg_basebackup -R) on another free port.
   *  synchronous: true (default) makes it the synchronous standby (synchronous_standby_names on the
   *  primary, synchronous_commit on), so a commit is acknowledged only once the standby has flushed it.
   *  Resolves once the standby is streaming (pg_stat_replication on the primary shows it, with
   *  sync_state 'sync' when synchronous). */
  startStandby(options?: {
    synchronous?: boolean;
    host?: string;
    port?: number;
  }): Promise<TestPostgresStandby>;
}

export interface TestPostgresStandby extends TestPostgres {
  /** Its `application_name` on the primary (pg_stat_replication, synchronous_standby_names). */
  readonly applicationName: string;
  /** Promotes the standby to a primary (SELECT pg_promote()); resolves once it accepts writes. */
  promote(): Promise<void>;
}

/** The application role and database every server gets. */
export const POSTGRES_APP_ROLE = "chorus";
/** The role a standby replicates as (REPLICATION, the superuser's password). */
export const POSTGRES_REPLICATION_ROLE = "replicator";
export const DEFAULT_POSTGRES_BIN_DIR = "/usr/lib/postgresql/15/bin";
export const DEFAULT_POSTGRES_START_TIMEOUT_MS = 30_000;
export const DEFAULT_PSQL_TIMEOUT_MS = 60_000;
/** How long a fast shutdown may take before the server is killed instead. */
const SHUTDOWN_TIMEOUT_MS = 15_000;
/** How long the processes of a killed server may take to be gone. */
const KILL_TIMEOUT_MS = 10_000;

const REQUIRED_BINARIES = ["initdb", "postgres", "pg_basebackup", "psql"] as const;

/**
 * Whether PostgreSQL can be started here: { ok: true, binDir } or { ok: false, reason } (no
 * binaries found; not Linux; as root, no OS user `postgres` or no runuser). `binDir` as in
 * StartPostgresOptions.
 */
export function postgresSupport(
  binDir?: string,
): { ok: true; binDir: string } | { ok: false; reason: string } {
  if (process.platform !== "linux") {
    return { ok: false, reason: `startPostgres needs Linux (this is ${process.platform})` };
  }
  let dir = binDir;
  if (dir === undefined) {
    if (existsSync(join(DEFAULT_POSTGRES_BIN_DIR, "initdb"))) dir = DEFAULT_POSTGRES_BIN_DIR;
    else {
      const r = spawnSync("pg_config", ["--bindir"], { encoding: "utf8", timeout: 10_000 });
      if (r.status !== 0 || !r.stdout.trim()) {
        return {
          ok: false,
          reason: `no PostgreSQL binaries: ${DEFAULT_POSTGRES_BIN_DIR}/initdb is missing and pg_config ${
            r.error ? "is not installed" : "gave no --bindir"
          } (Debian: apt-get install postgresql-15)`,
        };
      }
      dir = r.stdout.trim();
    }
  }
  const missing = REQUIRED_BINARIES.filter((b) => !existsSync(join(dir, b)));
  if (missing.length > 0) {
    return { ok: false, reason: `no ${missing.join(", ")} in ${dir}` };
  }
  if (isRoot()) {
    if (postgresOsUser() === undefined) {
      return {
        ok: false,
        reason: "running as root and there is no OS user `postgres` to run PostgreSQL as",
      };
    }
    if (!existsSync("/usr/sbin/runuser") && !existsSync("/sbin/runuser")) {
      return { ok: false, reason: "running as root and runuser (util-linux) is missing" };
    }
  }
  return { ok: true, binDir: dir };
}

// ---------------------------------------------------------------------------------------------
// Process plumbing

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

let osUser: { uid: number; gid: number } | null | undefined;

/** uid and gid of the OS user `postgres`, or undefined when there is none. */
function postgresOsUser(): { uid: number; gid: number } | undefined {
  if (osUser === undefined) {
    const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    osUser =
      uid.status === 0 && gid.status === 0
        ? { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
        : null;
  }
  return osUser ?? undefined;
}

/** A PostgreSQL server binary as command + args: through `runuser -u postgres` as root. */
function asPostgres(binary: string, args: string[]): [string, string[]] {
  return isRoot() ? ["runuser", ["-u", "postgres", "--", binary, ...args]] : [binary, args];
}

/** Environment for PostgreSQL programs: this process's, without PG* variables that would redirect them. */
function pgEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
  return { ...env, LC_ALL: "C", ...extra };
}

interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to completion with a deadline (SIGTERM, which runuser passes on, then
 * SIGKILL); rejects with its stderr when it fails.
 */
function run(
  what: string,
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs: number },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      env: options.env ?? pgEnv(),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    proc.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    proc.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    proc.stdin.on("error", () => undefined); // EPIPE when it exits without reading
    proc.stdin.end(options.input ?? "");
    let hardKill: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGTERM");
      hardKill = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    }, options.timeoutMs);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${what}: cannot run ${command}: ${err.message}`, { cause: err }));
    });
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(hardKill);
      if (code === 0 && !timedOut) {
        resolve({ stdout, stderr });
        return;
      }
      const why = timedOut
        ? `did not finish within ${options.timeoutMs} ms`
        : `failed (exit code ${code}${signal ? `, signal ${signal}` : ""})`;
      reject(new Error(`${what} ${why}${stderr.trim() ? `:\n${stderr.trim()}` : ""}`));
    });
  });
}

/** State and parent of a process from /proc, or undefined when there is no such process. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "?", ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

/** Gone: no such process, or a zombie (it has exited and released everything). */
function processGone(pid: number): boolean {
  const s = procStat(pid);
  return s === undefined || s.state === "Z" || s.state === "X";
}

/** PIDs whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    if (procStat(Number(entry))?.ppid === pid) out.push(Number(entry));
  }
  return out;
}

/** Whether `pid` is the postmaster of `dataDir` (guards against a reused PID). */
function isPostmasterOf(pid: number, dataDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(dataDir);
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Kills a postmaster and its processes at once: SIGSTOP first (so it cannot react or fork),
 * SIGKILL to every child, then to the postmaster. Returns the PIDs killed.
 */
function crashSync(pid: number): number[] {
  // runuser (when root) stops itself when its child stops, and a stopped runuser never reaps
  // it: it goes too.
  const parent = procStat(pid)?.ppid;
  const wrapper = parent !== undefined && commOf(parent) === "runuser" ? parent : undefined;
  signal(pid, "SIGSTOP");
  const children = childrenOf(pid);
  for (const c of children) signal(c, "SIGKILL");
  signal(pid, "SIGKILL");
  if (wrapper !== undefined) signal(wrapper, "SIGKILL");
  return [pid, ...children];
}

/** The command name of a process (`/proc/<pid>/comm`), or undefined when it is gone. */
function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** The postmaster.pid lines: [pid, dataDir, start time, port, socket dir, listen address, shmem key, status]. */
function readPostmasterPid(dataDir: string): string[] | undefined {
  try {
    return readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n");
  } catch {
    return undefined;
  }
}

function tailOf(file: string, maxChars = 4_000): string {
  try {
    const text = readFileSync(file, "utf8");
    return text.length > maxChars ? `...${text.slice(-maxChars)}` : text;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === "ENOENT" ? "(no log yet)" : `(cannot read ${file}: ${e.message})`;
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

// ---------------------------------------------------------------------------------------------
// Cleanup when this process ends (onProcessExit), or when it is killed (the watchdog)

/**
 * The watchdog script: blocks on its stdin (a pipe from this process) and, once that closes
 * (stop() closes it; so does the death of this process, even by SIGKILL), kills the
 * postmaster of "$1/data" if it still runs and removes "$1".
 */
const WATCHDOG_SCRIPT = `
trap '' INT TERM HUP
cat >/dev/null 2>&1
d="$1"
pid=$(head -n 1 "$d/data/postmaster.pid" 2>/dev/null)
case "$pid" in ''|*[!0-9]*) pid= ;; esac
if [ -n "$pid" ] && tr '\\0' '\\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$d/data"; then
  ppid=$(cut -d ')' -f 2 "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 3)
  kill -STOP "$pid" 2>/dev/null
  pkill -KILL -P "$pid" 2>/dev/null
  kill -KILL "$pid" 2>/dev/null
  # runuser stops itself when its child stops, and then never reaps it: it goes too.
  if [ -n "$ppid" ] && [ "$(cat "/proc/$ppid/comm" 2>/dev/null)" = runuser ]; then
    kill -KILL "$ppid" 2>/dev/null
  fi
  i=0
  while [ $i -lt 100 ] && [ -e "/proc/$pid" ] && ! grep -q '^State:.*[ZX]' "/proc/$pid/status" 2>/dev/null; do
    sleep 0.05; i=$((i + 1))
  done
fi
rm -rf "$d" 2>/dev/null || { sleep 0.2; rm -rf "$d" 2>/dev/null; }
exit 0
`;

function startWatchdog(root: string): ChildProcess {
  const proc = spawn("sh", ["-c", WATCHDOG_SCRIPT, "chorus-postgres-watchdog", root], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
  });
  proc.on("error", () => undefined);
  proc.stdin?.on("error", () => undefined);
  proc.unref();
  (proc.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return proc;
}

// ---------------------------------------------------------------------------------------------
// Configuration

function checkLoopback(host: string): string {
  const ok = (isIPv4(host) && host.startsWith("127.")) || (isIPv6(host) && host === "::1");
  if (!ok) throw new RangeError(`startPostgres: host must be a loopback address, not ${host}`);
  return host;
}

function confValue(value: string | number | boolean): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number") return String(value);
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

function settingsLines(settings: Record<string, string | number | boolean>): string {
  return Object.entries(settings)
    .map(([key, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(key)) {
        throw new RangeError(`startPostgres: ${JSON.stringify(key)} is not a setting name`);
      }
      return `${key} = ${confValue(value)}\n`;
    })
    .join("");
}

const BASE_SETTINGS: Record<string, string | number | boolean> = {
  wal_level: "replica",
  fsync: true,
  synchronous_commit: "on",
  full_page_writes: true,
  max_wal_senders: 10,
  hot_standby: true,
  password_encryption: "scram-sha-256",
  logging_collector: false,
  log_destination: "stderr",
  log_line_prefix: "%m [%p] %q%u@%d ",
};

const PG_HBA = `# Written by @chorus/testing startPostgres.
# TYPE  DATABASE     USER        ADDRESS        METHOD
local   all          all                        trust
local   replication  all                        trust
host    all          all         127.0.0.0/8    scram-sha-256
host    all          all         ::1/128        scram-sha-256
host    replication  ${POSTGRES_REPLICATION_ROLE}  127.0.0.0/8    scram-sha-256
host    replication  ${POSTGRES_REPLICATION_ROLE}  ::1/128        scram-sha-256
`;

/** A SCRAM-SHA-256 verifier, so the cleartext password never reaches the server (or its log). */
function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString(
    "base64",
  )}:${serverKey.toString("base64")}`;
}

function hostInUrl(host: string): string {
  return isIPv6(host) ? `[${host}]` : host;
}

function pgUrl(user: string, password: string, host: string, port: number, db: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${hostInUrl(
    host,
  )}:${port}/${encodeURIComponent(db)}`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A fresh temp directory for one server (data/, the log and the socket), owned by `postgres` when root. */
async function makeRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "chorus-pg-"));
  if (isRoot()) {
    const user = postgresOsUser();
    if (!user) throw new Error("startPostgres: no OS user `postgres` to run PostgreSQL as");
    chownSync(root, user.uid, user.gid);
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// One server

interface ServerSpec {
  kind: "primary" | "standby";
  binDir: string;
  root: string;
  host: string;
  /** Fixed port, or undefined: a free one, picked right before the first start. */
  port: number | undefined;
  password: string;
  adminPassword: string;
  startTimeoutMs: number;
  psqlTimeoutMs: number;
  watchdog: ChildProcess;
}

/** A server on an existing data directory: start/kill/shutdown/stop and the TestPostgres view. */
function makeServer(spec: ServerSpec) {
  const dataDir = join(spec.root, "data");
  const logFile = join(spec.root, "postgres.log");
  const socketDir = spec.root;
  const autoPort = spec.port === undefined;
  let port = spec.port ?? 0;
  const label = () => `PostgreSQL ${spec.kind} on ${hostInUrl(spec.host)}:${port}`;
  let child: ChildProcess | undefined;
  let pid: number | undefined;
  let removed = false;
  let stopping: Promise<void> | undefined;

  const exitCleanup = () => {
    if (pid !== undefined && isPostmasterOf(pid, dataDir)) crashSync(pid);
    rmSync(spec.root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  };
  const unregister = onProcessExit(exitCleanup);

  const withLog = (err: unknown, what: string): Error => {
    const message = err instanceof Error ? err.message : String(err);
    return new Error(
      `${label()}: ${what}: ${message}\n--- tail of ${logFile} ---\n${tailOf(logFile)}`,
      {
        cause: err,
      },
    );
  };

  const launch = async (): Promise<void> => {
    if (removed)
      throw new Error(`${label()}: stopped (its data directory is gone); cannot restart`);
    if (child) return;
    const [command, args] = asPostgres(join(spec.binDir, "postgres"), [
      "-D",
      dataDir,
      "-c",
      `listen_addresses=${spec.host}`,
      "-c",
      `port=${port}`,
      "-c",
      `unix_socket_directories=${socketDir}`,
    ]);
    const fd = openSync(logFile, "a");
    let proc: ChildProcess;
    try {
      proc = spawn(command, args, { env: pgEnv(), stdio: ["ignore", fd, fd] });
    } finally {
      closeSync(fd);
    }
    // A server does not keep this process alive: when it ends, the exit hook kills the server.
    proc.unref();
    child = proc;
    const failed = new Promise<never>((_, reject) => {
      proc.once("error", (err) => reject(new Error(`cannot run ${command}: ${err.message}`)));
      proc.once("exit", (code, sig) =>
        reject(new Error(`exited (code ${code}, signal ${sig}) before it accepted connections`)),
      );
    });
    failed.catch(() => undefined);
    proc.once("exit", () => {
      if (child === proc) {
        child = undefined;
        pid = undefined;
      }
    });
    try {
      pid = await Promise.race([
        failed,
        waitFor(
          async () => {
            // postmaster.pid of this start (its postmaster is our child, or runuser's), saying
            // "ready" (or "standby": a hot standby that accepts read-only connections).
            const lines = readPostmasterPid(dataDir);
            const p = Number(lines?.[0]);
            const status = lines?.[7]?.trim();
            if (!Number.isInteger(p) || p <= 0) return undefined;
            if (p !== proc.pid && procStat(p)?.ppid !== proc.pid) return undefined;
            if (status !== "ready" && status !== "standby") return undefined;
            return (await canConnect(spec.host, port)) ? p : undefined;
          },
          {
            timeoutMs: spec.startTimeoutMs,
            intervalMs: 25,
            message: `${label()} accepting connections`,
          },
        ),
      ]);
    } catch (err) {
      await crash().catch(() => undefined);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      throw withLog(err, "start failed");
    }
  };

  /** SIGKILL of the postmaster and its processes; waits until they are gone. */
  const crash = async (): Promise<void> => {
    const proc = child;
    let p = pid;
    if (p === undefined && proc) {
      // Still starting: the postmaster may already have written its pid.
      const candidate = Number(readPostmasterPid(dataDir)?.[0]);
      if (candidate > 0 && (candidate === proc.pid || procStat(candidate)?.ppid === proc.pid)) {
        p = candidate;
      }
    }
    const killed = p !== undefined ? crashSync(p) : [];
    if (proc && proc.pid !== undefined && proc.pid !== p) signal(proc.pid, "SIGKILL");
    await waitFor(
      () =>
        killed.every(processGone) &&
        (proc === undefined || proc.exitCode !== null || proc.signalCode !== null),
      { timeoutMs: KILL_TIMEOUT_MS, message: `${label()}: the killed processes exited` },
    );
    child = undefined;
    pid = undefined;
    // Everything is gone: remove the lock files, as a reboot would make them moot (a reused
    // PID in them would otherwise make the next start refuse).
    for (const f of [join(dataDir, "postmaster.pid"), join(socketDir, `.s.PGSQL.${port}.lock`)]) {
      try {
        unlinkSync(f);
      } catch {
        // not there
      }
    }
  };

  const shutdown = async (): Promise<void> => {
    const proc = child;
    const p = pid;
    if (!proc) return;
    if (p === undefined) {
      await crash();
      return;
    }
    signal(p, "SIGINT");
    try {
      await waitFor(() => processGone(p) && (proc.exitCode !== null || proc.signalCode !== null), {
        timeoutMs: SHUTDOWN_TIMEOUT_MS,
        intervalMs: 25,
        message: `${label()} shut down`,
      });
      if (child === proc) {
        child = undefined;
        pid = undefined;
      }
    } catch {
      await crash();
    }
  };

  const psql = async (sql: string, database = POSTGRES_APP_ROLE): Promise<string> => {
    const { stdout } = await run(
      `psql on ${label()} (database ${database})`,
      join(spec.binDir, "psql"),
      [
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        socketDir,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        database,
        "-f",
        "-",
      ],
      { input: sql, timeoutMs: spec.psqlTimeoutMs, env: pgEnv({ PGCONNECT_TIMEOUT: "10" }) },
    );
    return stdout;
  };

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        await shutdown();
      } finally {
        removed = true;
        await rm(spec.root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
        unregister();
        spec.watchdog.stdin?.end();
      }
    })();
    return stopping;
  };

  const view: TestPostgres = {
    host: spec.host,
    get port() {
      return port;
    },
    get url() {
      return pgUrl(POSTGRES_APP_ROLE, spec.password, spec.host, port, POSTGRES_APP_ROLE);
    },
    password: spec.password,
    get adminUrl() {
      return pgUrl("postgres", spec.adminPassword, spec.host, port, "postgres");
    },
    dataDir,
    logFile,
    socketDir,
    get pid() {
      return pid;
    },
    async createDatabase(name) {
      const db = name ?? `db_${randomBytes(6).toString("hex")}`;
      await psql(`CREATE DATABASE ${quoteIdent(db)} OWNER ${quoteIdent(POSTGRES_APP_ROLE)};`);
      return pgUrl(POSTGRES_APP_ROLE, spec.password, spec.host, port, db);
    },
    psql,
    kill: crash,
    shutdown,
    async restart() {
      await shutdown();
      await launch();
    },
    logTail: (maxChars) => tailOf(logFile, maxChars),
    stop,
    [Symbol.asyncDispose]: stop,
  };
  /**
   * The first start: on a free port picked now (unless fixed), and on another one when
   * something else took it between the pick and the bind.
   */
  const firstStart = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      if (autoPort) port = (await freePorts(1, spec.host))[0]!;
      const logFrom = sizeOf(logFile);
      try {
        await launch();
        return;
      } catch (err) {
        let log = "";
        try {
          log = readFileSync(logFile).subarray(logFrom).toString("utf8");
        } catch {
          // no log: not a port conflict
        }
        if (!autoPort || attempt >= 3 || !/Address already in use/.test(log)) throw err;
      }
    }
  };
  return { view, firstStart, psql, withLog, label };
}

// ---------------------------------------------------------------------------------------------
// Public entry points

/** Starts a fresh PostgreSQL server in a temp data dir: initdb, application role `chorus` with a
 *  random password, database `chorus`, wal_level replica (so standbys work), listen on host:port,
 *  unix socket in the temp dir (never /var/run/postgresql), fsync on (the default; tests measure durability). */
export async function startPostgres(
  options: StartPostgresOptions = {},
): Promise<TestPostgresPrimary> {
  const support = postgresSupport(options.binDir);
  if (!support.ok) throw new Error(`startPostgres: ${support.reason}`);
  const binDir = support.binDir;
  const host = checkLoopback(options.host ?? "127.0.0.1");
  const extraSettings = settingsLines(options.settings ?? {});
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_POSTGRES_START_TIMEOUT_MS;
  const psqlTimeoutMs = options.psqlTimeoutMs ?? DEFAULT_PSQL_TIMEOUT_MS;
  /** Deadline of initdb and pg_basebackup. */
  const toolTimeoutMs = Math.max(startTimeoutMs, 60_000);
  const password = randomBytes(16).toString("hex");
  const adminPassword = randomBytes(16).toString("hex");

  const root = await makeRoot();
  const watchdog = startWatchdog(root);
  const server = makeServer({
    kind: "primary",
    binDir,
    root,
    host,
    port: options.port,
    password,
    adminPassword,
    startTimeoutMs,
    psqlTimeoutMs,
    watchdog,
  });
  const dataDir = server.view.dataDir;
  try {
    const [command, args] = asPostgres(join(binDir, "initdb"), [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync", // only the cluster's own writes need to be durable, not initdb's
      "--no-instructions",
      ...(options.initdbArgs ?? []),
    ]);
    await run("initdb", command, args, { timeoutMs: toolTimeoutMs });
    writeFileSync(join(dataDir, "pg_hba.conf"), PG_HBA);
    appendFileSync(
      join(dataDir, "postgresql.conf"),
      `\n# Added by @chorus/testing startPostgres (listen_addresses, port and\n` +
        `# unix_socket_directories are given on the command line).\n` +
        settingsLines(BASE_SETTINGS) +
        (extraSettings ? `# StartPostgresOptions.settings\n${extraSettings}` : ""),
    );
    await server.firstStart();
    await server.psql(
      [
        `CREATE ROLE ${POSTGRES_APP_ROLE} LOGIN PASSWORD ${quoteLiteral(scramVerifier(password))};`,
        `CREATE DATABASE ${POSTGRES_APP_ROLE} OWNER ${POSTGRES_APP_ROLE};`,
        `ALTER ROLE postgres PASSWORD ${quoteLiteral(scramVerifier(adminPassword))};`,
        `CREATE ROLE ${POSTGRES_REPLICATION_ROLE} LOGIN REPLICATION PASSWORD ${quoteLiteral(
          scramVerifier(adminPassword),
        )};`,
      ].join("\n"),
      "postgres",
    );
  } catch (err) {
    await server.view.stop().catch(() => undefined);
    throw err instanceof Error && err.message.includes("--- tail of")
      ? err
      : server.withLog(err, "setup failed");
  }

  /** application_name of every synchronous standby: all of them must confirm a commit. */
  const synchronousNames: string[] = [];
  const applySynchronousNames = () =>
    server.psql(
      `ALTER SYSTEM SET synchronous_standby_names = ${quoteLiteral(
        synchronousNames.length === 0
          ? ""
          : `FIRST ${synchronousNames.length} (${synchronousNames.map(quoteIdent).join(", ")})`,
      )};\n` +
        `ALTER SYSTEM SET synchronous_commit = 'on';\n` +
        `SELECT pg_reload_conf();`,
    );

  const startStandby: TestPostgresPrimary["startStandby"] = async (standbyOptions = {}) => {
    const synchronous = standbyOptions.synchronous ?? true;
    const sHost = checkLoopback(standbyOptions.host ?? host);
    const applicationName = `standby_${randomBytes(4).toString("hex")}`;
    const sRoot = await makeRoot();
    const sWatchdog = startWatchdog(sRoot);
    const standby = makeServer({
      kind: "standby",
      binDir,
      root: sRoot,
      host: sHost,
      port: standbyOptions.port,
      password,
      adminPassword,
      startTimeoutMs,
      psqlTimeoutMs,
      watchdog: sWatchdog,
    });
    const sData = standby.view.dataDir;
    /** This standby's column `column` in pg_stat_replication on the primary ("" without a row). */
    const replicationState = async (column: "state" | "sync_state"): Promise<string> =>
      (
        await server.psql(
          `SELECT ${column} FROM pg_stat_replication WHERE application_name = ${quoteLiteral(applicationName)};`,
        )
      ).trim();
    try {
      const [command, args] = asPostgres(join(binDir, "pg_basebackup"), [
        "-D",
        sData,
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
        "-d",
        `host=${host} port=${server.view.port} user=${POSTGRES_REPLICATION_ROLE} application_name=${applicationName}`,
      ]);
      await run(`pg_basebackup from ${server.label()}`, command, args, {
        timeoutMs: toolTimeoutMs,
        env: pgEnv({ PGPASSWORD: adminPassword, PGCONNECT_TIMEOUT: "10" }),
      });
      // The primary's own synchronous_standby_names (ALTER SYSTEM, for earlier standbys) came
      // along: a promoted standby would wait for standbys it does not have.
      const autoConf = join(sData, "postgresql.auto.conf");
      writeFileSync(
        autoConf,
        readFileSync(autoConf, "utf8")
          .split("\n")
          .filter((l) => !/^\s*synchronous_standby_names\s*=/.test(l))
          .join("\n"),
      );
      await standby.firstStart();
      await waitFor(async () => (await replicationState("state")) === "streaming", {
        timeoutMs: startTimeoutMs,
        intervalMs: 50,
        message: `${applicationName} streaming from ${server.label()}`,
      });
      if (synchronous) {
        synchronousNames.push(applicationName);
        await applySynchronousNames();
        await waitFor(async () => (await replicationState("sync_state")) === "sync", {
          timeoutMs: startTimeoutMs,
          intervalMs: 50,
          message: `${applicationName} the synchronous standby of ${server.label()} (sync_state 'sync')`,
        });
      }
    } catch (err) {
      const i = synchronousNames.indexOf(applicationName);
      if (i >= 0) {
        // Commits on the primary must not wait for a standby that never came.
        synchronousNames.splice(i, 1);
        await applySynchronousNames().catch(() => undefined);
      }
      await standby.view.stop().catch(() => undefined);
      throw err instanceof Error && err.message.includes("--- tail of")
        ? err
        : standby.withLog(err, `standby of ${server.label()} failed`);
    }
    const view: TestPostgresStandby = Object.assign(standby.view, {
      applicationName,
      async promote() {
        try {
          const done = (
            await standby.psql(`SELECT pg_promote(true, ${Math.ceil(startTimeoutMs / 1000)});`)
          ).trim();
          if (done !== "t") throw new Error(`pg_promote() returned ${done || "nothing"}`);
          await waitFor(
            async () => (await standby.psql("SELECT pg_is_in_recovery();")).trim() === "f",
            {
              timeoutMs: startTimeoutMs,
              intervalMs: 50,
              message: `${standby.label()} out of recovery`,
            },
          );
        } catch (err) {
          throw standby.withLog(err, "promote failed");
        }
      },
    });
    return view;
  };

  const primary: TestPostgresPrimary = Object.assign(server.view, { startStandby });
  return primary;
}
