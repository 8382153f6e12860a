import {
  freePorts,
  retryWhilePortTaken,
  startFaultProxy,
  startNode,
  waitFor,
  type FaultProxy,
  type TestCluster,
  type TestNode,
} from "@chorus/testing";

/**
 * Waits until a cluster of three voters and one read-only replica has a leader, two followers
 * and a replica that has caught up: until then a client has no follower or replica to choose.
 */
export async function threeVotersAndReplicaServing(
  cluster: TestCluster,
  timeoutMs: number,
): Promise<void> {
  await waitFor(
    async () => {
      const states = await Promise.all(cluster.nodes.map((_, i) => cluster.stateOf(i)));
      return (
        states.slice(0, 3).sort().join() === "Follower,Follower,Leader" &&
        states[3] === "ReadOnlyReplica"
      );
    },
    { timeoutMs, intervalMs: 50, message: "a leader, two followers and a replica" },
  );
}

/**
 * A cluster whose clients reach every node through a fault proxy: node `i` advertises
 * `proxies[i]` as its external TCP endpoint (`--ext-tcp-port-advertise-as`), so gossip sends
 * the client's WebSocket through the proxy while gossip itself (HTTP) goes to the node.
 */
export interface ProxiedCluster {
  readonly nodes: readonly TestNode[];
  /** `proxies[i]` stands in front of `nodes[i]`'s external TCP port. */
  readonly proxies: readonly FaultProxy[];
  /** `chorus+discover://` over every node's external HTTP endpoint, plus `query`. */
  connectionString(query?: string): string;
  /** Index of the leader as gossip tells it, once that node answers /health/ready. */
  leader(options?: { timeoutMs?: number }): Promise<number>;
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";

export function startProxiedCluster(size = 3): Promise<ProxiedCluster> {
  return retryWhilePortTaken(() => startProxiedClusterOnce(size));
}

async function startProxiedClusterOnce(size: number): Promise<ProxiedCluster> {
  const ports = await freePorts(size * 4, HOST);
  const plan = Array.from({ length: size }, (_, i) => ({
    extTcp: ports[i * 4] as number,
    extHttp: ports[i * 4 + 1] as number,
    intTcp: ports[i * 4 + 2] as number,
    intHttp: ports[i * 4 + 3] as number,
  }));
  const proxies = await Promise.all(
    plan.map((p) => startFaultProxy({ target: { host: HOST, port: p.extTcp } })),
  );
  const seeds = plan.map((p) => `${HOST}:${p.intHttp}`).join(",");
  const nodes: TestNode[] = [];
  const stop = async () => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await Promise.allSettled(proxies.map((p) => p.close()));
  };
  try {
    // Settled, not all: a node still starting when another fails must be stopped too.
    const started = await Promise.allSettled(
      plan.map(async (p, i) => {
        const node = await startNode({
          host: HOST,
          ports: p,
          args: [
            "--cluster-size",
            String(size),
            "--gossip-seed",
            seeds,
            "--ext-tcp-port-advertise-as",
            String((proxies[i] as FaultProxy).endpoint.port),
          ],
        });
        nodes[i] = node;
      }),
    );
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    await stop();
    throw err;
  }
  const byHttpPort = new Map(nodes.map((n, i) => [n.extHttp.port, i]));
  return {
    nodes,
    proxies,
    connectionString: (query = "") =>
      `chorus+discover://${nodes.map((n) => n.httpEndpoint).join(",")}?tls=false${query}`,
    leader: (options = {}) =>
      waitFor(
        async () => {
          for (const node of nodes) {
            if (!node.running) continue;
            const gossip = await getJson<{
              members: { state: string; isAlive: boolean; externalHttp: { port: number } }[];
            }>(node, "/gossip");
            const leaders = gossip?.members.filter((m) => m.isAlive && m.state === "Leader");
            const index =
              leaders?.length === 1 ? byHttpPort.get(leaders[0]!.externalHttp.port) : undefined;
            if (index === undefined || !nodes[index]?.running) continue;
            const ready = await fetch(`http://${nodes[index].httpEndpoint}/health/ready`, {
              signal: AbortSignal.timeout(1_000),
            });
            await ready.body?.cancel();
            if (ready.status === 200) return { index };
          }
          return undefined;
        },
        { timeoutMs: options.timeoutMs ?? 20_000, intervalMs: 50, message: "a ready leader" },
      ).then((found) => found.index),
    stop,
  };
}

/** GET of a node's HTTP API as JSON; undefined when it does not answer 200. */
export async function getJson<T>(node: TestNode, path: string): Promise<T | undefined> {
  try {
    const res = await fetch(`http://${node.httpEndpoint}${path}`, {
      signal: AbortSignal.timeout(2_000),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      return undefined;
    }
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

/** What a node's /metrics says it served over the native protocol. */
export interface Served {
  reads: number;
  subscriptions: number;
  appends: number;
}

/** Sums the node's native-protocol counters of reads, subscriptions and successful appends. */
export async function servedBy(node: TestNode): Promise<Served> {
  const res = await fetch(`http://${node.httpEndpoint}/metrics`, {
    signal: AbortSignal.timeout(2_000),
  });
  const text = await res.text();
  const sum = (name: string, labels: RegExp = /.*/) =>
    text
      .split("\n")
      .filter((line) => line.startsWith(`${name}{`) && labels.test(line))
      .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  return {
    reads: sum("chorus_reads_total", /interface="native"/),
    subscriptions: sum("chorus_subscriptions_total"),
    appends: sum(
      "chorus_appends_total",
      /interface="native".*result="success"|result="success".*interface="native"/,
    ),
  };
}
