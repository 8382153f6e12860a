import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import type { TestCertificates } from "./certificates.js";
import {
  startKernelFaults,
  type BlockOptions,
  type IsolateOptions,
  type KernelFaults,
  type StartKernelFaultsOptions,
} from "./kernel-faults.js";
import { startLinkMesh, type LinkMesh, type LinkProxies } from "./links.js";
import { startNode, type StartNodeOptions, type TestNode } from "./node.js";
import { waitFor } from "./wait.js";

/** Cluster timings of every node in milliseconds; each one left out keeps the server's default. */
export interface ClusterTimings {
  /** `--heartbeat-interval-ms`: leader heartbeats to the followers (default 50). */
  heartbeatIntervalMs?: number;
  /**
   * `--election-timeout-ms` t: a follower stands after a random [t, 2t] without hearing a
   * leader; a leader steps down after t without hearing a majority (default 500).
   */
  electionTimeoutMs?: number;
  /** `--gossip-interval-ms` (default 500). */
  gossipIntervalMs?: number;
  /** `--gossip-timeout-ms` (default 1,000). */
  gossipTimeoutMs?: number;
}

const TIMING_FLAGS: Readonly<Record<keyof ClusterTimings, string>> = {
  heartbeatIntervalMs: "--heartbeat-interval-ms",
  electionTimeoutMs: "--election-timeout-ms",
  gossipIntervalMs: "--gossip-interval-ms",
  gossipTimeoutMs: "--gossip-timeout-ms",
};

/** The `chorus-server` flags of `timings`. */
export function timingArgs(timings: ClusterTimings = {}): string[] {
  return (Object.keys(TIMING_FLAGS) as (keyof ClusterTimings)[]).flatMap((key) => {
    const ms = timings[key];
    return ms === undefined ? [] : [TIMING_FLAGS[key], String(ms)];
  });
}

export interface StartClusterOptions {
  /** Number of voting nodes. Default 3. */
  size?: number;
  /**
   * Number of `--read-only-replica` nodes started besides the voters (non-voting learners).
   * They come after the voters in `nodes`. Default 0.
   */
  readOnlyReplicas?: number;
  /** Keep data in memory only (`--mem-db`). Default false: temp data directories on disk. */
  memDb?: boolean;
  /**
   * Data directory of node `i`: `dataDirs[i]` (kept when the cluster stops; the caller owns
   * it). Default: a temp directory per node, removed at stop.
   */
  dataDirs?: readonly (string | undefined)[];
  /** Extra `chorus-server` flags for every node. */
  args?: string[];
  /** Flags for `node` itself in every node's process (`StartNodeOptions.nodeArgs`). */
  nodeArgs?: string[];
  /** Heartbeat, election and gossip timings of every node (passed as flags). */
  timings?: ClusterTimings;
  /** Deadline for each node to report ready. Default 30,000 ms. */
  startTimeoutMs?: number;
  /**
   * The address node `i` binds (`--int-ip` and `--ext-ip`): `hosts[i]`. Default 127.0.0.1 for
   * every node, or 127.0.0.1, .2, .3, ... with `linkProxies`.
   */
  hosts?: string[];
  /**
   * TLS on every channel: every node gets these certificates (`serverArgs`; the certificate
   * must name every host), the connection string trusts their CA, and `leader()` / `stateOf()`
   * ask over https.
   */
  tls?: TestCertificates;
  /**
   * Put a fault proxy on every node-to-node link (internal TCP and HTTP, each direction), so
   * a test can cut links with `link()`, `partition()` and `heal()`. Needs a distinct host per
   * node. Each node advertises a router's endpoint on its own host; a router hands each
   * connection to the proxy of its link, told by the address it comes from.
   */
  linkProxies?: boolean;
  /**
   * Every node listens on the same ports, each on its own host, as on separate machines
   * (ports free on every host, picked once). Needs distinct `hosts`; without `hosts` nodes get
   * 127.0.0.1, .2, .3, ... Default false: each node gets its own free ports.
   */
  samePorts?: boolean;
  /**
   * Kernel-level faults between the nodes (iptables, see `startKernelFaults`): `kernel`
   * partitions, isolates and drops by node index. Implies `samePorts`; rules match the
   * nodes' hosts and those ports only. Without `hosts`, nodes get 127.0.0.2, .3, .4, ...:
   * 127.0.0.1 is where the test's own connections come from (the kernel picks it as the source
   * of any loopback connection), so a node there would share its address with every client.
   * Rejects when kernel faults are not available here (see `kernelFaultsSupport()`).
   */
  kernelFaults?: boolean | Pick<StartKernelFaultsOptions, "iptables" | "commandTimeoutMs">;
}

