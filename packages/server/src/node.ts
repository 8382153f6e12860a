import { randomUUID } from "node:crypto";
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { resolve as resolvePath } from "node:path";
import type { Duplex } from "node:stream";
import type { InProcessClientEnd, InProcessNode, InProcessOpenResult } from "@chorus/protocol";
import type { Logger } from "pino";
import { Authenticator } from "./auth/index.js";
import {
  resolveNodeOptions,
  securityWarnings,
  serverVersion,
  type NodeOptions,
} from "./config/index.js";
import type { NodeContext, NodeEndpoints } from "./api/context.js";
import type { Endpoint, NodeState } from "./node-types.js";
import {
  createExternalHttpHandler,
  createInternalHttpHandler,
  gossipDocument,
  memberInfo,
} from "./api/http.js";
import { ClusterRole, ClusterStore } from "./cluster/node-role.js";
import { stalledSyncThresholdMs } from "./cluster/timings.js";
import { endpointKey } from "./cluster/gossip/wire.js";
import { dnsSeedSource } from "./cluster/gossip/dns-seeds.js";
import { NodeMetrics } from "./api/metrics.js";
import { NativeApi } from "./api/native.js";
import {
  ClientConnections,
  effectiveConnectionLimit,
  openFilesLimit,
} from "./api/client-connections.js";
import { ByteBudget, RECEIVE_BUDGET, SEND_BUDGET } from "./api/byte-budget.js";
import { GatedReadsStore, READS_AT_ONCE, ReadGate } from "./api/read-gate.js";
import { createLogger } from "./logging.js";
import { loadTls, peerTls, serverTlsOptions } from "./tls.js";
import {
  createDiskStore,
  createMemoryStore,
  isReplicatedLog,
  type ReplicatedStore,
} from "./storage/index.js";
import type { StreamStore } from "./streams/types.js";
import { DatabaseMembership, lockIdleTimeoutMs } from "./postgres/membership.js";
import { PostgresStore } from "./postgres/store.js";
import { isDatabaseUrl, redactDatabaseUrl } from "./postgres/url.js";

export type { NodeEndpoints } from "./api/context.js";

/** The node could not start (port in use, data directory unusable, corrupted log). The CLI exits 1. */
export class StartupError extends Error {
  override readonly name = "StartupError";
  readonly exitCode = 1;
}

export interface NodeExtras {
  /** Defaults to a pino logger on stdout (and a file in `options.log`). */
  readonly logger?: Logger;
  /** Use this store instead of opening one from the options (it is opened and closed by the node). */
  readonly store?: StreamStore;
}

/**
 * A running node. It is also an InProcessNode: a client in the same process reaches it with
 * `ConnectionSettings.create().withInProcessNode(node)`, with no socket.
 */
export interface ChorusNode extends InProcessNode {
  readonly instanceId: string;
  readonly options: NodeOptions;
  /** The bound endpoints. Throws for a node started with `listen: false` (it has none). */
  readonly endpoints: NodeEndpoints;
  readonly store: StreamStore;
  readonly logger: Logger;
  readonly state: NodeState;
  /** Stops accepting, finishes in-flight writes, closes connections with 1001, closes the store. Idempotent. */
  close(): Promise<void>;
}

/** How long shutdown waits for in-flight writes and for clients to acknowledge the close. */
const SHUTDOWN_GRACE_MS = 5_000;
/** How long a stopping leader waits for a follower to take over. */
const RESIGN_TIMEOUT_MS = 2_000;

interface Listener {
  readonly name: keyof NodeEndpoints;
  readonly server: HttpServer;
  readonly ip: string;
  readonly port: number;
}

/** The store the options ask for; a cluster node's replicates its log (autoCommit false). */
function createStore(
  options: NodeOptions,
  logger: Logger,
  onSync: (seconds: number) => void,
): ReplicatedStore {
  // A cluster moves the commit position itself (consensus); a single node commits on fsync.
  const autoCommit = options.clusterSize <= 1;
  const common = {
    logger,
    idempotencyWindow: options.idempotencyWindow,
    streamCache: options.streamCache,
    autoCommit,
  };
  return options.memDb
    ? createMemoryStore(common)
    : createDiskStore({ dir: options.db, ...common, onSync });
}

