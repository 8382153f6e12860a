import { EventEmitter } from "node:events";
import { ClusterView } from "./connection/cluster-view.js";
import {
  Connection,
  type ConnectionDependencies,
  type ConnectionStatus,
} from "./connection/connection.js";
import { ClientClosedError, InvalidArgumentError } from "./errors.js";
import { appendToStream, type AppendOptions, type AppendResult } from "./operations/append.js";
import type { OperationContext } from "./operations/context.js";
import { deleteStream, type DeleteResult, type DeleteStreamOptions } from "./operations/delete.js";
import { RetryBudget, UNLIMITED_RETRY_BUDGET } from "./operations/retry-budget.js";
import type { EventData } from "./operations/events.js";
import {
  getStreamMetadata,
  setStreamMetadata,
  type SetStreamMetadataOptions,
  type StreamMetadata,
  type StreamMetadataResult,
} from "./operations/metadata.js";
import {
  readAll,
  readStream,
  type ReadAllOptions,
  type ReadStreamOptions,
} from "./operations/read.js";
import { ConnectionSettings } from "./settings/connection-settings.js";
import {
  subscribeToAll,
  subscribeToStream,
  type SubscribeToAllOptions,
  type SubscribeToStreamOptions,
  type Subscription,
} from "./subscriptions/subscription.js";
import type { MemberInfo, OperationOptions, ResolvedEvent } from "./types.js";
import { PersistentSubscriptions } from "./persistent/index.js";
import type { PersistentSubscription } from "./persistent/subscription.js";
import { ProcessHold } from "./util/process-hold.js";
import { abortReason } from "./util/timers.js";
import { checkOptions } from "./util/options.js";
import { publishLeaderChanged, publishReconnect } from "./diagnostics.js";
import {
  PartitionedClient,
  type PartitionedReadAllOptions,
} from "./partitions/partitioned-client.js";
import { PartitionedPersistentSubscriptions } from "./partitions/persistent.js";
import {
  MergedSubscription,
  type PartitionedSubscribeToAllOptions,
} from "./partitions/merged-subscription.js";

/**
 * With partitions (`withPartitions`), every event names its replication group: the nodes
 * carry `partition`, `disconnected` and `reconnecting` get the group's name as a second
 * argument, and `leaderChanged` changes carry `partition`.
 */
export interface ChorusClientEvents {
  connected: [node: MemberInfo];
  disconnected: [reason: Error, partition?: string];
  reconnecting: [attempt: number, partition?: string];
  leaderChanged: [change: { previous?: MemberInfo; current: MemberInfo; partition?: string }];
  closed: [];
}

const SIGNAL_ONLY: readonly string[] = Object.freeze(["signal"]);

/**
 * @internal replaceable I/O for tests; `partition` names the replication group a client
 * serves inside a partitioned client (the events it creates carry it, and it refuses a node
 * that does not serve that group), `partitions` every group's name.
 */
export type ChorusClientDependencies = ConnectionDependencies & {
  readonly partitions?: readonly string[];
};

/**
 * The Chorus client. Operations connect lazily; `connect()` connects eagerly.
 * `close()` lets in-flight work settle, then closes sockets and clears every timer.
 * Writes go to the leader. With a nodePreference other than "leader", reads and catch-up
 * subscriptions go through a second connection, to a node of that preference; both
 * connections share one view of the cluster, and emit their events through the client.
 *
 * The process stays alive while the client has work pending: an operation not yet
 * settled (retries and backoffs included), a read iterator's pending `next()`, a
 * subscription from its creation until it ends, `close()` until it resolves. An idle
 * client (connected or not) holds nothing, so a script that forgets `close()` still exits.
 */