/** Kernel-level faults of a cluster (`startCluster({ kernelFaults: true })`), by node index. */
export interface ClusterKernelFaults {
  /** The host-based faults underneath (chain name, `rules()`, faults by address). */
  readonly faults: KernelFaults;
  /** Blocks every packet between nodes `a` and `b`, both ways. */
  partition(a: number, b: number, options?: BlockOptions): Promise<void>;
  /**
   * Blocks every packet between node `index` and every other node; with `{ clients: true }`
   * also between it and every client (any other loopback address).
   */
  isolate(index: number, options?: IsolateOptions): Promise<void>;
  /** One-way: packets from node `from` to node `to` are blocked, the other way passes. */
  dropFrom(from: number, to: number, options?: BlockOptions): Promise<void>;
  /** Removes every kernel fault. */
  heal(): Promise<void>;
}

export interface LeaderOptions {
  /** Default 10,000 ms. */
  timeoutMs?: number;
}

export interface TestCluster {
  /** The voters (`0 .. size - 1`), then the read-only replicas. */
  readonly nodes: readonly TestNode[];
  /** The address node `i` binds: `hosts[i]`. */
  readonly hosts: readonly string[];
  /**
   * `chorus+discover://h:p,h:p,...?tls=false` over every voter's external HTTP endpoint
   * (with `tls`: `?tls=true&tlsCaFile=...`).
   */
  readonly connectionString: string;
  /**
   * Index of the node that is Leader, waiting until exactly one running node says so in its
   * /info (and that node's /health/ready answers 200).
   */
  leader(options?: LeaderOptions): Promise<number>;
  /** The state a running node reports in /info, or undefined when it does not answer. */
  stateOf(index: number): Promise<string | undefined>;
  /** SIGKILL node `index`, keeping its data directory. */
  kill(index: number): Promise<void>;
  /** Starts node `index` again on the same ports and data directory. */
  restart(index: number): Promise<void>;
  /** With `linkProxies`: the proxies on the link from node `from` to node `to`. */
  link(from: number, to: number): LinkProxies;
  /**
   * With `linkProxies`: blackholes every link between nodes of different groups, both ways
   * (nodes in no group keep their links), e.g. `partition([leader], [a, b])`.
   */
  partition(...groups: number[][]): void;
  /** With `linkProxies`: ends every link fault. */
  heal(): void;
  /** With `kernelFaults`: iptables partitions by node index. */
  readonly kernel: ClusterKernelFaults;
  /** Stops every node and removes their temp data. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Free loopback ports, picked by binding port 0 (each released right away). */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen({ host, port: 0, exclusive: true }, () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/** Whether `port` can be bound on `host` right now (released again at once). */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/**
 * `count` ports free on every one of `hosts` (picked on the first, checked on the others),
 * for nodes that listen on the same ports on different loopback hosts.
 */
export async function freePortsOnAll(
  count: number,
  hosts: readonly string[],
  attempts = 20,
): Promise<number[]> {
  const [first, ...rest] = hosts;
  if (first === undefined) throw new RangeError("freePortsOnAll: no hosts");
  for (let attempt = 0; attempt < attempts; attempt++) {
    const ports = await freePorts(count, first);
    const ok = await Promise.all(rest.flatMap((h) => ports.map((p) => canListen(h, p))));
    if (ok.every(Boolean)) return ports;
  }
  throw new Error(
    `freePortsOnAll: found no ${count} ports free on all of ${hosts.join(", ")} in ${attempts} attempts`,
  );
}

/**
 * GET of a node's HTTP API (http, or https trusting `ca`): the status and the parsed JSON
 * body (null when empty). Rejects on a connection, TLS or JSON error, or after `timeoutMs`.
 */
export function getJson(
  url: string,
  timeoutMs: number,
  ca?: string,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const done = (res: IncomingMessage) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("error", reject);
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text === "" ? null : JSON.parse(text) });
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    };
    const req =
      ca === undefined
        ? httpRequest(url, { timeout: timeoutMs }, done)
        : httpsRequest(url, { ca, timeout: timeoutMs }, done);
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** How often a start picks new ports when one it picked was taken before a node bound it. */
const PORT_ATTEMPTS = 4;

