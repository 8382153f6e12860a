import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { ChorusNode } from "@chorus/server";
import { onProcessExit } from "./on-exit.js";

export interface Endpoint {
  host: string;
  port: number;
}

export interface NodeEndpoints {
  extTcp: Endpoint;
  extHttp: Endpoint;
  intTcp: Endpoint;
  intHttp: Endpoint;
}

export interface StartNodeOptions {
  /**
   * Run the node inside this process (`createNode` from @chorus/server) instead of as a
   * `chorus-server` child process. Faster to start; kill() then closes the node abruptly
   * and pause()/resume() are not available.
   */
  inProcess?: boolean;
  /** Keep data in memory only (`--mem-db`). Default false: a fresh temp data directory on disk. */
  memDb?: boolean;
  /** Use this data directory instead of a fresh temp one (it is then not deleted on stop). */
  dataDir?: string;
  /**
   * A shared database (`--db postgres://...`, see startPostgres) instead of a data directory:
   * the node is one instance on that database.
   */
  databaseUrl?: string;
  /** Interface for all listeners. Default 127.0.0.1. */
  host?: string;
  /** Enables authentication with user `admin`. */
  adminPassword?: string;
  /** Extra `chorus-server` flags. */
  args?: string[];
  /** Flags for `node` itself, before the server script (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** Extra environment variables for the server process. */
  env?: Record<string, string>;
  /** Deadline for the node to report ready. Default 30,000 ms. */
  startTimeoutMs?: number;
  /** Fixed ports (default: 0, the OS picks free ones). */
  ports?: Partial<Record<keyof NodeEndpoints, number>>;
}

