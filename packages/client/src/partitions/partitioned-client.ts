/**
 * Partitioned deployments: one ChorusClient over several replication groups.
 *
 * A `PartitionedClient` holds one ordinary (unpartitioned) client per group, each with its
 * own discovery, connections, leader tracking and failover, so a leader change in one group
 * never stalls another. Stream operations go to the group `partitionOf` names; `$all`
 * reads merge every group. ChorusClient creates it when the settings carry partitions and
 * hands it every call; a client of one group never creates it (no extra hop).
 */
import { partitionOf } from "@chorus/protocol";
import type { ChorusClient } from "../client.js";
import type { ConnectionStatus } from "../connection/connection.js";
import { InvalidArgumentError } from "../errors.js";
import type { ReadAllOptions } from "../operations/read.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";
import type { MemberInfo, ResolvedEvent } from "../types.js";
import { abortReason } from "../util/timers.js";
import { startsOf } from "./merged-subscription.js";

/**
 * A merged read's resume point: for every group, the `position` of the last event read from
 * it (the read goes on after it), or "start" for a group nothing was read from yet.
 */
export type PartitionPositions = Readonly<Record<string, bigint | "start">>;

/** readAll options of a partitioned client: `fromPosition` may give each group's position. */
export type PartitionedReadAllOptions = Omit<ReadAllOptions, "fromPosition"> & {
  fromPosition?: ReadAllOptions["fromPosition"] | PartitionPositions;
};

/** What the partitioned layer tells ChorusClient to emit, each tagged with its group. */
export interface PartitionEventSink {
  connected(node: MemberInfo): void;
  disconnected(reason: Error, partition: string): void;
  reconnecting(attempt: number, partition: string): void;
  leaderChanged(change: { previous?: MemberInfo; current: MemberInfo; partition: string }): void;
}

/** A member as one group's client reports it, tagged with the group's name. */
export function tagMember(member: MemberInfo, partition: string): MemberInfo {
  return { ...member, partition };
}

/**
 * Stream ids whose owner is remembered (a hash over every group name per call costs about
 * 0.25 µs for a short id, more for a long one; a lookup here a few ns). Cleared when full:
 * an application's working set of streams refills it, a scan over many streams costs one
 * hash per call as without it.
 */
const OWNER_CACHE_SIZE = 8192;
/** Longer ids are hashed each time (the cache holds at most OWNER_CACHE_SIZE × this). */
const OWNER_CACHE_MAX_ID = 256;

export class PartitionedClient {
  /** The group names, in the order the settings list them. */
  readonly names: readonly string[];
  readonly #clients: ReadonlyMap<string, ChorusClient>;
  readonly #owners = new Map<string, ChorusClient>();

  constructor(
    partitions: Readonly<Record<string, ConnectionSettings>>,
    /** A plain client of one group, whose events carry the group's name. */
    makeClient: (settings: ConnectionSettings, partition: string) => ChorusClient,
    sink: PartitionEventSink,
  ) {
    this.names = Object.freeze(Object.keys(partitions));
    const clients = new Map<string, ChorusClient>();
    for (const name of this.names) {
      const client = makeClient(partitions[name]!, name);
      client.on("connected", (node) => sink.connected(tagMember(node, name)));
      client.on("disconnected", (reason) => sink.disconnected(reason, name));
      client.on("reconnecting", (attempt) => sink.reconnecting(attempt, name));
      client.on("leaderChanged", ({ previous, current }) =>
        sink.leaderChanged({
          ...(previous && { previous: tagMember(previous, name) }),
          current: tagMember(current, name),
          partition: name,
        }),
      );
      clients.set(name, client);
    }
    this.#clients = clients;
  }

  /** The group that owns `streamId`. A stream id that is not a string goes to the first group, which refuses it. */
  ownerOf(streamId: string): string {
    return typeof streamId === "string" ? partitionOf(streamId, this.names) : this.names[0]!;
  }