/** A start that failed because a port picked for it was taken meanwhile (by any process). */
function portTaken(err: unknown): boolean {
  return /address is in use|EADDRINUSE|address already in use/.test(
    err instanceof Error ? err.message : String(err),
  );
}

/**
 * Runs `start` again, up to 4 times in all, while it fails because a port it picked with
 * `freePorts` was taken before a process bound it. Ports picked free are released before the
 * nodes bind them (each node must know the others' first): in between, another process may take
 * one, an outgoing connection's ephemeral port included. `start` picks its ports itself and
 * stops everything it started before it throws.
 */
export async function retryWhilePortTaken<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= PORT_ATTEMPTS || !portTaken(err)) throw err;
    }
  }
}

/**
 * Starts `size` `chorus-server` processes (on 127.0.0.1, or `hosts`) with fixed, pre-picked
 * free ports, `--cluster-size size` and `--gossip-seed` naming every node's internal HTTP
 * endpoint (with `linkProxies`, the routers in front of them); then
 * `readOnlyReplicas` more with `--read-only-replica` (`--cluster-size` counts the voters only).
 * `timings` become every node's `--heartbeat-interval-ms`, `--election-timeout-ms`, ... flags.
 * Resolves once every process reports ready (listening); use `leader()` to wait for an election.
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<TestCluster> {
  return retryWhilePortTaken(() => startClusterOnce(options));
}

async function startClusterOnce(options: StartClusterOptions): Promise<TestCluster> {
  const size = options.size ?? 3;
  const replicas = options.readOnlyReplicas ?? 0;
  const count = size + replicas;
  const samePorts = options.samePorts === true || Boolean(options.kernelFaults);
  const hosts = Array.from(
    { length: count },
    (_, i) =>
      options.hosts?.[i] ??
      (options.kernelFaults
        ? `127.0.0.${i + 2}`
        : options.linkProxies || samePorts
          ? `127.0.0.${i + 1}`
          : "127.0.0.1"),
  );
  const portCount = options.linkProxies ? 6 : 4;
  if (samePorts && new Set(hosts).size !== hosts.length) {
    throw new Error(
      `startCluster: samePorts and kernelFaults need a distinct host per node, not ${hosts.join(", ")}`,
    );
  }
  const shared = samePorts ? await freePortsOnAll(portCount, hosts) : undefined;
  const plan = await Promise.all(
    hosts.map(async (host) => {
      const [extTcp, extHttp, intTcp, intHttp, routerTcp, routerHttp] = (shared ??
        (await freePorts(portCount, host))) as [number, number, number, number, number?, number?];
      return {
        host,
        ports: { extTcp, extHttp, intTcp, intHttp },
        // What the node tells its peers: its routers with link proxies, else its own ports.
        advertisedTcp: { host, port: routerTcp ?? intTcp },
        advertisedHttp: { host, port: routerHttp ?? intHttp },
      };
    }),
  );
  const seeds = plan.map((p) => `${p.advertisedHttp.host}:${p.advertisedHttp.port}`).join(",");
  const ca = options.tls?.ca;
  const nodes: TestNode[] = [];
  let mesh: LinkMesh | undefined;
  let kernelFaults: KernelFaults | undefined;
  const stopAll = async (): Promise<void> => {
    // The rules go first: a node stopping gracefully hands over to a reachable peer.
    let closeError: Error | undefined;
    await kernelFaults?.close().catch((err: unknown) => {
      closeError = err instanceof Error ? err : new Error(String(err));
    });
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await mesh?.close();
    if (closeError !== undefined) throw closeError;
  };
  try {
    if (options.kernelFaults) {
      kernelFaults = await startKernelFaults({
        ...(typeof options.kernelFaults === "object" ? options.kernelFaults : {}),
        hosts,
        ...(shared !== undefined && { ports: shared }),
      });
    }
    if (options.linkProxies) {
      mesh = await startLinkMesh(
        plan.map((p) => ({
          host: p.host,
          intTcp: { host: p.host, port: p.ports.intTcp },
          intHttp: { host: p.host, port: p.ports.intHttp },
          advertisedTcp: p.advertisedTcp,
          advertisedHttp: p.advertisedHttp,
        })),
      );
    }
    // Settled, not all: a node still starting when another fails must be stopped too.
    const starts = await Promise.allSettled(
      plan.map((p, i) => {
        const nodeOptions: StartNodeOptions = {
          host: p.host,
          ports: p.ports,
          args: [
            "--cluster-size",
            String(size),
            "--gossip-seed",
            seeds,
            ...(i >= size ? ["--read-only-replica"] : []),
            ...(options.linkProxies
              ? [
                  "--int-tcp-port-advertise-as",
                  String(p.advertisedTcp.port),
                  "--int-http-port-advertise-as",
                  String(p.advertisedHttp.port),
                ]
              : []),
            ...(options.tls?.serverArgs ?? []),
            ...timingArgs(options.timings),
            ...(options.args ?? []),
          ],
          ...(options.nodeArgs !== undefined && { nodeArgs: options.nodeArgs }),
          ...(options.memDb !== undefined && { memDb: options.memDb }),
          ...(options.dataDirs?.[i] !== undefined && { dataDir: options.dataDirs[i] }),
          ...(options.startTimeoutMs !== undefined && { startTimeoutMs: options.startTimeoutMs }),
        };
        return startNode(nodeOptions).then((n) => {
          nodes.push(n);
          return n;
        });
      }),
    );
    const failed = starts.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    nodes.splice(
      0,
      nodes.length,
      ...starts.map((r) => (r as PromiseFulfilledResult<TestNode>).value),
    );
  } catch (err) {
    await stopAll();
    throw err;
  }

  const scheme = ca === undefined ? "http" : "https";
  const stateOf = async (index: number): Promise<string | undefined> => {
    const node = nodes[index];
    if (!node?.running) return undefined;
    try {
      const info = await getJson(`${scheme}://${node.httpEndpoint}/info`, 1_000, ca);
      return (info.body as { state?: string } | null)?.state;
    } catch {
      return undefined;
    }
  };
  const needMesh = (): LinkMesh => {
    if (!mesh) throw new Error("startCluster: link faults need { linkProxies: true }");
    return mesh;
  };
  const needKernel = (): KernelFaults => {
    if (!kernelFaults) throw new Error("startCluster: kernel faults need { kernelFaults: true }");
    return kernelFaults;
  };
  const hostOf = (index: number): string => {
    const host = hosts[index];
    if (host === undefined) throw new RangeError(`no node ${index}`);
    return host;
  };
  const kernel: ClusterKernelFaults = {
    get faults() {
      return needKernel();
    },
    partition: (a, b, opts) => needKernel().partition(hostOf(a), hostOf(b), opts),
    isolate: (index, opts) => needKernel().isolate(hostOf(index), opts),
    dropFrom: (from, to, opts) => needKernel().dropFrom(hostOf(from), hostOf(to), opts),
    heal: () => needKernel().heal(),
  };

  let stopped: Promise<void> | undefined;
  const cluster: TestCluster = {
    nodes,
    hosts,
    kernel,
    connectionString: `chorus+discover://${nodes
      .slice(0, size)
      .map((n) => n.httpEndpoint)
      .join(",")}?${
      options.tls ? `tls=true&tlsCaFile=${encodeURIComponent(options.tls.caFile)}` : "tls=false"
    }`,
    stateOf,
    async leader(opts: LeaderOptions = {}) {
      return waitFor(
        async () => {
          const states = await Promise.all(nodes.map((_, i) => stateOf(i)));
          const leaders = states.flatMap((s, i) => (s === "Leader" ? [i] : []));
          if (leaders.length !== 1) return undefined;
          const index = leaders[0] as number;
          // A probe that fails (the node killed or paused mid-answer, a cut link) is a "not
          // yet", as in stateOf: waitFor asks again until its deadline.
          const ready = await getJson(
            `${scheme}://${(nodes[index] as TestNode).httpEndpoint}/health/ready`,
            1_000,
            ca,
          ).catch(() => undefined);
          return ready?.status === 200 ? index + 1 : undefined;
        },
        { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 50, message: "one leader" },
      ).then((i) => i - 1);
    },
    async kill(index: number) {
      const node = nodes[index];
      if (!node) throw new RangeError(`no node ${index}`);
      await node.kill();
    },
    async restart(index: number) {
      const node = nodes[index];
      if (!node) throw new RangeError(`no node ${index}`);
      await node.restart();
    },
    link: (from, to) => needMesh().link(from, to),
    partition: (...groups) => needMesh().partition(groups),
    heal: () => needMesh().heal(),
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
    [Symbol.asyncDispose]() {
      return cluster.stop();
    },
  };
  return cluster;
}
