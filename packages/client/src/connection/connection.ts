import { EventEmitter } from "node:events";
import {
  ClientClosedError,
  ConnectionError,
  DiscoveryError,
  InvalidArgumentError,
  NotAuthenticatedError,
  TimeoutError,
  type LeaderEndpoints,
} from "../errors.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";
import { DEFAULT_MAX_BACKOFF_DELAY_MS } from "../settings/defaults.js";
import { formatEndpoint, sameEndpoint } from "../settings/endpoint.js";
import type { NodePartition, Transport } from "../transport/transport.js";
import type { Endpoint, MemberInfo, NodePreference, TimerHandle, Timers } from "../types.js";
import { sendRequest } from "../operations/request.js";
import { abortReason, sleep, type Abortable } from "../util/timers.js";
import { isPreferred, isServing } from "../discovery/select-node.js";
import { backoffDelayMs } from "./backoff.js";
import { ClusterView, type ClusterIo, type ConnectionDependencies } from "./cluster-view.js";

export type { ConnectionDependencies } from "./cluster-view.js";

/** How often a connection asks its node whether it still serves, in ms. */
const SERVING_CHECK_INTERVAL_MS = 2_000;
/** How long after a node was seen not serving it is asked again before moving, in ms. */
const CONFIRM_MS = 1_000;

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

interface Waiter {
  resolve(session: Session): void;
  reject(error: Error): void;
}

export interface ConnectionOptions {
  /** Which member to connect to. Default: the settings' nodePreference. */
  preference?: NodePreference;
  /**
   * What the client knows of the cluster, shared with its other connections (the
   * dependencies then belong to the view). Default: a view of this connection's own.
   */
  view?: ClusterView;
  /**
   * With partitions: the group this connection's client serves (its name under
   * `withPartitions`, and every group's name). A node that does not serve that group is
   * refused (`groupRefusal`).
   */
  group?: NodePartition | undefined;
}

/**
 * The connection state machine: discover -> connect -> connected -> (lost) -> reconnecting
 * -> rediscover, to a member chosen by its node preference. The only module that calls both
 * discovery and transport; the member pool (seeds kept apart from gossiped members and
 * never forgotten) is the ClusterView it shares with the client's other connection.
 * Requests wait for a session in a queue with a deadline while no node is connected.
 */
export class Connection extends EventEmitter<ConnectionEvents> {
  readonly #settings: ConnectionSettings;
  readonly #view: ClusterView;
  readonly #ownsView: boolean;
  readonly #preference: NodePreference;
  readonly #group: NodePartition | undefined;
  /** Why the latest attempt to connect failed; undefined once connected. */
  #lastFailure: Error | undefined;
  #status: ConnectionStatus = "idle";
  #session: Session | undefined;
  #waiters = new Set<Waiter>();
  #loop: Promise<void> | undefined;
  #loopAbort: AbortController | undefined;
  #draining = false;
  /** Where to go next instead of discovering (a NOT_LEADER reply named the leader). */
  #target: LeaderEndpoints | undefined;
  /** Reconnect at once (no backoff) after this disconnection. */
  #skipDelay = false;