/** A cluster node's store: the cluster replicates its log, so it must be a ReplicatedLog. */
function requireReplicatedLog(store: StreamStore): ReplicatedStore {
  if (!isReplicatedLog(store))
    throw new StartupError("a cluster node needs a LogStore (created with autoCommit: false)");
  return store;
}

/** Where the node keeps its data, for messages and the log (a database URL without its password). */
function dataLocation(options: NodeOptions): string | null {
  if (options.memDb) return null;
  return isDatabaseUrl(options.db) ? redactDatabaseUrl(options.db) : resolvePath(options.db);
}

async function openStore<S extends StreamStore>(options: NodeOptions, store: S): Promise<S> {
  try {
    await store.open();
  } catch (err) {
    if (store instanceof PostgresStore)
      throw new StartupError(err instanceof Error ? err.message : String(err), { cause: err });
    const where = options.memDb
      ? "the in-memory store"
      : `the data directory ${dataLocation(options)}`;
    throw new StartupError(
      `cannot open ${where}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  return store;
}

function listen(l: Listener): Promise<Endpoint> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      l.server.off("listening", onListening);
      const why =
        err.code === "EADDRINUSE"
          ? "the address is in use"
          : err.code === "EADDRNOTAVAIL"
            ? "the address is not available on this machine"
            : err.code === "EACCES"
              ? "permission denied"
              : err.message;
      reject(
        new StartupError(`cannot listen on ${l.name} ${l.ip}:${l.port}: ${why}`, { cause: err }),
      );
    };
    const onListening = (): void => {
      l.server.off("error", onError);
      const address = l.server.address() as AddressInfo;
      resolve({ host: l.ip, port: address.port });
    };
    l.server.once("error", onError);
    l.server.once("listening", onListening);
    l.server.listen({ host: l.ip, port: l.port, exclusive: true });
  });
}

function closeServer(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/**
 * Starts a node: opens the store, binds the four listeners (port 0 picks a free port) and logs
 * one "node ready" line. Throws ConfigError (bad options) or StartupError.
 */
export async function createNode(
  partial: Partial<NodeOptions> = {},
  extras: NodeExtras = {},
): Promise<ChorusNode> {
  const options = resolveNodeOptions(partial);
  const logger = extras.logger ?? createLogger({ level: options.logLevel, logDir: options.log });
  const tls = loadTls(options, (message) => new StartupError(message));
  for (const warning of securityWarnings(options)) logger.warn(warning);

  const instanceId = randomUUID();
  const auth = new Authenticator(options.adminPassword);
  let state: NodeState = "Initializing";
  // Writes handed to the store and not settled yet, by count: a Set would take an insert and a
  // delete per write, and V8 rebuilds a Set's table every few hundred of those, each replaced
  // table keeping its entries and a link to the next (see the client's channel table).
  let inflight = 0;
  let drained: (() => void) | undefined;
  // Internal listeners with trusted roots let in only clients with a member's certificate.
  const makeServer = (internal: boolean): HttpServer =>
    tls ? createHttpsServer(serverTlsOptions(tls, internal)) : createHttpServer();
  const toPeers = peerTls(tls);

  const clustered = options.clusterSize > 1;
  // Shared-database mode: the database is the cluster (resolveNodeOptions refused the flags of
  // a replicated one).
  const database =
    extras.store === undefined && !options.memDb && isDatabaseUrl(options.db)
      ? new PostgresStore({
          url: options.db,
          logger,
          applicationName: `chorus-server ${instanceId}`,
        })
      : undefined;
  const metrics = new NodeMetrics(() => openedStore);
  const store =
    extras.store ??
    database ??
    createStore(options, logger, (seconds) => metrics.fsyncDuration.observe(seconds));
  const replicated = clustered ? requireReplicatedLog(store) : undefined;
  const openedStore = await openStore(options, store);
  let cluster: ClusterRole | undefined;
  let membership: DatabaseMembership | undefined;
  const apiStore: { current: StreamStore } = { current: openedStore };
  /** The state gossip and /info show: while running, the cluster role's state. */
  const shownState = (): NodeState => {
    if (state !== "Leader") return state;
    if (clustered) return cluster?.state ?? "Unknown";
    // An instance on a shared database serves while it reaches the database.
    if (database) return membership?.healthy === false ? "Unknown" : state;
    return state;
  };
  const bound: Partial<Record<keyof NodeEndpoints, Endpoint>> = {};
  const live: { endpoints?: NodeEndpoints } = {};
  const connectionLimit = effectiveConnectionLimit(options.maxClientConnections, openFilesLimit());
  if (connectionLimit.lowered)
    logger.warn(
      { configured: options.maxClientConnections, limit: connectionLimit.limit },
      "the open-files limit (ulimit -n) leaves room for fewer client connections than --max-client-connections: the lower limit applies",
    );
  const clients = new ClientConnections(
    connectionLimit.limit,
    metrics.clientConnectionsRefused,
    logger,
  );
  const receiveBudget = new ByteBudget(
    options.receiveBudgetBytes,
    RECEIVE_BUDGET,
    metrics.receiveBudgetEvictions,
    logger,
  );
  const sendBudget = new ByteBudget(
    options.sendBudgetBytes,
    SEND_BUDGET,
    metrics.sendBudgetEvictions,
    logger,
  );
  const readGate = new ReadGate(READS_AT_ONCE);
  metrics.watchReads(readGate);
  let gated = new GatedReadsStore(apiStore.current, readGate);
  const ctx: NodeContext = {
    // What clients ask for, with its page reads bounded node-wide (read-gate.ts).
    get store() {
      if (gated.inner !== apiStore.current) gated = new GatedReadsStore(apiStore.current, readGate);
      return gated;
    },
    auth,
    logger,
    metrics,
    options,
    instanceId,
    version: serverVersion(),
    tls: tls !== null,
    ...(toPeers !== undefined && { peerTls: toPeers }),
    state: shownState,
    stalledSyncMs: () => {
      const ms = openedStore.stats().syncRunningMs ?? 0;
      return ms >= stalledSyncThresholdMs(options.electionTimeoutMs) ? ms : undefined;
    },
    clientConnectionRefusal: () => clients.refusal(),
    receiveBudget,
    sendBudget,
    restartNeeded: () => {
      const stopped = cluster?.stoppedTakingPart;
      if (stopped !== undefined) return `this node stopped taking part in its cluster: ${stopped}`;
      const refused = openedStore.stats().writesRefused;
      return refused === undefined ? undefined : `the store refuses writes: ${refused}`;
    },
    isReady: () =>
      state === "Leader" &&
      (!clustered || cluster?.isReady() === true) &&
      (database === undefined || membership?.healthy === true),
    cluster: () => cluster ?? membership?.view,
    persistentCluster: () => cluster ?? membership?.persistentView,
    endpoints: () => live.endpoints,
    track: <T>(work: Promise<T>): Promise<T> => {
      inflight++;
      const done = (): void => {
        if (--inflight === 0) drained?.();
      };
      work.then(done, done);
      return work;
    },
  };

  metrics.node = ctx;

  const extHttp = makeServer(false);
  extHttp.on("request", createExternalHttpHandler(ctx, { persistent: () => native.persistent }));
  const intHttp = makeServer(true);
  intHttp.on("request", createInternalHttpHandler(ctx));
  const extTcp = makeServer(false);
  clients.watch(extHttp);
  clients.watch(extTcp);
  const native = new NativeApi(ctx, options.listen ? extTcp : undefined);
  const intTcp = makeServer(true);
  if (clustered) answerInternalTcpRequests(intTcp);
  else refuseInternalTcp(intTcp);
  for (const s of [extHttp, intHttp, extTcp, intTcp]) {
    s.headersTimeout = 30_000;
    s.requestTimeout = 60_000;
  }

  const listeners: Listener[] = options.listen
    ? [
        { name: "extTcp", server: extTcp, ip: options.extIp, port: options.extTcpPort },
        { name: "extHttp", server: extHttp, ip: options.extIp, port: options.extHttpPort },
        { name: "intTcp", server: intTcp, ip: options.intIp, port: options.intTcpPort },
        { name: "intHttp", server: intHttp, ip: options.intIp, port: options.intHttpPort },
      ]
    : [];
  try {
    for (const l of listeners) bound[l.name] = await listen(l);
  } catch (err) {
    native.beginShutdown();
    await Promise.all(listeners.map((l) => closeServer(l.server)));
    await openedStore.close().catch(() => undefined);
    throw err;
  }
  const endpoints: NodeEndpoints | undefined = options.listen
    ? Object.freeze({
        extTcp: bound.extTcp as Endpoint,
        extHttp: bound.extHttp as Endpoint,
        intTcp: bound.intTcp as Endpoint,
        intHttp: bound.intHttp as Endpoint,
      })
    : undefined;
  if (endpoints) live.endpoints = endpoints;
  if (replicated !== undefined && endpoints !== undefined) {
    const selfTcp = {
      host: options.intHostAdvertiseAs ?? endpoints.intTcp.host,
      port: options.intTcpPortAdvertiseAs ?? endpoints.intTcp.port,
    };
    cluster = new ClusterRole({
      store: replicated,
      clusterSize: options.clusterSize,
      instanceId,
      selfId: endpointKey(selfTcp),
      nodePriority: options.nodePriority,
      readOnlyReplica: options.readOnlyReplica,
      gossipSeeds: options.gossipSeed,
      ...(options.discoverViaDns &&
        options.clusterDns !== null && {
          seedSource: dnsSeedSource({
            name: options.clusterDns,
            gossipPort: options.clusterGossipPort,
            dnsServer: options.dnsServer ?? undefined,
            logger,
          }),
        }),
      selfInfo: () => memberInfo(ctx),
      logger,
      timings: {
        heartbeatIntervalMs: options.heartbeatIntervalMs,
        electionTimeoutMs: options.electionTimeoutMs,
        gossipIntervalMs: options.gossipIntervalMs,
        gossipTimeoutMs: options.gossipTimeoutMs,
      },
      ...(toPeers !== undefined && { tls: toPeers }),
      localAddress: options.intIp,
      onReplicationRoundTrip: (seconds) => metrics.replicationRoundTrip.observe(seconds),
    });
    const role = cluster;
    metrics.replicationLag = () => role.replicationLag();
    apiStore.current = new ClusterStore(replicated, cluster);
    cluster.start(intTcp);
  }
  state = "Leader";
  if (database) {
    if (!database.idleSessionTimeouts)
      logger.warn(
        "this PostgreSQL (before 14) cannot end a silent session: an instance cut off from the database while it serves the persistent subscription groups keeps them unserved until the database drops its connection",
      );
    membership = new DatabaseMembership({
      sql: database.sql,
      // The lock goes with its connection: the holder stops serving the moment it closes.
      // The database ends the session when the instance falls silent (cut off, or paused),
      // and the lock with it, so that another instance can take over.
      lockSession: (onClose) =>
        database.session(1, {
          onClose,
          idleSessionTimeoutMs: lockIdleTimeoutMs(options.gossipIntervalMs),
        }),
      instanceId,
      selfInfo: () => memberInfo(ctx),
      heartbeatIntervalMs: options.gossipIntervalMs,
      deadAfterMs: Math.max(3 * options.gossipIntervalMs, options.gossipTimeoutMs),
      logger,
      // What waits on a database this instance cannot reach is answered now, and catch-up
      // subscriptions are sent elsewhere: their clients retry, subscribe again, and move to
      // an instance that reaches it (this one refuses them meanwhile).
      onUnreachable: () => {
        const message = "this instance cannot reach the database";
        database.interrupt(message);
        native.storageUnreachable(message);
      },
    });
    const gate = membership.view;
    apiStore.current = new ClusterStore(openedStore, {
      writeRefusal: () => gate.writeRefusal(),
      readRefusal: () => gate.readRefusal?.(),
      afterWrite: () => undefined,
    });
    try {
      await membership.start();
    } catch (err) {
      native.beginShutdown();
      await membership.close().catch(() => undefined);
      await Promise.all(listeners.map((l) => closeServer(l.server)));
      await openedStore.close().catch(() => undefined);
      state = "Shutdown";
      throw new StartupError(
        `cannot join the instances on ${database.where}: ${err instanceof Error ? err.message : String(err)}`,
        {
          cause: err,
        },
      );
    }
  }
  const db = dataLocation(options);
  logger.info(
    {
      ...(endpoints ?? { listen: false }),
      instanceId,
      db,
      tls: tls !== null,
      authentication: auth.enabled,
      version: ctx.version,
    },
    "node ready",
  );

  let closing: Promise<void> | undefined;
  const node: ChorusNode = {
    instanceId,
    options,
    get endpoints(): NodeEndpoints {
      if (endpoints === undefined)
        throw new Error("this node was started with listen: false: it has no endpoints");
      return endpoints;
    },
    store: apiStore.current,
    logger,
    get state() {
      return shownState();
    },
    gossip(): unknown {
      return gossipDocument(ctx);
    },
    openInProcess(
      client: InProcessClientEnd,
      open: {
        readonly credentials?: { readonly username: string; readonly password: string };
      } = {},
    ): InProcessOpenResult {
      const credentials = open.credentials;
      if (
        credentials !== undefined &&
        (typeof credentials.username !== "string" || typeof credentials.password !== "string")
      )
        return { ok: false, status: 401, message: "credentials need a username and a password" };
      return native.openInProcess(
        client,
        credentials && { username: credentials.username, password: credentials.password },
      );
    },
    close() {
      closing ??= (async () => {
        logger.info("node shutting down");
        // A leader hands over first (one round trip of unavailability instead of an
        // election timeout); its clients see NOT_LEADER and move to the new leader.
        try {
          await cluster?.resign(RESIGN_TIMEOUT_MS);
        } catch (err) {
          logger.warn({ err }, "leadership hand-over failed");
        }
        state = "ShuttingDown";
        native.beginShutdown();
        const stopped = listeners.map((l) => closeServer(l.server));
        // Let writes already handed to the store finish, so their replies reach the clients.
        const deadline = new Promise<void>((resolve) =>
          setTimeout(resolve, SHUTDOWN_GRACE_MS).unref(),
        );
        const settled =
          inflight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
        await Promise.race([settled, deadline]);
        await native.closeConnections(SHUTDOWN_GRACE_MS);
        // The peer links ride upgraded sockets of the internal TCP server: close them first.
        try {
          await cluster?.close();
          await membership?.close();
        } catch (err) {
          logger.error({ err }, "closing the cluster role failed");
        }
        for (const l of listeners) l.server.closeAllConnections();
        await Promise.all(stopped);
        try {
          await openedStore.close();
        } catch (err) {
          logger.error({ err }, "closing the store failed");
        }
        state = "Shutdown";
        logger.info("node stopped");
      })();
      return closing;
    },
  };
  return node;
}

/** A cluster node's internal TCP port: WebSocket upgrades go to the PeerNetwork, requests get 426. */
function answerInternalTcpRequests(server: HttpServer): void {
  server.on("request", (_req, res) => {
    res.writeHead(426, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" });
    res.end("426 Upgrade Required: this is the Chorus internal replication port (WebSocket)\n");
  });
  server.on("clientError", (_err: Error, socket: Duplex) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    socket.destroy();
  });
}

/** A single node's internal TCP port carries no replication: it refuses politely. */
function refuseInternalTcp(server: HttpServer): void {
  server.on("upgrade", (_req: IncomingMessage, socket: Duplex) => {
    const body = "503 Service Unavailable: replication is not available yet (single-node Chorus)\n";
    socket.on("error", () => socket.destroy());
    socket.end(
      `HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  server.on("request", (_req, res) => {
    res.writeHead(426, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" });
    res.end("426 Upgrade Required: this is the Chorus internal replication port (WebSocket)\n");
  });
  server.on("clientError", (_err: Error, socket: Duplex) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    socket.destroy();
  });
}
