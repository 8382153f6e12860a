/**
 * `subscribeToAll` of a partitioned client: one catch-up subscription to `$all` per group,
 * merged into one async iterable. Events of one group keep their order; events of different
 * groups come in the order they arrive (there is no order across groups). Each event carries
 * `partition`. The resume point is one position per group (`positions`, and the
 * `checkpoint` event): each group's subscription resumes after its own position, and each
 * resubscribes by itself after a failover of its group, with no gap and no repeat.
 */
import { EventEmitter } from "node:events";
import type { ChorusClient } from "../client.js";
import { InvalidArgumentError } from "../errors.js";
import {
  pullOf,
  type SubscribeToAllOptions,
  type Subscription,
  type SubscriptionPull,
} from "../subscriptions/subscription.js";
import type { ResolvedEvent } from "../types.js";
import type { PartitionPositions } from "./partitioned-client.js";
import { SingleIteration } from "../util/single-iteration.js";

/** subscribeToAll options of a partitioned client: `fromPosition` may give each group's position. */
export type PartitionedSubscribeToAllOptions = Omit<SubscribeToAllOptions, "fromPosition"> & {
  fromPosition?: SubscribeToAllOptions["fromPosition"] | PartitionPositions;
};

export interface MergedSubscriptionEvents {
  /** Every group has handed over its events before its live point (emitted once). */
  caughtUp: [];
  /** A group's subscription ended with `error`; the others are stopped too. */
  dropped: [error: Error];
  /**
   * A group's filtered subscription passed a checkpoint: `positions` (every group's resume
   * point, that group's advanced) resumes with no repeat and no gap.
   */
  checkpoint: [positions: PartitionPositions];
}

/** Each group's start: "start", "end", or the position to resume after. */
export function startsOf(
  names: readonly string[],
  from: PartitionedSubscribeToAllOptions["fromPosition"],
  where: string,
): Map<string, "start" | "end" | bigint> {
  const result = new Map<string, "start" | "end" | bigint>();
  if (from === undefined || from === "start" || from === "end") {
    for (const name of names) result.set(name, from ?? "start");
    return result;
  }
  if (typeof from !== "object" || from === null) {
    throw new InvalidArgumentError(
      `${where} over partitions: fromPosition must be "start", "end" or each partition's last position ({ ${names.map((n) => `${n}: 0n`).join(", ")} }, "start" for none), got ${typeof from === "bigint" ? `${from}n` : String(from)}: a single position means nothing across groups`,
    );
  }
  for (const name of Object.keys(from)) {
    if (!names.includes(name)) {
      throw new InvalidArgumentError(
        `${where} over partitions: fromPosition names ${JSON.stringify(name)}, which is not a partition (${names.join(", ")})`,
      );
    }
  }
  for (const name of names) {
    const position = from[name];
    if (position !== "start" && typeof position !== "bigint") {
      throw new InvalidArgumentError(
        `${where} over partitions: fromPosition needs partition ${name}'s last position (a bigint) or "start", got ${String(position)}`,
      );
    }
    result.set(name, position);
  }
  return result;
}

/**
 * The merge pulls: the iterator takes the next ready event from the groups' subscriptions in
 * turn (`pullOf`: no promise per event between a group's subscription and this one) and waits
 * on all of them when none has one. Each group's subscription keeps its own buffer and
 * flow control (`bufferSize` each).
 */