export class ChorusClient extends EventEmitter<ChorusClientEvents> {
  readonly settings: ConnectionSettings;
  readonly #view: ClusterView;
  /** To the leader. */
  readonly #connection: Connection;
  /** The leader connection itself, or one to a node of the nodePreference. */
  readonly #reads: Connection;
  readonly #ctx: OperationContext;
  /** Operations (and other tracked work) not settled yet; close() waits for them. */
  #pending = 0;
  /** Called when #pending drops to 0 (close() waiting). */
  #idle: (() => void) | undefined;
  readonly #subscriptions = new Set<Subscription | PersistentSubscription>();
  /** Keeps the process alive while work is pending (and only then). */
  readonly #hold = new ProcessHold();
  /** Persistent subscription groups: create, update, delete, list, getInfo, replayParked, subscribe. */
  readonly persistentSubscriptions: PersistentSubscriptions;
  /** With partitions: one client per replication group, which every call goes through. */
  readonly #partitioned: PartitionedClient | undefined;
  #closing: Promise<void> | undefined;

  constructor(settings: ConnectionSettings | string, dependencies: ChorusClientDependencies = {}) {
    super();
    if (typeof settings === "string")
      this.settings = ConnectionSettings.fromConnectionString(settings);
    else if (settings instanceof ConnectionSettings) this.settings = settings;
    else
      throw new InvalidArgumentError(
        "ChorusClient takes ConnectionSettings (from ConnectionSettings.create()...build()) or a connection string",
      );
    const view = new ClusterView(this.settings, dependencies);
    this.#view = view;
    const group =
      dependencies.partition === undefined
        ? undefined
        : { name: dependencies.partition, names: dependencies.partitions ?? [] };
    this.#connection = new Connection(this.settings, {}, { view, preference: "leader", group });
    this.#reads =
      this.settings.nodePreference === "leader"
        ? this.#connection
        : new Connection(this.settings, {}, { view, group });
    this.#ctx = Object.freeze({
      settings: this.settings,
      partition: dependencies.partition,
      connection: this.#connection,
      readConnection: this.#reads,
      retryBudget: new RetryBudget(this.settings.retryBudget ?? UNLIMITED_RETRY_BUDGET, () =>
        this.settings.timers.now(),
      ),
    });
    for (const connection of this.#connections()) {
      connection.on("connected", (node) => this.emit("connected", node));
      connection.on("disconnected", (reason) => this.emit("disconnected", reason));
      connection.on("reconnecting", (attempt) => {
        publishReconnect(attempt);
        this.emit("reconnecting", attempt);
      });
    }
    view.on("leaderChanged", (change) => {
      publishLeaderChanged(change);
      this.emit("leaderChanged", change);
    });
    const partitions = this.settings.partitions;
    this.#partitioned = partitions
      ? new PartitionedClient(
          partitions,
          (group, partition) =>
            new ChorusClient(group, {
              ...dependencies,
              partition,
              partitions: Object.keys(partitions),
            }),
          {
            connected: (node) => this.emit("connected", node),
            disconnected: (reason, partition) => this.emit("disconnected", reason, partition),
            reconnecting: (attempt, partition) => this.emit("reconnecting", attempt, partition),
            leaderChanged: (change) => this.emit("leaderChanged", change),
          },
        )
      : undefined;
    this.persistentSubscriptions = this.#partitioned
      ? new PartitionedPersistentSubscriptions(this.#ctx, this.#partitioned)
      : new PersistentSubscriptions(
          this.#ctx,
          (fn) => this.#run(fn),
          (make) => {
            this.#checkOpen();
            return this.#trackSubscription(make());
          },
        );
  }

  /**
   * idle | connecting | connected | reconnecting | closed: of the connection to the leader.
   * With partitions: "reconnecting" or "connecting" while any group is, else "connected"
   * when a group is (groups connect when first used; `connect()` connects them all).
   */
  get status(): ConnectionStatus {
    if (this.#partitioned) return this.#closing ? "closed" : this.#partitioned.status;
    return this.#connection.status;
  }

  /** The node writes go to (the leader), if connected. Undefined with partitions (see clusterMembers()). */
  get node(): MemberInfo | undefined {
    return this.#partitioned ? undefined : this.#connection.node;
  }

  /** The node reads go to, if connected: a node of the nodePreference (or the leader). Undefined with partitions. */
  get readNode(): MemberInfo | undefined {
    return this.#partitioned ? undefined : this.#reads.node;
  }

  /**
   * Connects now (operations also connect lazily): to the leader and, with another node
   * preference, to a node of that preference too. Resolves with the leader's node.
   */
  async connect(options: { signal?: AbortSignal } = {}): Promise<MemberInfo> {
    checkOptions("connect", options, SIGNAL_ONLY);
    this.#checkOpen();
    if (this.#partitioned) {
      // Every group; resolves with the first group's leader (each carries `partition`).
      const [first] = await this.#track(this.#partitioned.connect(options.signal));
      return first!;
    }
    const [leader] = await this.#track(
      Promise.all(this.#connections().map((c) => c.connect(options.signal))),
    );
    return leader!;
  }

  /** The cluster's members from a fresh gossip round (the latest known ones if that fails and some are known). */
  async clusterMembers(options: { signal?: AbortSignal } = {}): Promise<MemberInfo[]> {
    checkOptions("clusterMembers", options, SIGNAL_ONLY);
    this.#checkOpen();
    if (this.#partitioned) return this.#track(this.#partitioned.clusterMembers(options.signal));
    try {
      return await this.#track(this.#connection.refreshMembers(options.signal));
    } catch (err) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      const known = this.#connection.members;
      if (known.length > 0) return [...known];
      throw err;
    }
  }

  appendToStream(
    streamId: string,
    events: EventData | readonly EventData[],
    options?: AppendOptions,
  ): Promise<AppendResult> {
    const p = this.#partitioned;
    if (p) return p.clientOf(streamId).appendToStream(streamId, events, options);
    return this.#run(() => appendToStream(this.#ctx, streamId, events, options));
  }

  /** An AsyncIterable over the stream's events (iterate it once). */
  readStream(streamId: string, options?: ReadStreamOptions): AsyncIterable<ResolvedEvent> {
    this.#checkOpen();
    const p = this.#partitioned;
    if (p) return p.clientOf(streamId).readStream(streamId, options);
    return this.#trackIterable(readStream(this.#ctx, streamId, options));
  }

  /**
   * An AsyncIterable over $all (iterate it once). With partitions: every group's $all,
   * merged; each event carries `partition`, and `fromPosition` may give each group's
   * position (`{ east: 120n, west: 64n }`).
   */
  readAll(options?: ReadAllOptions | PartitionedReadAllOptions): AsyncIterable<ResolvedEvent> {
    this.#checkOpen();
    const p = this.#partitioned;
    if (p) return this.#trackIterable(p.readAll(options));
    if (options?.fromPosition !== undefined && typeof options.fromPosition === "object") {
      throw new InvalidArgumentError(
        "readAll: fromPosition as an object of partition positions needs a partitioned client (withPartitions)",
      );
    }
    return this.#trackIterable(readAll(this.#ctx, options as ReadAllOptions | undefined));
  }

  deleteStream(streamId: string, options?: DeleteStreamOptions): Promise<DeleteResult> {
    const p = this.#partitioned;
    if (p) return p.clientOf(streamId).deleteStream(streamId, options);
    return this.#run(() => deleteStream(this.#ctx, streamId, options));
  }

  setStreamMetadata(
    streamId: string,
    metadata: StreamMetadata,
    options?: SetStreamMetadataOptions,
  ): Promise<AppendResult> {
    const p = this.#partitioned;
    if (p) return p.clientOf(streamId).setStreamMetadata(streamId, metadata, options);
    return this.#run(() => setStreamMetadata(this.#ctx, streamId, metadata, options));
  }

  getStreamMetadata(streamId: string, options?: OperationOptions): Promise<StreamMetadataResult> {
    const p = this.#partitioned;
    if (p) return p.clientOf(streamId).getStreamMetadata(streamId, options);
    return this.#run(() => getStreamMetadata(this.#ctx, streamId, options));
  }

  subscribeToStream(streamId: string, options?: SubscribeToStreamOptions): Subscription {
    this.#checkOpen();
    const p = this.#partitioned;
    if (p) return p.clientOf(streamId).subscribeToStream(streamId, options);
    return this.#trackSubscription(subscribeToStream(this.#ctx, streamId, options));
  }

  /**
   * Catch-up, then live, over $all. With partitions: one subscription per group, merged (a
   * `MergedSubscription`: order holds within a group; each event carries `partition`; the
   * "checkpoint" event and `positions` give every group's position, and `fromPosition`
   * takes such an object to resume).
   */
  subscribeToAll(options?: SubscribeToAllOptions | PartitionedSubscribeToAllOptions): Subscription {
    this.#checkOpen();
    const p = this.#partitioned;
    if (p) {
      const merged = new MergedSubscription(
        p.names.map((name) => ({ name, client: p.client(name) })),
        options,
      );
      // The same surface as a Subscription (iteration, unsubscribe, finished, events), with
      // per-group positions: see MergedSubscription.
      return this.#trackSubscription(merged as unknown as Subscription);
    }
    if (options?.fromPosition !== undefined && typeof options.fromPosition === "object") {
      throw new InvalidArgumentError(
        "subscribeToAll: fromPosition as an object of partition positions needs a partitioned client (withPartitions)",
      );
    }
    return this.#trackSubscription(
      subscribeToAll(this.#ctx, options as SubscribeToAllOptions | undefined),
    );
  }

  /**
   * Stops taking work, lets in-flight operations settle (each within its own deadline),
   * ends subscriptions, then closes the socket and clears every timer. Idempotent. The
   * process is held until it resolves; after that the client holds nothing.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#hold.acquire();
      try {
        // Requests that are still waiting for a node fail now; sent ones settle below
        // (each within its operation timeout).
        for (const connection of this.#connections()) connection.drain();
        await this.#partitioned?.close();
        await Promise.allSettled([...this.#subscriptions].map((s) => s.unsubscribe()));
        await this.#settled();
        await Promise.all(this.#connections().map((c) => c.close()));
        await this.#view.close();
      } finally {
        this.#hold.dispose();
      }
      this.emit("closed");
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** The leader connection, then the reads one when it is another. */
  #connections(): Connection[] {
    return this.#reads === this.#connection ? [this.#connection] : [this.#connection, this.#reads];
  }

  #checkOpen(): void {
    if (this.#closing) throw new ClientClosedError();
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new ClientClosedError());
    // Not an async wrapper (that would add turns of the microtask queue to every operation):
    // a synchronous throw (validation) becomes a rejection here.
    let p: Promise<T>;
    try {
      p = fn();
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rethrown as it came
      p = Promise.reject(err);
    }
    return this.#track(p);
  }

  /** Counts `p` as in-flight work (close() waits for it) that holds the process until it settles. */
  #track<T>(p: Promise<T>): Promise<T> {
    this.#hold.claim();
    this.#pending++;
    // One reaction per operation, with a handler shared by all (not a promise and a set entry).
    p.then(this.#onSettled, this.#onSettled);
    return p;
  }

  readonly #onSettled = (): void => {
    this.#hold.unclaim();
    if (--this.#pending === 0) this.#idle?.();
  };

  /** Resolves once no tracked work is pending. */
  #settled(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const previous = this.#idle;
      this.#idle = () => {
        this.#idle = previous;
        previous?.();
        resolve();
      };
    });
  }

  #trackIterable(iterable: AsyncIterable<ResolvedEvent>): AsyncIterable<ResolvedEvent> {
    return {
      [Symbol.asyncIterator]: () => {
        const it = iterable[Symbol.asyncIterator]();
        return {
          next: () =>
            this.#closing ? Promise.reject(new ClientClosedError()) : this.#track(it.next()),
          return: async () => (it.return ? it.return() : { done: true as const, value: undefined }),
        };
      },
    };
  }

  /** A subscription is pending work from its start until it ends: it holds the process meanwhile. */
  #trackSubscription<S extends Subscription | PersistentSubscription>(sub: S): S {
    const release = this.#hold.acquire();
    this.#subscriptions.add(sub);
    const ended = () => {
      this.#subscriptions.delete(sub);
      release();
    };
    void sub.finished.then(ended, ended);
    return sub;
  }
}
