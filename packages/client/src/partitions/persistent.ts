/**
 * `client.persistentSubscriptions` of a partitioned client: a group on a stream lives in
 * the stream's partition; a group on `$all` is created, updated, deleted and replayed on
 * every partition, and consumed from all of them at once (MergedPersistentSubscription).
 */
import type { OperationContext } from "../operations/context.js";
import { InvalidArgumentError } from "../errors.js";
import { PersistentSubscriptions } from "../persistent/index.js";
import type {
  PersistentSubscriptionInfo,
  PersistentSubscriptionSettings,
  ReplayParkedOptions,
} from "../persistent/management.js";
import type {
  PersistentSubscribeOptions,
  PersistentSubscription,
} from "../persistent/subscription.js";
import type { OperationOptions } from "../types.js";
import { MergedPersistentSubscription } from "./merged-persistent.js";
import type { PartitionedClient } from "./partitioned-client.js";

/**
 * `getInfo("$all", group)` of a partitioned client: the group in every partition under
 * `partitions`, and at the top the sums (in flight, parked, rates, totals), every partition's
 * consumers, "Live" when some partition's group is, the first partition's settings, and no
 * `lastCheckpoint` (a position means nothing across partitions: see each partition's).
 */
export interface PartitionedPersistentSubscriptionInfo extends PersistentSubscriptionInfo {
  readonly partitions: Readonly<Record<string, PersistentSubscriptionInfo>>;
}

function mergeInfos(
  streamId: string,
  group: string,
  names: readonly string[],
  infos: readonly PersistentSubscriptionInfo[],
): PartitionedPersistentSubscriptionInfo {
  const sum = (pick: (i: PersistentSubscriptionInfo) => number) =>
    infos.reduce((total, i) => total + pick(i), 0);
  const partitions: Record<string, PersistentSubscriptionInfo> = {};
  names.forEach((name, i) => (partitions[name] = infos[i]!));
  return {
    streamId,
    group,
    settings: infos[0]!.settings,
    status: infos.some((i) => i.status === "Live") ? "Live" : infos[0]!.status,
    consumers: infos.flatMap((i) => i.consumers),
    inFlight: sum((i) => i.inFlight),
    parkedCount: sum((i) => i.parkedCount),
    lastCheckpoint: undefined,
    deliveryRate: sum((i) => i.deliveryRate),
    ackRate: sum((i) => i.ackRate),
    totalDelivered: sum((i) => i.totalDelivered),
    totalAcked: sum((i) => i.totalAcked),
    totalParked: sum((i) => i.totalParked),
    partitions,
  };
}

function notAcrossPartitions(what: string): InvalidArgumentError {
  return new InvalidArgumentError(
    `${what} is not available on a partitioned client yet; use a client of one partition`,
  );
}

/** Runs `fn` on every partition; the first failure (in the settings' order) after all settle. */
async function onEvery<T>(
  partitioned: PartitionedClient,
  fn: (ps: PersistentSubscriptions) => Promise<T>,
): Promise<T[]> {
  const results = await Promise.allSettled(
    partitioned.clients().map((c) => fn(c.persistentSubscriptions)),
  );
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

export class PartitionedPersistentSubscriptions extends PersistentSubscriptions {
  readonly #partitioned: PartitionedClient;

  /** @internal created by ChorusClient. Anything not routed here is refused, never sent to one group. */
  constructor(ctx: OperationContext, partitioned: PartitionedClient) {
    super(
      ctx,
      () => Promise.reject(notAcrossPartitions("this persistent subscription operation")),
      () => {
        throw notAcrossPartitions("this persistent subscription operation");
      },
    );
    this.#partitioned = partitioned;
  }

  #owner(streamId: string): PersistentSubscriptions {
    return this.#partitioned.clientOf(streamId).persistentSubscriptions;
  }

  override async create(
    streamId: string,
    group: string,
    settings?: Partial<PersistentSubscriptionSettings>,
    options?: OperationOptions,
  ): Promise<void> {
    if (streamId === "$all") {
      await onEvery(this.#partitioned, (ps) => ps.create(streamId, group, settings, options));
      return;
    }
    return this.#owner(streamId).create(streamId, group, settings, options);
  }

  override async update(
    streamId: string,
    group: string,
    settings: Partial<PersistentSubscriptionSettings>,
    options?: OperationOptions,
  ): Promise<void> {
    if (streamId === "$all") {
      await onEvery(this.#partitioned, (ps) => ps.update(streamId, group, settings, options));
      return;
    }
    return this.#owner(streamId).update(streamId, group, settings, options);
  }

  override async delete(
    streamId: string,
    group: string,
    options?: OperationOptions,
  ): Promise<void> {
    if (streamId === "$all") {
      await onEvery(this.#partitioned, (ps) => ps.delete(streamId, group, options));
      return;
    }
    return this.#owner(streamId).delete(streamId, group, options);
  }

  /** Every partition's groups (or those of `$all` on every partition, or one stream's). */
  override async list(
    streamId?: string,
    options?: OperationOptions,
  ): Promise<PersistentSubscriptionInfo[]> {
    if (streamId === undefined || streamId === "$all") {
      return (await onEvery(this.#partitioned, (ps) => ps.list(streamId, options))).flat();
    }
    return this.#owner(streamId).list(streamId, options);
  }

  /** With "$all": a PartitionedPersistentSubscriptionInfo, the group in every partition. */
  override async getInfo(
    streamId: string,
    group: string,
    options?: OperationOptions,
  ): Promise<PersistentSubscriptionInfo> {
    if (streamId === "$all") {
      const infos = await onEvery(this.#partitioned, (ps) => ps.getInfo(streamId, group, options));
      return mergeInfos(streamId, group, this.#partitioned.names, infos);
    }
    return this.#owner(streamId).getInfo(streamId, group, options);
  }

  override async replayParked(
    streamId: string,
    group: string,
    options?: ReplayParkedOptions,
  ): Promise<void> {
    if (streamId === "$all") {
      await onEvery(this.#partitioned, (ps) => ps.replayParked(streamId, group, options));
      return;
    }
    return this.#owner(streamId).replayParked(streamId, group, options);
  }

  /**
   * With "$all": a MergedPersistentSubscription, one consumer in every partition, merged;
   * each event carries `partition` and its ack / nack go to that partition's group.
   */
  override subscribe(
    streamId: string,
    group: string,
    options?: PersistentSubscribeOptions,
  ): PersistentSubscription {
    if (streamId === "$all") {
      const p = this.#partitioned;
      const merged = new MergedPersistentSubscription(
        p.names.map((name) => ({ name, client: p.client(name) })),
        group,
        options,
      );
      // The same surface as a PersistentSubscription: see MergedPersistentSubscription.
      return merged as unknown as PersistentSubscription;
    }
    return this.#owner(streamId).subscribe(streamId, group, options);
  }
}