  /** The client of the group that owns `streamId`. */
  clientOf(streamId: string): ChorusClient {
    let client = this.#owners.get(streamId);
    if (client === undefined) {
      client = this.#clients.get(this.ownerOf(streamId))!;
      if (typeof streamId === "string" && streamId.length <= OWNER_CACHE_MAX_ID) {
        if (this.#owners.size >= OWNER_CACHE_SIZE) this.#owners.clear();
        this.#owners.set(streamId, client);
      }
    }
    return client;
  }

  /** The client of group `name`. */
  client(name: string): ChorusClient {
    const client = this.#clients.get(name);
    if (client === undefined) {
      throw new InvalidArgumentError(
        `no partition named ${JSON.stringify(name)} (the partitions are ${this.names.join(", ")})`,
      );
    }
    return client;
  }

  /** Every group's client, in the settings' order. */
  clients(): ChorusClient[] {
    return this.names.map((name) => this.#clients.get(name)!);
  }

  /**
   * One status for all groups (each connects lazily, when first used): "reconnecting" while
   * any group reconnects, else "connecting" while any connects, else "connected" when some
   * group is (the others idle), "closed" once all are closed, else "idle".
   */
  get status(): ConnectionStatus {
    const all = this.clients().map((c) => c.status);
    if (all.every((s) => s === "closed")) return "closed";
    for (const s of ["reconnecting", "connecting", "connected"] as const)
      if (all.includes(s)) return s;
    return "idle";
  }

  /** Connects every group; resolves with each group's leader, tagged, in the settings' order. */
  async connect(signal: AbortSignal | undefined): Promise<MemberInfo[]> {
    return Promise.all(
      this.names.map(async (name) =>
        tagMember(await this.#clients.get(name)!.connect(signal ? { signal } : {}), name),
      ),
    );
  }

  /** Every group's members, each with `partition` set. */
  async clusterMembers(signal: AbortSignal | undefined): Promise<MemberInfo[]> {
    const lists = await Promise.all(
      this.names.map(async (name) =>
        (await this.#clients.get(name)!.clusterMembers(signal ? { signal } : {})).map((m) =>
          tagMember(m, name),
        ),
      ),
    );
    return lists.flat();
  }

  /**
   * `$all` of every group, merged: within a group in log order; across groups by the
   * events' creation time (ties: the settings' order of the groups). Each event carries
   * `partition`; its `position` is its group's. `maxCount` bounds the merged total;
   * `fromPosition` is "start", "end", or a `PartitionPositions` object
   * (`{ east: 120n, west: "start" }`): each group goes on after its position.
   */
  readAll(options: PartitionedReadAllOptions = {}): AsyncIterable<ResolvedEvent> {
    const { fromPosition, maxCount, ...rest } = options;
    // No fromPosition: each group's default ("start" forwards, "end" backwards).
    const perGroup =
      fromPosition === undefined
        ? new Map<string, "start" | "end" | bigint>()
        : startsOf(this.names, fromPosition, "readAll");
    const limit = maxCount === undefined ? Infinity : Number(maxCount);
    const forwards = (options.direction ?? "forwards") === "forwards";
    const sources = this.names.map((name) => {
      const from = perGroup.get(name);
      // Forwards, a read includes its start; a resume point is the last event read, left out.
      const skip = forwards && typeof from === "bigint" ? from : undefined;
      return {
        name,
        skip,
        iterable: this.#clients.get(name)!.readAll({
          ...rest,
          ...(maxCount !== undefined && {
            maxCount: skip === undefined ? maxCount : Number(maxCount) + 1,
          }),
          ...(from !== undefined && { fromPosition: from }),
        }),
      };
    });
    return {
      [Symbol.asyncIterator]: () => mergeByCreated(sources, forwards, limit, options.signal),
    };
  }

  /** Closes every group's client. */
  async close(): Promise<void> {
    await Promise.all(this.clients().map((c) => c.close()));
  }
}

interface Source {
  readonly name: string;
  /** Leave out the group's first event when it is at this position (a resume point). */
  readonly skip: bigint | undefined;
  readonly iterable: AsyncIterable<ResolvedEvent>;
}

/** A k-way merge of the groups' reads: one event buffered per group. */
function mergeByCreated(
  sources: readonly Source[],
  forwards: boolean,
  limit: number,
  signal: AbortSignal | undefined,
): AsyncIterator<ResolvedEvent> {
  const iterators = sources.map((s) => s.iterable[Symbol.asyncIterator]());
  /** The next event of each group; null once the group is done; undefined: not read yet. */
  const heads: (ResolvedEvent | null | undefined)[] = sources.map(() => undefined);
  const skipped = sources.map(() => false);
  let delivered = 0;
  let finished = false;

  const closeAll = async (): Promise<void> => {
    finished = true;
    await Promise.allSettled(
      iterators.map(async (it, i) => {
        if (heads[i] !== null) await it.return?.();
      }),
    );
  };

  return {
    next: async (): Promise<IteratorResult<ResolvedEvent>> => {
      if (finished) return { done: true, value: undefined };
      if (delivered >= limit) {
        await closeAll();
        return { done: true, value: undefined };
      }
      if (signal?.aborted) {
        await closeAll();
        throw abortReason(signal);
      }
      try {
        await Promise.all(
          heads.map(async (head, i) => {
            if (head !== undefined) return;
            let r = await iterators[i]!.next();
            if (!r.done && !skipped[i] && r.value.event.position === sources[i]!.skip)
              r = await iterators[i]!.next();
            skipped[i] = true;
            heads[i] = r.done ? null : r.value;
          }),
        );
      } catch (err) {
        await closeAll();
        throw err;
      }
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const head = heads[i];
        if (!head) continue;
        if (best < 0) {
          best = i;
          continue;
        }
        const a = head.event.created.getTime();
        const b = heads[best]!.event.created.getTime();
        if (forwards ? a < b : a > b) best = i;
      }
      if (best < 0) {
        await closeAll();
        return { done: true, value: undefined };
      }
      const value = heads[best]!;
      heads[best] = undefined;
      delivered++;
      return { done: false, value };
    },
    return: async (): Promise<IteratorResult<ResolvedEvent>> => {
      await closeAll();
      return { done: true, value: undefined };
    },
  };
}
