import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { discover, type DiscoverOptions } from "../discovery/discover.js";
import { DnsPacketResolver } from "../discovery/dns-packet-resolver.js";
import { uniqueEndpoints, type SeedResolver } from "../discovery/dns.js";
import { HttpGossipReader, parseGossip, type GossipReader } from "../discovery/gossip.js";
import { leaderOf, selectNode } from "../discovery/select-node.js";
import { ConnectionError, DiscoveryError, type DiscoveryCause } from "../errors.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_MAX_BACKOFF_DELAY_MS } from "../settings/defaults.js";
import { sameEndpoint } from "../settings/endpoint.js";
import type { TransportFactory } from "../transport/transport.js";
import { webSocketTransportFactory } from "../transport/ws-transport.js";
import { IN_PROCESS_ENDPOINT, InProcessTransport } from "../transport/in-process-transport.js";
import type { Endpoint, MemberInfo, NodePreference } from "../types.js";
import type { InProcessNode } from "@chorus/protocol";

/** Replaceable I/O, for tests. */
export interface ConnectionDependencies {
  gossipReader?: GossipReader;
  seedResolver?: SeedResolver;
  transportFactory?: TransportFactory;
  connectTimeoutMs?: number;
  /** With partitions: the group this client serves, named in its discovery errors. */
  partition?: string | undefined;
}

/** The I/O a connection discovers and connects through. */
export interface ClusterIo {
  readonly reader: GossipReader;
  readonly resolver: SeedResolver;
  readonly transports: TransportFactory;
}

export interface ClusterViewEvents {
  leaderChanged: [change: { previous?: MemberInfo; current: MemberInfo }];
}

/**
 * What one client knows of its cluster: the user's seeds (never forgotten), the members of
 * the latest gossip kept apart from them, and the leader. Shared by the client's connections
 * (the leader connection and, with another node preference, the one for reads), so a
 * gossip round made by either informs both and a leader change is told once.
 */
export class ClusterView extends EventEmitter<ClusterViewEvents> {
  readonly #settings: ConnectionSettings;
  readonly #deps: ConnectionDependencies;
  #members: MemberInfo[] = [];
  #leader: MemberInfo | undefined;
  #io: Promise<ClusterIo> | undefined;
  #ownedReader: GossipReader | undefined;

  constructor(settings: ConnectionSettings, deps: ConnectionDependencies = {}) {
    super();
    this.#settings = settings;
    this.#deps = deps;
  }

  /** The cluster members of the latest gossip. */
  get members(): readonly MemberInfo[] {
    return this.#members;
  }

  /** The alive leader of the highest epoch in the latest gossip, if any. */
  get leader(): MemberInfo | undefined {
    return leaderOf(this.#members);
  }

  /** Takes a fresh gossip view. */
  update(members: MemberInfo[]): void {
    this.#members = members;
    const leader = leaderOf(members);
    if (leader) this.noteLeader(leader);
  }

  /** A member is known to be the leader (from gossip, or a connection to it). */
  noteLeader(current: MemberInfo): void {
    const previous = this.#leader;
    this.#leader = current;
    if (previous?.instanceId !== current.instanceId) {
      this.emit("leaderChanged", previous ? { previous, current } : { current });
    }
  }

  /**
   * Up to `maxAttempts` gossip rounds over the seeds and the known members, until one
   * yields a member for `preference`. With a single node location, that node is chosen
   * whatever its state (a write sent there learns where the leader is).
   */
  async discover(
    preference: NodePreference,
    maxAttempts: number,
    signal?: AbortSignal,
    onFailedRound?: DiscoverOptions["onFailedRound"],
  ): Promise<{ node: MemberInfo; members: MemberInfo[] }> {
    const s = this.#settings;
    const location = s.location;
    if (location.kind === "inProcess") return this.#inProcessMember(location.node);
    const io = await this.io();
    return discover({
      reader: io.reader,
      candidates: () => this.#candidates(io.resolver, signal),
      select: (members) => {
        if (location.kind === "singleNode") {
          const alive = members.filter((m) => m.isAlive && m.externalTcp);
          return (
            alive.find((m) => sameEndpoint(m.externalHttp, location.endpoint)) ??
            (alive.length === 1 ? alive[0] : selectNode(preference, alive, s.random))
          );
        }
        return selectNode(preference, members, s.random);
      },
      maxAttempts,
      delayMs: s.discoverDelayMs,
      maxDelayMs: DEFAULT_MAX_BACKOFF_DELAY_MS,
      gossipTimeoutMs: s.gossipTimeoutMs,
      random: s.random,
      timers: s.timers,
      logger: s.logger,
      ...(signal && { signal }),
      ...(this.#deps.partition !== undefined && { partition: this.#deps.partition }),
      ...(onFailedRound && { onFailedRound }),
      onMembers: (members) => this.update(members),
    });
  }

  /**
   * A node in this process is its own gossip seed: its view is read with a call. The client
   * keeps to that node whatever its state (like a single node location); the member it
   * connects to goes by IN_PROCESS_ENDPOINT.
   */
  #inProcessMember(node: InProcessNode): { node: MemberInfo; members: MemberInfo[] } {
    let members: MemberInfo[];
    try {
      members = parseGossip(node.gossip());
    } catch (err) {
      throw new DiscoveryError("cannot read the gossip of the in-process node", [
        { seed: `in-process node ${node.instanceId}`, error: err as Error },
      ]);
    }
    this.update(members);
    const self = members.find((m) => m.instanceId === node.instanceId);
    if (self === undefined || !self.isAlive) {
      throw new DiscoveryError(`the in-process node ${node.instanceId} is not serving`, []);
    }
    return { node: Object.freeze({ ...self, externalTcp: IN_PROCESS_ENDPOINT }), members };
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
    } else if (location.kind === "inProcess") {
      return { endpoints: [], failures };
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
    const endpoints = uniqueEndpoints([
      ...seeds,
      ...this.#members.flatMap((m) => (m.externalHttp ? [m.externalHttp] : [])),
    ]);
    return { endpoints, failures };
  }

  /** The gossip reader, DNS resolver and transport factory, set up once (a failed setup is retried). */
  io(): Promise<ClusterIo> {
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
      const sockets =
        this.#deps.transportFactory ??
        webSocketTransportFactory({
          tls,
          credentials: s.defaultCredentials,
          heartbeat: s.heartbeat,
          connectTimeoutMs: this.#deps.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
          timers: s.timers,
          logger: s.logger,
        });
      const location = s.location;
      // The in-process node without a socket; other members (a leader it names) over the network.
      const transports: TransportFactory =
        location.kind === "inProcess"
          ? (connect) =>
              sameEndpoint(connect.endpoint, IN_PROCESS_ENDPOINT)
                ? InProcessTransport.connect(
                    location.node,
                    { credentials: s.defaultCredentials, logger: s.logger },
                    connect,
                  )
                : sockets(connect)
          : sockets;
      return {
        reader,
        resolver: this.#deps.seedResolver ?? new DnsPacketResolver({ random: s.random }),
        transports,
      };
    })();
    this.#io.catch(() => (this.#io = undefined));
    return this.#io;
  }

  /** Releases the gossip reader's sockets. Call once every connection using the view is closed. */
  async close(): Promise<void> {
    await this.#io?.catch(() => undefined);
    await this.#ownedReader?.close();
  }
}
