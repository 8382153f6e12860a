import type { OperationContext } from "../operations/context.js";
import type { OperationOptions } from "../types.js";
import {
  createGroup,
  deleteGroup,
  getGroupInfo,
  listGroups,
  replayParked,
  updateGroup,
  type PersistentSubscriptionInfo,
  type PersistentSubscriptionSettings,
  type ReplayParkedOptions,
} from "./management.js";
import { PersistentSubscription, type PersistentSubscribeOptions } from "./subscription.js";

/**
 * `client.persistentSubscriptions`: groups of competing consumers whose position is kept by
 * the server (durably, through leader changes). Stream "$all" names a group over every
 * non-system stream.
 */
export class PersistentSubscriptions {
  readonly #ctx: OperationContext;
  readonly #run: <T>(fn: () => Promise<T>) => Promise<T>;
  readonly #track: (make: () => PersistentSubscription) => PersistentSubscription;

  /** @internal created by ChorusClient */
  constructor(
    ctx: OperationContext,
    run: <T>(fn: () => Promise<T>) => Promise<T>,
    track: (make: () => PersistentSubscription) => PersistentSubscription,
  ) {
    this.#ctx = ctx;
    this.#run = run;
    this.#track = track;
  }

  /** Creates a group; PersistentSubscriptionExistsError when it exists. */
  create(
    streamId: string,
    group: string,
    settings?: Partial<PersistentSubscriptionSettings>,
    options?: OperationOptions,
  ): Promise<void> {
    return this.#run(() => createGroup(this.#ctx, streamId, group, settings, options));
  }

  /** Changes some settings; the group's consumers join again and get them. */
  update(
    streamId: string,
    group: string,
    settings: Partial<PersistentSubscriptionSettings>,
    options?: OperationOptions,
  ): Promise<void> {
    return this.#run(() => updateGroup(this.#ctx, streamId, group, settings, options));
  }

  /** Deletes a group; its consumers end with PersistentSubscriptionNotFoundError. */
  delete(streamId: string, group: string, options?: OperationOptions): Promise<void> {
    return this.#run(() => deleteGroup(this.#ctx, streamId, group, options));
  }

  /** Every group, or the groups of one stream. */
  list(streamId?: string, options?: OperationOptions): Promise<PersistentSubscriptionInfo[]> {
    return this.#run(() => listGroups(this.#ctx, streamId, options));
  }

  getInfo(
    streamId: string,
    group: string,
    options?: OperationOptions,
  ): Promise<PersistentSubscriptionInfo> {
    return this.#run(() => getGroupInfo(this.#ctx, streamId, group, options));
  }

  /** Offers parked events to the consumers again (up to `stopAt` of them). */
  replayParked(streamId: string, group: string, options?: ReplayParkedOptions): Promise<void> {
    return this.#run(() => replayParked(this.#ctx, streamId, group, options));
  }

  /** Joins a group as a consumer. Iterate it; ack or nack every event. */
  subscribe(
    streamId: string,
    group: string,
    options?: PersistentSubscribeOptions,
  ): PersistentSubscription {
    return this.#track(() => new PersistentSubscription(this.#ctx, streamId, group, options));
  }
}