export class MergedSubscription
  extends EventEmitter<MergedSubscriptionEvents>
  implements AsyncIterable<ResolvedEvent>
{
  readonly #subs: readonly {
    readonly name: string;
    readonly sub: Subscription;
    readonly pull: SubscriptionPull;
  }[];
  readonly #positions: Record<string, bigint | "start">;
  readonly #caughtUp = new Set<string>();
  readonly #done: Promise<void>;
  #ended = false;
  #failure: Error | undefined;
  /** The group whose subscription is asked first next time (turns keep the groups fair). */
  #turn = 0;
  /** Groups whose subscriptions have ended and handed over everything. */
  readonly #exhausted = new Set<number>();
  readonly #iteration = new SingleIteration<ResolvedEvent>(
    () => this.#next(),
    () => this.unsubscribe(),
  );

  /** @internal use client.subscribeToAll of a partitioned client */
  constructor(
    clients: readonly { readonly name: string; readonly client: ChorusClient }[],
    options: PartitionedSubscribeToAllOptions = {},
  ) {
    super();
    const names = clients.map((c) => c.name);
    const starts = startsOf(names, options.fromPosition, "subscribeToAll");
    this.#positions = {};
    for (const name of names) {
      const start = starts.get(name)!;
      // "end" becomes known as the first event arrives; until then nothing was delivered.
      this.#positions[name] = typeof start === "bigint" ? start : "start";
    }
    const { fromPosition: _from, ...rest } = options;
    const subs: { name: string; sub: Subscription; pull: SubscriptionPull }[] = [];
    try {
      for (const { name, client } of clients) {
        const sub = client.subscribeToAll({ ...rest, fromPosition: starts.get(name)! });
        subs.push({ name, sub, pull: pullOf(sub) });
      }
    } catch (err) {
      for (const { sub } of subs) void sub.unsubscribe();
      throw err;
    }
    this.#subs = subs;
    for (const { name, sub } of subs) {
      // Said by a group's subscription as it hands over its last event before the live point
      // (or at once when there is none): the merge has then handed it over too.
      sub.on("caughtUp", () => {
        this.#caughtUp.add(name);
        if (this.#caughtUp.size === subs.length) this.emit("caughtUp");
      });
      // Said in order, once the application asks for the event after it.
      sub.on("checkpoint", (position) => {
        this.#positions[name] = position;
        this.emit("checkpoint", this.positions);
      });
      sub.on("dropped", (error) => this.#end(error));
      // A group's subscription that ends by itself (its client closed) ends them all.
      void sub.finished.then(() => this.#end(undefined));
    }
    this.#done = Promise.all(subs.map(({ sub }) => sub.finished)).then(() => undefined);
  }

  /** True once the subscription has ended (unsubscribed, dropped or client closed). */
  get isEnded(): boolean {
    return this.#ended;
  }

  /** Settles once every group's subscription has ended. Never rejects. */
  get finished(): Promise<void> {
    return this.#done;
  }

  /**
   * Every group's resume point: the position of the last event handed to the application
   * (or passed by a checkpoint), "start" for a group nothing came from yet. Give it as
   * `fromPosition` to a new subscribeToAll (or readAll) to go on after it.
   */
  get positions(): PartitionPositions {
    return { ...this.#positions };
  }

  /** Stops every group's subscription; a waiting iterator finishes. Safe to call more than once. */
  async unsubscribe(): Promise<void> {
    this.#end(undefined);
    await this.#done;
  }

  [Symbol.asyncIterator](): AsyncIterator<ResolvedEvent> {
    return this.#iteration.begin();
  }

  async #next(): Promise<IteratorResult<ResolvedEvent>> {
    for (;;) {
      const ready = this.#take();
      if (ready !== undefined) return ready;
      await new Promise<void>((resolve) => {
        for (const { pull } of this.#subs) pull.waitReady(resolve);
      });
      for (const { pull } of this.#subs) pull.stopWaiting();
    }
  }

  /** The next ready event of any group (taking turns), the end, or undefined: none yet. */
  #take(): IteratorResult<ResolvedEvent> | undefined {
    const n = this.#subs.length;
    for (let k = 0; k < n; k++) {
      const i = (this.#turn + k) % n;
      if (this.#exhausted.has(i)) continue;
      const { name, pull } = this.#subs[i]!;
      let ready: IteratorResult<ResolvedEvent> | undefined;
      try {
        ready = pull.takeReady();
      } catch (err) {
        // Its failure (or its signal's reason) is what the iterator throws at the end, even
        // when the merge had ended already (a signal ends every group's subscription).
        const error = err instanceof Error ? err : new Error(String(err));
        this.#exhausted.add(i);
        this.#failure ??= error;
        this.#end(error);
        continue;
      }
      if (ready === undefined) continue;
      if (ready.done === true) {
        this.#exhausted.add(i);
        this.#end(undefined);
        continue;
      }
      this.#turn = i + 1;
      // The group's client made the event with its `partition` already.
      this.#positions[name] = ready.value.event.position;
      return ready;
    }
    if (this.#exhausted.size < n) return undefined;
    this.#iteration.end();
    if (this.#failure) {
      const err = this.#failure;
      this.#failure = undefined;
      throw err;
    }
    return { done: true, value: undefined };
  }

  #end(error: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#failure = error;
    for (const { sub } of this.#subs) void sub.unsubscribe();
    if (error) this.emit("dropped", error);
  }
}
