import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { discover } from "../discovery/discover.js";
import { DnsPacketResolver } from "../discovery/dns-packet-resolver.js";
import type { SeedResolver } from "../discovery/dns.js";
import { HttpGossipReader, type GossipReader } from "../discovery/gossip.js";
import { leaderOf, selectNode } from "../discovery/select-node.js";
import {
  ClientClosedError,
  ConnectionError,
  DiscoveryError,
  TimeoutError,
  type DiscoveryCause,
  type LeaderEndpoints,
} from "../errors.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_MAX_BACKOFF_DELAY_MS } from "../settings/defaults.js";
import { formatEndpoint, sameEndpoint } from "../settings/endpoint.js";
import type { Transport, TransportFactory } from "../transport/transport.js";
import { webSocketTransportFactory } from "../transport/ws-transport.js";
import type { Endpoint, MemberInfo, TimerHandle } from "../types.js";
import { abortReason, sleep, type Abortable } from "../util/timers.js";
import { backoffDelayMs } from "./backoff.js";

export type ConnectionStatus = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export interface ConnectionEvents {
  connected: [node: MemberInfo];
  disconnected: [reason: Error];
  reconnecting: [attempt: number];
  leaderChanged: [change: { previous?: MemberInfo; current: MemberInfo }];
  closed: [];
  status: [status: ConnectionStatus];
}

/** A live connection to one node, as operations see it. */
export interface Session {
  readonly transport: Transport;
  readonly node: MemberInfo;
}

/** Replaceable I/O, for tests. */
export interface ConnectionDependencies {
  gossipReader?: GossipReader;
  seedResolver?: SeedResolver;
  transportFactory?: TransportFactory;
  connectTimeoutMs?: number;
}

interface Waiter {
  resolve(session: Session): void;
  reject(error: Error): void;
}

/**
 * The connection state machine: discover -> connect -> connected -> (lost) -> reconnecting
 * -> rediscover. Owns the member pool (seeds are kept apart from gossiped members and never
 * forgotten) and is the only module that calls both discovery and transport. Requests
 * wait for a session in a queue with a deadline while no node is connected.
 */
export class Connection extends EventEmitter<ConnectionEvents> {
  readonly #settings: ConnectionSettings;
  readonly #deps: ConnectionDependencies;
  #status: ConnectionStatus = "idle";
  #session: Session | undefined;
  #members: MemberInfo[] = [];
  #leader: MemberInfo | undefined;
  #waiters = new Set<Waiter>();
  #loop: Promise<void> | undefined;
  #loopAbort: AbortController | undefined;
  #draining = false;
  /** Where to go next instead of discovering (a NOT_LEADER reply named the leader). */
  #target: LeaderEndpoints | undefined;
  /** Reconnect at once (no backoff) after this disconnection. */
  #skipDelay = false;
  #io:
    | Promise<{ reader: GossipReader; resolver: SeedResolver; transports: TransportFactory }>
    | undefined;
  #ownedReader: GossipReader | undefined;

  constructor(settings: ConnectionSettings, deps: ConnectionDependencies = {}) {
    super();
    this.#settings = settings;
    this.#deps = deps;
  }

  get status(): ConnectionStatus {
    return this.#status;
  }

  /** The node of the live session, if any. */
  get node(): MemberInfo | undefined {
    return this.#session?.node;
  }

  /** The cluster members of the latest gossip. */
  get members(): readonly MemberInfo[] {
    return this.#members;
  }

  /** The current session when connected; undefined otherwise. Does not start connecting. */
  get currentSession(): Session | undefined {
    return this.#session?.transport.isOpen ? this.#session : undefined;
  }

