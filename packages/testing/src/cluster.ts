import { createServer } from "node:net";
import { startNode, type StartNodeOptions, type TestNode } from "./node.js";
import { waitFor } from "./wait.js";

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
  /** Extra `chorus-server` flags for every node. */
  args?: string[];
  /** Deadline for each node to report ready. Default 30,000 ms. */
  startTimeoutMs?: number;
}

export interface LeaderOptions {
  /** Default 10,000 ms. */
  timeoutMs?: number;
}

export interface TestCluster {
  /** The voters (`0 .. size - 1`), then the read-only replicas. */
  readonly nodes: readonly TestNode[];
  /** `chorus+discover://h:p,h:p,...?tls=false` over every voter's external HTTP endpoint. */
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

async function fetchJson(url: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return res.json();
}

/**
 * Starts `size` `chorus-server` processes on 127.0.0.1 with fixed, pre-picked free ports,
 * `--cluster-size size` and `--gossip-seed` naming every node's internal HTTP endpoint; then
 * `readOnlyReplicas` more with `--read-only-replica` (`--cluster-size` counts the voters only).
 * Resolves once every process reports ready (listening); use `leader()` to wait for an election.
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<TestCluster> {
  const size = options.size ?? 3;
  const replicas = options.readOnlyReplicas ?? 0;
  const host = "127.0.0.1";
  const ports = await freePorts((size + replicas) * 4, host);
  const plan = Array.from({ length: size + replicas }, (_, i) => ({
    extTcp: ports[i * 4] as number,
    extHttp: ports[i * 4 + 1] as number,
    intTcp: ports[i * 4 + 2] as number,
    intHttp: ports[i * 4 + 3] as number,
  }));
  const seeds = plan.map((p) => `${host}:${p.intHttp}`).join(",");
  const nodes: TestNode[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
  };
  try {
    const started = await Promise.all(
      plan.map((p, i) => {
        const nodeOptions: StartNodeOptions = {
          host,
          ports: p,
          args: [
            "--cluster-size",
            String(size),
            "--gossip-seed",
            seeds,
            ...(i >= size ? ["--read-only-replica"] : []),
            ...(options.args ?? []),
          ],
          ...(options.memDb !== undefined && { memDb: options.memDb }),
          ...(options.startTimeoutMs !== undefined && { startTimeoutMs: options.startTimeoutMs }),
        };
        return startNode(nodeOptions).then((n) => {
          nodes.push(n);
          return n;
        });
      }),
    );
    nodes.splice(0, nodes.length, ...started);
  } catch (err) {
    await stopAll();
    throw err;
  }

  const stateOf = async (index: number): Promise<string | undefined> => {
    const node = nodes[index];
    if (!node?.running) return undefined;
    try {
      const info = (await fetchJson(`http://${node.httpEndpoint}/info`, 1_000)) as {
        state?: string;
      };
      return info.state;
    } catch {
      return undefined;
    }
  };

  let stopped: Promise<void> | undefined;
  const cluster: TestCluster = {
    nodes,
    connectionString: `chorus+discover://${nodes
      .slice(0, size)
      .map((n) => n.httpEndpoint)
      .join(",")}?tls=false`,
    stateOf,
    async leader(opts: LeaderOptions = {}) {
      return waitFor(
        async () => {
          const states = await Promise.all(nodes.map((_, i) => stateOf(i)));
          const leaders = states.flatMap((s, i) => (s === "Leader" ? [i] : []));
          if (leaders.length !== 1) return undefined;
          const index = leaders[0] as number;
          const ready = await fetch(
            `http://${(nodes[index] as TestNode).httpEndpoint}/health/ready`,
            {
              signal: AbortSignal.timeout(1_000),
            },
          );
          await ready.body?.cancel();
          return ready.status === 200 ? index + 1 : undefined;
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