  constructor(
    settings: ConnectionSettings,
    deps: ConnectionDependencies = {},
    options: ConnectionOptions = {},
  ) {
    super();
    this.#settings = settings;
    this.#preference = options.preference ?? settings.nodePreference;
    this.#group = options.group;
    this.#ownsView = options.view === undefined;
    this.#view = options.view ?? new ClusterView(settings, deps);
    if (this.#ownsView)
      this.#view.on("leaderChanged", (change) => this.emit("leaderChanged", change));
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
    return this.#view.members;
  }

  /** The current session when connected; undefined otherwise. Does not start connecting. */
  get currentSession(): Session | undefined {
    return this.#session?.transport.isOpen ? this.#session : undefined;
  }

  /**
   * Why the latest attempt to connect failed, while no connection has come since (undefined
   * when connected, or before any attempt failed): what an operation waiting for a connection
   * names when its deadline passes.
   */
  get lastFailure(): Error | undefined {
    return this.#session === undefined ? this.#lastFailure : undefined;
  }

  /**
   * What `session()` would resolve with at once, synchronously: the live session, when the
   * connection takes work (not closed or draining); otherwise undefined (then `session()`
   * waits, or rejects with the reason). Saves operations an await on the common path.
   */
  liveSession(): Session | undefined {
    if (this.#status === "closed" || this.#draining) return undefined;
    return this.currentSession;
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
      const known = this.#view.leader;
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
    const { members } = await this.#view.discover(this.#preference, 1, signal);
    return members;
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
        this.#checkGroup(session);
      } catch (err) {
        if (signal.aborted) return;
        this.#lastFailure = err instanceof Error ? err : new ConnectionError(String(err));
        s.logger.warn("connection attempt failed", { attempt, error: (err as Error).message });
        if (!connectedOnce) {
          this.#giveUp(err);
          return;
        }
        // Neither goes away by trying again: fail what waits (a later call tries afresh).
        if (err instanceof NotAuthenticatedError || err instanceof InvalidArgumentError) {
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
      this.#lastFailure = undefined;
      this.#session = session;
      this.#setStatus("connected");
      s.logger.info("connected", {
        node: formatEndpoint(session.transport.endpoint),
        state: session.node.state,
      });
      if (session.node.state === "Leader") this.#view.noteLeader(session.node);
      this.emit("connected", session.node);
      for (const w of [...this.#waiters]) w.resolve(session);
      const stopWatching = this.#watchNode(session, signal);
      const reason = await session.transport.closed;
      stopWatching();
      this.#session = undefined;
      if (signal.aborted) return;
      s.logger.info("disconnected", {
        node: formatEndpoint(session.transport.endpoint),
        reason: reason.message,
      });
      this.emit("disconnected", reason);
    }
  }

  /**
   * Keeps a cluster connection on a node that serves it. Returns the function that stops the
   * watch.
   * - A connection that had to settle for a fallback (preference "follower" while every other
   *   node was still catching up, say) asks for gossip now and then, with a backoff from
   *   discoverDelay, and moves once a node of its preference can serve.
   * - A connection on a node of its preference asks that node for its state every
   *   SERVING_CHECK_INTERVAL_MS, with a ping on the connection itself (no second
   *   connection to each node, no HTTP request: a node with many clients answers a ping for
   *   far less than a gossip request). A node cut off from the rest of the cluster, while this
   *   client still reaches it, stops serving (a leader steps down, a replica loses its
   *   leader) but keeps the connection, and a subscription on it would wait there until the
   *   cut heals. Seen so twice, CONFIRM_MS apart (a follower is briefly without a leader
   *   during any election), the connection moves to a node that serves, if there is one.
   */
  #watchNode(session: Session, signal: AbortSignal): () => void {
    const s = this.#settings;
    if (s.location.kind === "singleNode" || s.location.kind === "inProcess") return () => undefined;
    const preference = this.#preference;
    // By id, or by endpoint for a leader known only from a NOT_LEADER answer.
    const isSelf = (m: MemberInfo) =>
      m.instanceId === session.node.instanceId ||
      sameEndpoint(m.externalTcp, session.transport.endpoint);
    let stopped = false;
    let timer: TimerHandle | undefined;
    let backoffs = 0;
    let strikes = 0;
    const schedule = (ms: number) => {
      if (!stopped) timer = s.timers.setTimeout(() => void check(), ms);
    };
    const backoff = () =>
      schedule(
        backoffDelayMs(++backoffs, s.discoverDelayMs, DEFAULT_MAX_BACKOFF_DELAY_MS, s.random),
      );
    const move = (to: MemberInfo, why: string) => {
      s.logger.info(why, {
        preference,
        from: `${session.node.state} ${formatEndpoint(session.transport.endpoint)}`,
        to: `${to.state} ${to.externalTcp ? formatEndpoint(to.externalTcp) : "?"}`,
      });
      this.#skipDelay = true;
      void session.transport.close(`moving to a ${to.state} (${why})`);
    };
    const check = async () => {
      timer = undefined;
      try {
        if (isPreferred(preference, session.node)) {
          const state = await pingState(session, s.timers, s.gossipTimeoutMs, signal);
          if (stopped) return;
          if (isPreferred(preference, { ...session.node, state })) {
            strikes = 0;
            return schedule(SERVING_CHECK_INTERVAL_MS);
          }
          if (++strikes < 2) return schedule(CONFIRM_MS);
        }
        const { node, members } = await this.#view.discover(preference, 1, signal);
        if (stopped) return;
        if (!isSelf(node)) {
          if (isPreferred(preference, node))
            return move(node, "moving to a node of the preference");
          const current = members.find(isSelf);
          if (current === undefined || !current.isAlive || !isServing(current))
            return move(node, "the node no longer serves");
        }
      } catch {
        // no gossip this time (the connection's own deadline and heartbeats watch the node):
        // ask again later
      }
      backoff();
    };
    if (isPreferred(preference, session.node)) schedule(SERVING_CHECK_INTERVAL_MS);
    else backoff();
    return () => {
      stopped = true;
      if (timer !== undefined) s.timers.clearTimeout(timer);
    };
  }

  /**
   * With partitions, refuses (closes, and throws InvalidArgumentError for) a node that does
   * not serve this connection's group: routed there, another group's streams (or, on a node
   * of no partitioned deployment, every stream) would be written to the wrong group. A node
   * of the right group whose list of groups differs is used, with a warning: while a group
   * is being added, streams the lists place differently are refused one by one
   * (WrongPartitionError), the others go on.
   */
  #checkGroup(session: Session): void {
    const group = this.#group;
    if (group === undefined) return;
    const transport = session.transport;
    const refusal = groupRefusal(group, transport);
    if (refusal !== undefined) {
      transport.destroy();
      throw new InvalidArgumentError(refusal);
    }
    const served = transport.partition!.names;
    if (served.length !== group.names.length || served.some((n) => !group.names.includes(n))) {
      this.#settings.logger.warn(
        "the node lists other partitions than this client: streams the two lists place in different groups are refused (WrongPartitionError)",
        {
          node: formatEndpoint(transport.endpoint),
          partition: group.name,
          nodePartitions: served.join(","),
          clientPartitions: group.names.join(","),
        },
      );
    }
  }

  /** Discovery (or the NOT_LEADER target), then the WebSocket. */
  async #establish(signal: AbortSignal): Promise<Session> {
    const io = await this.#view.io();
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
    const max = this.#settings.maxDiscoverAttempts;
    const { node } = await this.#view.discover(this.#preference, max, signal, (attempt, causes) => {
      // Discovery goes on; an operation whose deadline passes meanwhile names this.
      this.#lastFailure = new DiscoveryError(
        `no node found in ${attempt} of ${max} discovery attempt(s) so far`,
        causes,
      );
    });
    const transport = await io.transports({ endpoint: node.externalTcp!, signal });
    return { transport, node };
  }

  async #connectToTarget(
    io: ClusterIo,
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
        this.#view.update(members);
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
    if (this.#ownsView) await this.#view.close();
    this.emit("closed");
  }
}