export interface TestNode extends NodeEndpoints {
  /**
   * The node itself while it runs in this process (`inProcess`), e.g. for a client's
   * `withInProcessNode`; undefined for a child process. A restart makes a new one.
   */
  readonly embedded: ChorusNode | undefined;
  /** The external HTTP endpoint as "host:port": what a client's withSingleNode takes. */
  readonly httpEndpoint: string;
  /** `chorus://host:port` for this node. */
  readonly connectionString: string;
  readonly dataDir: string | undefined;
  /** The server process id while it runs (undefined in process). */
  readonly pid: number | undefined;
  readonly running: boolean;
  /**
   * How the server process last exited (`code`, or the `signal` that ended it), undefined
   * while it has not (and for a node in process).
   */
  readonly lastExit: { readonly code: number | null; readonly signal: string | null } | undefined;
  /** Everything the server printed (stdout and stderr), newest last. */
  output(): string;
  /** Graceful stop (SIGTERM) and, for a temp data directory, its removal. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the data directory (use restart() to bring it back). */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays alive but does nothing. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Starts the process again on the same ports with the same data directory. */
  restart(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const MAX_OUTPUT_CHARS = 1_000_000;

/**
 * Path of the `chorus-server` executable script of the installed @chorus/server, or of
 * `CHORUS_SERVER_BIN` when set (to run the tests against another build, e.g. an older one
 * to see a test fail before a fix).
 */
export function serverBinPath(): string {
  const override = process.env["CHORUS_SERVER_BIN"];
  if (override !== undefined && override !== "") return override;
  const entry = fileURLToPath(import.meta.resolve("@chorus/server"));
  return join(dirname(entry), "..", "bin", "chorus-server.js");
}

/**
 * Starts a real `chorus-server` process on free loopback ports with a temp data
 * directory and resolves once it reports ready.
 */
export async function startNode(options: StartNodeOptions = {}): Promise<TestNode> {
  const host = options.host ?? "127.0.0.1";
  if (options.databaseUrl !== undefined && (options.memDb || options.dataDir !== undefined))
    throw new Error("startNode: databaseUrl excludes memDb and dataDir");
  const ownsDir =
    !options.memDb && options.dataDir === undefined && options.databaseUrl === undefined;
  const dataDir =
    options.memDb || options.databaseUrl !== undefined
      ? undefined
      : (options.dataDir ?? (await mkdtemp(join(tmpdir(), "chorus-node-"))));
  let ports: Record<keyof NodeEndpoints, number> = {
    extTcp: options.ports?.extTcp ?? 0,
    extHttp: options.ports?.extHttp ?? 0,
    intTcp: options.ports?.intTcp ?? 0,
    intHttp: options.ports?.intHttp ?? 0,
  };
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = "";
  let lastExit: TestNode["lastExit"];
  let endpoints: NodeEndpoints | undefined;

  const append = (text: string) => {
    output += text;
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS / 2);
  };

  const storeArgs = (): string[] => {
    if (options.databaseUrl !== undefined) return ["--db", options.databaseUrl];
    return dataDir === undefined ? ["--mem-db"] : ["--db", dataDir];
  };

  let launch = async (): Promise<void> => {
    const args = [
      ...(options.nodeArgs ?? []),
      serverBinPath(),
      ...storeArgs(),
      "--int-ip",
      host,
      "--ext-ip",
      host,
      "--ext-tcp-port",
      String(ports.extTcp),
      "--ext-http-port",
      String(ports.extHttp),
      "--int-tcp-port",
      String(ports.intTcp),
      "--int-http-port",
      String(ports.intHttp),
      ...(options.adminPassword !== undefined ? ["--admin-password", options.adminPassword] : []),
      ...(options.args ?? []),
    ];
    const proc = spawn(process.execPath, args, {
      // The server exits when this pipe closes: when this process is gone, even after SIGKILL.
      env: { ...process.env, ...options.env, CHORUS_EXIT_WITH_PARENT: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    child = proc;
    // A test runner that dies must not leave servers behind (held only while this one runs:
    // a node that failed to start, or was stopped, leaves no listener behind).
    const forget = onProcessExit(() => proc.kill("SIGKILL"));
    exited = new Promise((resolve) =>
      proc.once("exit", (code, signal) => {
        forget();
        lastExit = { code, signal };
        resolve();
      }),
    );
    proc.stderr.setEncoding("utf8").on("data", append);
    const timeoutMs = options.startTimeoutMs ?? 30_000;
    await new Promise<void>((resolve, reject) => {
      // This launch's own readiness: a restart's process that exits early fails at once.
      let ready = false;
      const lines = createInterface({ input: proc.stdout });
      const timer = setTimeout(() => {
        fail(new Error(`chorus-server did not report ready within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        proc.kill("SIGKILL");
        reject(new Error(`${err.message}\n--- server output ---\n${output}`, { cause: err }));
      };
      proc.once("exit", (code, signal) => {
        if (!ready)
          fail(
            new Error(`chorus-server exited (code ${code}, signal ${signal}) before it was ready`),
          );
      });
      lines.on("line", (line) => {
        append(line + "\n");
        if (!line.includes('"node ready"')) return;
        try {
          const parsed = JSON.parse(line) as Partial<NodeEndpoints> & { msg?: string };
          if (
            parsed.msg !== "node ready" ||
            !parsed.extTcp ||
            !parsed.extHttp ||
            !parsed.intTcp ||
            !parsed.intHttp
          )
            return;
          endpoints = {
            extTcp: parsed.extTcp,
            extHttp: parsed.extHttp,
            intTcp: parsed.intTcp,
            intHttp: parsed.intHttp,
          };
          ports = {
            extTcp: endpoints.extTcp.port,
            extHttp: endpoints.extHttp.port,
            intTcp: endpoints.intTcp.port,
            intHttp: endpoints.intHttp.port,
          };
          ready = true;
          clearTimeout(timer);
          resolve();
        } catch {
          // not a JSON log line
        }
      });
    });
  };

  let pauseResume = (signal: NodeJS.Signals) => {
    child?.kill(signal);
  };
  let isRunning = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  let embeddedNode = (): ChorusNode | undefined => undefined;
  let terminate = async (signal: NodeJS.Signals) => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    if (signal === "SIGTERM") proc.kill("SIGCONT");
    proc.kill(signal);
    const killTimer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(killTimer);
  };

  if (options.inProcess) {
    if (options.args?.length || options.nodeArgs?.length || options.env) {
      throw new Error(
        "startNode: args, nodeArgs and env apply to a child process, not with inProcess",
      );
    }
    const { createNode } = await import("@chorus/server");
    let embedded: Awaited<ReturnType<typeof createNode>> | undefined;
    const launchEmbedded = async () => {
      embedded = await createNode({
        ...(options.databaseUrl !== undefined
          ? { db: options.databaseUrl }
          : dataDir === undefined
            ? { memDb: true }
            : { db: dataDir }),
        intIp: host,
        extIp: host,
        extTcpPort: ports.extTcp,
        extHttpPort: ports.extHttp,
        intTcpPort: ports.intTcp,
        intHttpPort: ports.intHttp,
        logLevel: "warn",
        ...(options.adminPassword !== undefined ? { adminPassword: options.adminPassword } : {}),
      });
      endpoints = embedded.endpoints;
      ports = {
        extTcp: endpoints.extTcp.port,
        extHttp: endpoints.extHttp.port,
        intTcp: endpoints.intTcp.port,
        intHttp: endpoints.intHttp.port,
      };
    };
    const closeEmbedded = async () => {
      const n = embedded;
      embedded = undefined;
      await n?.close();
    };
    launch = launchEmbedded;
    terminate = closeEmbedded;
    pauseResume = () => {
      throw new Error("pause()/resume() need a child process; start the node without inProcess");
    };
    isRunning = () => embedded !== undefined;
    embeddedNode = () => embedded;
  }

  try {
    await launch();
  } catch (err) {
    // Nothing of a node that never started stays behind: not its process, not its directory.
    await exited;
    if (ownsDir && dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const ep = () => {
    if (!endpoints) throw new Error("node has not started");
    return endpoints;
  };
  const node: TestNode = {
    get embedded() {
      return embeddedNode();
    },
    get extTcp() {
      return ep().extTcp;
    },
    get extHttp() {
      return ep().extHttp;
    },
    get intTcp() {
      return ep().intTcp;
    },
    get intHttp() {
      return ep().intHttp;
    },
    get httpEndpoint() {
      return `${ep().extHttp.host}:${ep().extHttp.port}`;
    },
    get connectionString() {
      return `chorus://${ep().extHttp.host}:${ep().extHttp.port}?tls=false`;
    },
    dataDir,
    get pid() {
      return child?.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    get running() {
      return isRunning();
    },
    get lastExit() {
      return lastExit;
    },
    output: () => output,
    async stop() {
      await terminate("SIGTERM");
      if (ownsDir && dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    },
    kill: () => terminate("SIGKILL"),
    pause() {
      pauseResume("SIGSTOP");
    },
    resume() {
      pauseResume("SIGCONT");
    },
    async restart() {
      await terminate("SIGTERM");
      await launch();
    },
    [Symbol.asyncDispose]() {
      return node.stop();
    },
  };
  return node;
}