  #setStatus(status: ConnectionStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    this.emit("status", status);
  }

  /** Starts connecting if idle and waits for the first session (no queue deadline). */
  async connect(signal?: AbortSignal): Promise<MemberInfo> {
    const session = await this.session({ signal });
    return session.node;
  }

  /**
   * A live session: at once when connected, otherwise after (re)connecting. Starts the
   * state machine when idle. Rejects after `queueTimeoutMs` with TimeoutError, when the
   * signal aborts (with its reason), when the connection gives up, or when closed.
   */
  session(
    options: { signal?: Abortable | undefined; queueTimeoutMs?: number | undefined } = {},
  ): Promise<Session> {
    if (this.#status === "closed" || this.#draining) return Promise.reject(new ClientClosedError());
    if (options.signal?.aborted) return Promise.reject(abortReason(options.signal));
    const live = this.currentSession;
    if (live) return Promise.resolve(live);
    this.#start();
    return new Promise<Session>((resolve, reject) => {
      const timers = this.#settings.timers;
      let timer: TimerHandle | undefined;
      const done = () => {
        this.#waiters.delete(waiter);
        if (timer !== undefined) timers.clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = {
        resolve: (s) => {
          done();
          resolve(s);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      const onAbort = () => waiter.reject(abortReason(options.signal!));
      if (options.queueTimeoutMs !== undefined && Number.isFinite(options.queueTimeoutMs)) {
        const ms = options.queueTimeoutMs;
        timer = timers.setTimeout(
          () =>
            waiter.reject(
              new TimeoutError(
                `no node reachable within the queue timeout of ${ms} ms (status: ${this.#status})`,
              ),
            ),
          Math.max(0, ms),
        );
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  /**
   * A NOT_LEADER (or read-only) reply came over `from`: move to the leader it names, or to
   * the leader gossip knows, or rediscover. Ignored when `from` is no longer the live session.
   */
  retarget(from: Transport, leader: LeaderEndpoints | undefined): void {
    const session = this.#session;
    if (!session || session.transport !== from || this.#status === "closed") return;
    let target = leader;
    if (!target?.tcp) {
      const known = leaderOf(this.#members);
      if (known && known.instanceId !== session.node.instanceId && known.externalTcp) {
        target = {
          tcp: known.externalTcp,
          ...(known.externalHttp && { http: known.externalHttp }),
        };
      }
    }
    if (target?.tcp && sameEndpoint(target.tcp, session.node.externalTcp)) target = undefined;
    this.#settings.logger.info("leaving node for the leader", {
      node: formatEndpoint(from.endpoint),
      leader: target?.tcp ? formatEndpoint(target.tcp) : "unknown: rediscovering",
    });
    this.#target = target;
    this.#skipDelay = true;
    void from.close("not the leader");
  }

  /** Asks for gossip now (one round over seeds and known members) and returns the members. */
  async refreshMembers(signal?: AbortSignal): Promise<MemberInfo[]> {
    if (this.#status === "closed") throw new ClientClosedError();
    const io = await this.#ioReady();
    const { discover: found } = await this.#discoverOnce(io, 1, signal);
    return found;
  }

  async #discoverOnce(
    io: { reader: GossipReader; resolver: SeedResolver },
    maxAttempts: number,
    signal?: AbortSignal,
  ): Promise<{ node: MemberInfo; discover: MemberInfo[] }> {
    const s = this.#settings;
    const location = s.location;
    const result = await discover({
      reader: io.reader,
      candidates: () => this.#candidates(io.resolver, signal),
      select: (members) => {
        if (location.kind === "singleNode") {
          const alive = members.filter((m) => m.isAlive && m.externalTcp);
          return (
            alive.find((m) => sameEndpoint(m.externalHttp, location.endpoint)) ??
            (alive.length === 1 ? alive[0] : selectNode(s.nodePreference, alive, s.random))
          );
        }
        return selectNode(s.nodePreference, members, s.random);
      },
      maxAttempts,
      delayMs: s.discoverDelayMs,
      maxDelayMs: DEFAULT_MAX_BACKOFF_DELAY_MS,
      gossipTimeoutMs: s.gossipTimeoutMs,
      random: s.random,
      timers: s.timers,
      logger: s.logger,
      ...(signal && { signal }),
      onMembers: (members) => this.#updateMembers(members),
    });
    return { node: result.node, discover: result.members };
  }

  /** Seeds (never forgotten) plus the gossip endpoints of known members, without duplicates. */
  async #candidates(
    resolver: SeedResolver,
    signal?: AbortSignal,
  ): Promise<{ endpoints: Endpoint[]; failures: DiscoveryCause[] }> {
    const location = this.#settings.location;
    const failures: DiscoveryCause[] = [];
    let seeds: readonly Endpoint[] = [];
    if (location.kind === "singleNode") {
      return { endpoints: [location.endpoint], failures };
    } else if (location.kind === "gossipSeeds") {
      seeds = location.seeds;
    } else {
      try {
        seeds = await resolver.resolve(location, {
          timeoutMs: this.#settings.gossipTimeoutMs,
          ...(signal && { signal }),
        });
      } catch (err) {
        failures.push({
          seed: location.srv ? `_chorus._tcp.${location.name}` : location.name,
          error: new Error(
            `DNS lookup failed: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          ),
        });
      }
    }
    const all = [
      ...seeds,
      ...this.#members.flatMap((m) => (m.externalHttp ? [m.externalHttp] : [])),
    ];
    const seen = new Set<string>();
    const endpoints = all.filter((e) => {
      const key = formatEndpoint(e);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    return { endpoints, failures };
  }

  #updateMembers(members: MemberInfo[]): void {
    this.#members = members;
    const leader = leaderOf(members);
    if (leader) this.#noteLeader(leader);
  }

  #noteLeader(current: MemberInfo): void {
    const previous = this.#leader;
    this.#leader = current;
    if (previous?.instanceId !== current.instanceId) {
      this.emit("leaderChanged", previous ? { previous, current } : { current });
    }
  }

  #ioReady(): Promise<{
    reader: GossipReader;
    resolver: SeedResolver;
    transports: TransportFactory;
  }> {
    this.#io ??= (async () => {
      const s = this.#settings;
      let tls:
        | { ca?: string | Buffer | ReadonlyArray<string | Buffer>; rejectUnauthorized: boolean }
        | undefined;
      if (s.tls) {
        let ca = s.tls.ca;
        if (s.tls.caFile !== undefined) {
          try {
            ca = await readFile(s.tls.caFile);
          } catch (err) {
            throw new ConnectionError(
              `cannot read the TLS CA file ${s.tls.caFile}: ${(err as Error).message}`,
              { cause: err },
            );
          }
        }
        tls = { ...(ca !== undefined && { ca }), rejectUnauthorized: s.tls.rejectUnauthorized };
      }
      let reader = this.#deps.gossipReader;
      if (!reader) {
        reader = new HttpGossipReader({ tls, timers: s.timers });
        this.#ownedReader = reader;
      }
      const transports =
        this.#deps.transportFactory ??
        webSocketTransportFactory({
          tls,
          credentials: s.defaultCredentials,
          heartbeat: s.heartbeat,
          connectTimeoutMs: this.#deps.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
          timers: s.timers,
          logger: s.logger,
        });
      return {
        reader,
        resolver:
          this.#deps.seedResolver ?? new DnsPacketResolver({ random: this.#settings.random }),
        transports,
      };
    })();
    // A failed setup (unreadable CA file) is retried on the next attempt.
    this.#io.catch(() => (this.#io = undefined));
    return this.#io;
  }

  #start(): void {
    if (this.#loop || this.#status === "closed") return;
    const abort = new AbortController();
    this.#loopAbort = abort;
    this.#loop = this.#run(abort.signal).finally(() => {
      this.#loop = undefined;
      this.#loopAbort = undefined;
    });
  }

  async #run(signal: AbortSignal): Promise<void> {
    const s = this.#settings;
    let connectedOnce = false;
    let attempt = 0;
    while (!signal.aborted) {
      if (connectedOnce) {
        attempt++;
        if (attempt > s.maxReconnections) {
          this.#giveUp(
            new ConnectionError(`gave up after ${s.maxReconnections} reconnection attempt(s)`),
          );
          return;
        }
        this.#setStatus("reconnecting");
        this.emit("reconnecting", attempt);
        const skip = this.#skipDelay && attempt === 1;
        this.#skipDelay = false;
        if (!skip) {
          try {
            await sleep(
              s.timers,
              backoffDelayMs(
                attempt,
                s.reconnectionDelayMs,
                DEFAULT_MAX_BACKOFF_DELAY_MS,
                s.random,
              ),
              signal,
            );
          } catch {
            return;
          }
        }
      } else {
        this.#setStatus("connecting");
      }
      let session: Session;
      try {
        session = await this.#establish(signal);
      } catch (err) {
        if (signal.aborted) return;
        s.logger.warn("connection attempt failed", { attempt, error: (err as Error).message });
        if (!connectedOnce) {
          this.#giveUp(err);
          return;
        }
        if (err instanceof Error && err.name === "NotAuthenticatedError") {
          this.#giveUp(err);
          return;
        }
        continue;
      }
      if (signal.aborted) {
        session.transport.destroy();
        return;
      }
      connectedOnce = true;
      attempt = 0;
      this.#session = session;
      this.#setStatus("connected");
      s.logger.info("connected", {
        node: formatEndpoint(session.transport.endpoint),
        state: session.node.state,
      });
      if (session.node.state === "Leader") this.#noteLeader(session.node);
      this.emit("connected", session.node);
      for (const w of [...this.#waiters]) w.resolve(session);
      const reason = await session.transport.closed;
      this.#session = undefined;
      if (signal.aborted) return;
      s.logger.info("disconnected", {
        node: formatEndpoint(session.transport.endpoint),
        reason: reason.message,
      });
      this.emit("disconnected", reason);
    }
  }

  /** Discovery (or the NOT_LEADER target), then the WebSocket. */
  async #establish(signal: AbortSignal): Promise<Session> {
    const io = await this.#ioReady();
    const target = this.#target;
    this.#target = undefined;
    if (target?.tcp) {
      try {
        return await this.#connectToTarget(io, target, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        this.#settings.logger.info("the named leader is not reachable; rediscovering", {
          error: (err as Error).message,
        });
      }
    }
    const { node } = await this.#discoverOnce(io, this.#settings.maxDiscoverAttempts, signal);
    const transport = await io.transports({ endpoint: node.externalTcp!, signal });
    return { transport, node };
  }

  async #connectToTarget(
    io: { reader: GossipReader; transports: TransportFactory },
    target: LeaderEndpoints,
    signal: AbortSignal,
  ): Promise<Session> {
    const tcp = target.tcp!;
    let node: MemberInfo | undefined;
    if (target.http) {
      try {
        const members = await io.reader.read(target.http, {
          timeoutMs: this.#settings.gossipTimeoutMs,
          signal,
        });
        this.#updateMembers(members);
        node = members.find((m) => sameEndpoint(m.externalTcp, tcp));
      } catch {
        // fall through to a synthesized member
      }
    }
    node ??= synthesizedLeader(tcp, target.http);
    const transport = await io.transports({ endpoint: tcp, signal });
    return { transport, node };
  }

  #giveUp(error: unknown): void {
    this.#session = undefined;
    this.#setStatus("idle");
    const err = error instanceof Error ? error : new ConnectionError(String(error));
    if (!(err instanceof DiscoveryError))
      this.#settings.logger.error("connection given up", { error: err.message });
    for (const w of [...this.#waiters]) w.reject(err);
  }

  /** Stops everything: pending waiters get ClientClosedError, the socket closes, timers clear. */
  /**
   * The first step of closing: requests still waiting for a connection fail with
   * ClientClosedError (they were never sent), discovery and reconnection stop, and no new
   * request is taken; a live connection stays open so requests already sent can settle.
   */
  drain(): void {
    if (this.#draining || this.#status === "closed") return;
    this.#draining = true;
    this.#loopAbort?.abort(new ClientClosedError());
    for (const w of [...this.#waiters]) w.reject(new ClientClosedError());
  }

  async close(): Promise<void> {
    if (this.#status === "closed") return;
    this.#draining = true;
    this.#setStatus("closed");
    this.#loopAbort?.abort(new ClientClosedError());
    for (const w of [...this.#waiters]) w.reject(new ClientClosedError());
    const session = this.#session;
    this.#session = undefined;
    if (session) await session.transport.close("client closed");
    await this.#loop;
    await this.#io?.catch(() => undefined);
    await this.#ownedReader?.close();
    this.emit("closed");
  }
}

function synthesizedLeader(tcp: Endpoint, http: Endpoint | undefined): MemberInfo {
  return Object.freeze({
    instanceId: `unknown@${formatEndpoint(tcp)}`,
    state: "Leader",
    isAlive: true,
    timestamp: "",
    externalTcp: tcp,
    ...(http && { externalHttp: http }),
    lastCommitPosition: 0n,
    writerCheckpoint: 0n,
    chaserCheckpoint: 0n,
    epochNumber: -1,
    epochPosition: 0n,
    epochId: "",
    nodePriority: 0,
    isReadOnlyReplica: false,
  });
}
