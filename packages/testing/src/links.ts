/**
 * Fault proxies on every node-to-node link of a cluster whose nodes sit on distinct loopback
 * addresses. A node has one advertised internal endpoint (its identity), so every peer
 * connects to the same address: a router listens there and hands each connection to the
 * proxy of the link it belongs to, told apart by the source address (a node's connections
 * to its peers leave from its `--int-ip`). Link (a -> b) carries what a sends to b on its
 * own connections and the replies to them.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.js";
import type { Endpoint } from "./node.js";
import { resetSocket } from "./reset.js";

export interface LinkProxies {
  /** The proxies on the internal TCP (replication) and HTTP (gossip) connections. */
  readonly tcp: FaultProxy;
  readonly http: FaultProxy;
}

interface Router {
  close(): Promise<void>;
}

/** Pipes both ways; an error or reset on one side resets the other. */
function splice(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const reset = (s: Socket) => () => resetSocket(s);
  a.on("error", reset(b));
  b.on("error", reset(a));
  a.on("close", () => b.destroy());
  b.on("close", () => a.destroy());
}

async function startRouter(
  listen: Endpoint,
  route: (remoteAddress: string | undefined) => Endpoint,
): Promise<Router> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    const target = route(client.remoteAddress?.replace(/^::ffff:/, ""));
    const upstream = connect({ host: target.host, port: target.port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    }
    splice(client, upstream);
    client.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: listen.host, port: listen.port, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

export interface LinkMesh {
  link(from: number, to: number): LinkProxies;
  /** Blackholes every link between nodes of different groups, both ways. */
  partition(groups: readonly (readonly number[])[]): void;
  heal(): void;
  close(): Promise<void>;
}

export interface MeshNode {
  /** The node's own address: its connections to peers leave from it. */
  readonly host: string;
  /** Where the node really listens. */
  readonly intTcp: Endpoint;
  readonly intHttp: Endpoint;
  /** Where the routers listen: what the node advertises to its peers. */
  readonly advertisedTcp: Endpoint;
  readonly advertisedHttp: Endpoint;
}

/** Starts a router per advertised endpoint and a fault proxy per ordered pair of nodes. */
export async function startLinkMesh(nodes: readonly MeshNode[]): Promise<LinkMesh> {
  const hosts = nodes.map((n) => n.host);
  if (new Set(hosts).size !== hosts.length) {
    throw new Error(`link proxies need a distinct address per node, got ${hosts.join(", ")}`);
  }
  const proxies = new Map<string, LinkProxies>();
  const routers: Router[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled([
      ...routers.map((r) => r.close()),
      ...[...proxies.values()].flatMap((p) => [p.tcp.close(), p.http.close()]),
    ]);
  };
  const key = (from: number, to: number) => `${from}->${to}`;
  try {
    for (const [to, node] of nodes.entries()) {
      for (const from of nodes.keys()) {
        if (from === to) continue;
        const [tcp, http] = await Promise.all([
          startFaultProxy({ target: node.intTcp }),
          startFaultProxy({ target: node.intHttp }),
        ]);
        proxies.set(key(from, to), { tcp, http });
      }
      const via = (kind: "tcp" | "http", direct: Endpoint) => (remote: string | undefined) => {
        const from = remote === undefined ? -1 : hosts.indexOf(remote);
        const link = from < 0 || from === to ? undefined : proxies.get(key(from, to));
        return link ? link[kind].endpoint : direct;
      };
      routers.push(await startRouter(node.advertisedTcp, via("tcp", node.intTcp)));
      routers.push(await startRouter(node.advertisedHttp, via("http", node.intHttp)));
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  const link = (from: number, to: number): LinkProxies => {
    const l = proxies.get(key(from, to));
    if (!l) throw new RangeError(`no link from node ${from} to node ${to}`);
    return l;
  };
  return {
    link,
    partition(groups) {
      const groupOf = new Map<number, number>();
      groups.forEach((g, i) => g.forEach((n) => groupOf.set(n, i)));
      for (const [k, l] of proxies) {
        const [from, to] = k.split("->").map(Number) as [number, number];
        const a = groupOf.get(from);
        const b = groupOf.get(to);
        if (a !== undefined && b !== undefined && a !== b) {
          l.tcp.blackhole();
          l.http.blackhole();
        }
      }
    },
    heal() {
      for (const l of proxies.values()) {
        l.tcp.heal();
        l.http.heal();
      }
    },
    close: closeAll,
  };
}
