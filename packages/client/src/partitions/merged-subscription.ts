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
import { DEFAULT_SUBSCRIPTION_BUFFER_SIZE } from "../settings/defaults.js";
import type { SubscribeToAllOptions, Subscription } from "../subscriptions/subscription.js";
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

type Item =
  | { kind: "event"; partition: string; event: ResolvedEvent }
  | { kind: "caughtUp"; partition: string }
  | { kind: "checkpoint"; partition: string; position: bigint };

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

export class MergedSubscription
  extends EventEmitter<MergedSubscriptionEvents>
  implements AsyncIterable<ResolvedEvent>
{
  readonly #subs: readonly { readonly name: string; readonly sub: Subscription }[];
  readonly #capacity: number;
  readonly #queue: Item[] = [];
  readonly #positions: Record<string, bigint | "start">;
  readonly #caughtUp = new Set<string>();
  readonly #done: Promise<void>;
  #ended = false;
  #failure: Error | undefined;
  readonly #iteration = new SingleIteration<ResolvedEvent>(
    () => this.#next(),
    () => this.unsubscribe(),
  );
  /** Wakes the iterator (an item or the end arrived). */
  #wake: (() => void) | undefined;
  /** Wake the pumps (room in the queue, or the end). */
  #room: (() => void)[] = [];

  /** @internal use client.subscribeToAll of a partitioned client */
  constructor(
    clients: readonly { readonly name: string; readonly client: ChorusClient }[],
    options: PartitionedSubscribeToAllOptions = {},
  ) {
    super();
    const names = clients.map((c) => c.name);
    const starts = startsOf(names, options.fromPosition, "subscribeToAll");
    const size = options.bufferSize ?? DEFAULT_SUBSCRIPTION_BUFFER_SIZE;
    this.#capacity = Number.isInteger(size) && size >= 1 ? size : DEFAULT_SUBSCRIPTION_BUFFER_SIZE;
    this.#positions = {};
    for (const name of names) {
      const start = starts.get(name)!;
      // "end" becomes known as the first event arrives; until then nothing was delivered.
      this.#positions[name] = typeof start === "bigint" ? start : "start";
    }
    const { fromPosition: _from, ...rest } = options;
    const subs: { name: string; sub: Subscription }[] = [];
    try {
      for (const { name, client } of clients) {
        const sub = client.subscribeToAll({ ...rest, fromPosition: starts.get(name)! });
        subs.push({ name, sub });
      }
    } catch (err) {
      for (const { sub } of subs) void sub.unsubscribe();
      throw err;
    }
    this.#subs = subs;
    this.#done = Promise.all(subs.map(({ name, sub }) => this.#pump(name, sub))).then(async () => {
      await Promise.all(subs.map(({ sub }) => sub.finished));
    });
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
      const item = this.#queue.shift();
      if (item === undefined) {
        if (this.#ended) {
          if (this.#failure) throw this.#failure;
          return { done: true, value: undefined };
        }
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
        continue;
      }
      this.#room.shift()?.();
      switch (item.kind) {
        case "caughtUp":
          this.#caughtUp.add(item.partition);
          if (this.#caughtUp.size === this.#subs.length) this.emit("caughtUp");
          continue;
        case "checkpoint":
          this.#positions[item.partition] = item.position;
          this.emit("checkpoint", this.positions);
          continue;
        case "event":
          this.#positions[item.partition] = item.event.event.position;
          return { done: false, value: item.event };
      }
    }
  }

  #push(item: Item): void {
    this.#queue.push(item);
    this.#wake?.();
  }

  async #pump(name: string, sub: Subscription): Promise<void> {
    // A group's subscription says it caught up while handing over its last event before the
    // live point: the marker goes after that event (or on its own when there was none).
    let caughtUp = false;
    const flushCaughtUp = () => {
      if (!caughtUp) return;
      caughtUp = false;
      this.#push({ kind: "caughtUp", partition: name });
    };
    sub.on("caughtUp", () => {
      caughtUp = true;
      setImmediate(flushCaughtUp);
    });
    sub.on("checkpoint", (position) =>
      this.#push({ kind: "checkpoint", partition: name, position }),
    );
    try {
      for await (const e of sub) {
        if (this.#ended) break;
        // The group's client made the event with its `partition` already.
        this.#push({ kind: "event", partition: name, event: e });
        flushCaughtUp();
        while (this.#queue.length >= this.#capacity && !this.#ended) {
          await new Promise<void>((resolve) => this.#room.push(resolve));
        }
        if (this.#ended) break;
      }
      // A group's subscription that ends by itself (its client closed) ends them all.
      this.#end(undefined);
    } catch (err) {
      this.#end(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #end(error: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#failure = error;
    for (const { sub } of this.#subs) void sub.unsubscribe();
    for (const resolve of this.#room.splice(0)) resolve();
    this.#wake?.();
    if (error) this.emit("dropped", error);
  }
}