/**
 * The node's state (Leader, Follower, ...) from a ping on the session's connection; rejects
 * after `timeoutMs`, when `signal` aborts, or when the connection ends first.
 */
async function pingState(
  session: Session,
  timers: Timers,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<string> {
  if (signal.aborted) throw abortReason(signal);
  const deadline = new AbortController();
  const timer = timers.setTimeout(
    () => deadline.abort(new TimeoutError(`no answer to a ping within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const stop = () => deadline.abort(abortReason(signal));
  signal.addEventListener("abort", stop, { once: true });
  try {
    return await sendRequest(session, { ping: {} }, { signal: deadline.signal }, (reply) => {
      const state = reply.pong?.state;
      if (typeof state !== "string" || state === "")
        throw new ConnectionError("the node answered a ping without its state");
      return state;
    });
  } finally {
    timers.clearTimeout(timer);
    signal.removeEventListener("abort", stop);
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

/**
 * Why a partitioned client's connection for `group` must not use the node behind
 * `transport`, or undefined when the node serves that group.
 */
export function groupRefusal(
  group: NodePartition,
  transport: Pick<Transport, "endpoint" | "partition">,
): string | undefined {
  const node = formatEndpoint(transport.endpoint);
  const served = transport.partition;
  if (served === undefined) {
    return `withPartitions lists ${node} under partition ${group.name}, but that node serves no partitioned deployment (it was started without --partition) and would take streams of every partition: start the partition's nodes with --partition ${group.name} --partitions ${group.names.join(",")}, or list ${group.name}'s nodes under it`;
  }
  if (served.name !== group.name) {
    return `withPartitions lists ${node} under partition ${group.name}, but that node serves partition ${served.name} (--partition ${served.name}): list ${group.name}'s nodes under ${group.name}`;
  }
  return undefined;
}
