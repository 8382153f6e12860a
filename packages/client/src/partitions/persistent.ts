/**
 * `client.persistentSubscriptions` of a partitioned client: a group on a stream lives in
 * the stream's partition; a group on `$all` is created, updated, deleted and replayed on
 * every partition. Consuming a `$all` group across partitions is not available yet.
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
import type { PartitionedClient } from "./partitioned-client.js";

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

  override async getInfo(
    streamId: string,
    group: string,
    options?: OperationOptions,
  ): Promise<PersistentSubscriptionInfo> {
    if (streamId === "$all") {
      throw notAcrossPartitions("getInfo of a $all group (it has one state per partition)");
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

  override subscribe(
    streamId: string,
    group: string,
    options?: PersistentSubscribeOptions,
  ): PersistentSubscription {
    if (streamId === "$all") throw notAcrossPartitions('subscribe("$all", ...)');
    return this.#owner(streamId).subscribe(streamId, group, options);
  }
}
