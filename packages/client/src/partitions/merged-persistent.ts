/**
 * `persistentSubscriptions.subscribe("$all", group)` of a partitioned client: one consumer of
 * the group in every partition (each an ordinary PersistentSubscription of that partition's
 * client), merged into one async iterable. Each event carries `partition`; `ack` / `nack`
 * send each event to its own partition's consumer. A partition's consumer joins again by
 * itself after its group's leader change or restart, while the others keep delivering.
 */
import { EventEmitter } from "node:events";
import type { ChorusClient } from "../client.js";
import { InvalidArgumentError } from "../errors.js";
import type {
  AckOptions,
  NackAction,
  NackOptions,
  PersistentEvent,
  PersistentSubscribeOptions,
  PersistentSubscription,
} from "../persistent/subscription.js";
import type { ResolvedEvent } from "../types.js";
import { checkOptions } from "../util/options.js";
import { SingleIteration } from "../util/single-iteration.js";

export interface MergedPersistentSubscriptionEvents {
  /** Every partition's consumer has joined its group (emitted once). */
  confirmed: [];
  /** A partition's consumer lost its connection or leader; it joins again by itself. */
  reconnecting: [reason: Error, partition: string];
  /** A partition's consumer joined its group again after a loss. */
  resubscribed: [partition: string];
  /** A partition's consumer ended with `error`; the others are stopped too. */
  dropped: [error: Error];
}

type AnyEvent = PersistentEvent | ResolvedEvent;

/** A rejected promise that is never an unhandled rejection when the caller does not await it. */
function handled(err: Error): Promise<never> {
  const p = Promise.reject(err);
  p.catch(() => undefined);
  return p;
}

/**
 * A consumer of a `$all` persistent subscription group across every partition. It has the
 * surface of a PersistentSubscription (iterate, ack, nack, unsubscribe, finished, events).
 */
export class MergedPersistentSubscription
  extends EventEmitter<MergedPersistentSubscriptionEvents>
  implements AsyncIterable<PersistentEvent>
{
  readonly streamId = "$all";
  readonly group: string;
  readonly #parts: ReadonlyMap<string, PersistentSubscription>;
  readonly #stopping = new Map<string, Promise<void>>();
  readonly #queue: PersistentEvent[] = [];
  readonly #joined = new Set<string>();
  readonly #done: Promise<void>;
  #ended = false;
  #failure: Error | undefined;
  readonly #iteration = new SingleIteration<PersistentEvent>(
    () => this.#next(),
    () => this.unsubscribe(),
  );
  #wake: (() => void) | undefined;

  /** @internal use client.persistentSubscriptions.subscribe("$all", group) of a partitioned client */
  constructor(
    clients: readonly { readonly name: string; readonly client: ChorusClient }[],
    group: string,
    options: PersistentSubscribeOptions = {},
  ) {
    super();
    this.group = group;
    const parts = new Map<string, PersistentSubscription>();
    try {
      for (const { name, client } of clients) {
        parts.set(name, client.persistentSubscriptions.subscribe("$all", group, options));
      }
    } catch (err) {
      for (const part of parts.values()) void part.unsubscribe();
      throw err;
    }
    this.#parts = parts;
    for (const [name, part] of parts) {
      part.on("confirmed", () => {
        this.#joined.add(name);
        if (this.#joined.size === parts.size) this.emit("confirmed");
      });
      part.on("reconnecting", (reason) => this.emit("reconnecting", reason, name));
      part.on("resubscribed", () => this.emit("resubscribed", name));
      part.on("dropped", (error) => this.#end(error, true));
    }
    this.#done = Promise.all([...parts].map(([name, part]) => this.#pump(name, part))).then(
      async () => {
        await Promise.all([...parts.values()].map((part) => part.finished));
      },
    );
  }

  get isEnded(): boolean {
    return this.#ended;
  }

  /** Settles once every partition's consumer has ended and stopped all its work. Never rejects. */
  get finished(): Promise<void> {
    return this.#done;
  }

  /** Each partition's consumer (for its own events and counters). */
  get parts(): ReadonlyMap<string, PersistentSubscription> {
    return this.#parts;
  }

  /**
   * Acknowledges events, each to its own partition's group (a list spanning partitions is
   * split). Resolves once every partition concerned has made its share durable.
   */
  ack(events: AnyEvent | readonly AnyEvent[], options?: AckOptions): Promise<void> {
    try {
      checkOptions("PersistentSubscription.ack", options, []);
    } catch (err) {
      return handled(err as Error);
    }
    return this.#route(events, (part, list) => part.ack(list));
  }

  /** Negative acknowledgement (see PersistentSubscription.nack), each event to its partition's group. */
  nack(
    action: NackAction,
    reason: string,
    events: AnyEvent | readonly AnyEvent[],
    options?: NackOptions,
  ): Promise<void> {
    return this.#route(events, (part, list) => part.nack(action, reason, list, options));
  }

  #route(
    events: AnyEvent | readonly AnyEvent[],
    send: (part: PersistentSubscription, list: AnyEvent | readonly AnyEvent[]) => Promise<void>,
  ): Promise<void> {
    if (!Array.isArray(events)) {
      const part = this.#partOf(events as AnyEvent);
      return part instanceof Error ? handled(part) : send(part, events);
    }
    const byPart = new Map<PersistentSubscription, AnyEvent[]>();
    for (const e of events as readonly AnyEvent[]) {
      const part = this.#partOf(e);
      if (part instanceof Error) return handled(part);
      const list = byPart.get(part);
      if (list) list.push(e);
      else byPart.set(part, [e]);
    }
    if (byPart.size === 0) return Promise.resolve();
    if (byPart.size === 1) {
      const [part, list] = byPart.entries().next().value!;
      return send(part, list);
    }
    const all = Promise.all([...byPart].map(([part, list]) => send(part, list))).then(
      () => undefined,
    );
    all.catch(() => undefined);
    return all;
  }

  #partOf(e: AnyEvent): PersistentSubscription | Error {
    const partition = e?.event?.partition;
    const part = partition === undefined ? undefined : this.#parts.get(partition);
    if (part === undefined) {
      return new InvalidArgumentError(
        `ack / nack take events of this subscription: an event of a $all group over partitions names its partition (event.partition), got ${String(partition)}`,
      );
    }
    return part;
  }

  /** Leaves the group in every partition after sending outstanding acks. */
  async unsubscribe(): Promise<void> {
    await Promise.all([...this.#parts.keys()].map((name) => this.#stop(name)));
    this.#end(undefined, false);
    await this.#done;
  }

  [Symbol.asyncIterator](): AsyncIterator<PersistentEvent> {
    return this.#iteration.begin();
  }

  async #next(): Promise<IteratorResult<PersistentEvent>> {
    for (;;) {
      const event = this.#queue.shift();
      if (event) return { done: false, value: event };
      if (this.#failure) {
        const err = this.#failure;
        this.#failure = undefined;
        this.#iteration.end();
        throw err;
      }
      if (this.#ended) {
        this.#iteration.end();
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }

  /** Takes one partition's deliveries (the server bounds them by bufferSize unacknowledged). */
  async #pump(name: string, part: PersistentSubscription): Promise<void> {
    try {
      for await (const e of part) {
        // Once ended, the part is being stopped (once, by #end): what it still hands over is dropped.
        if (this.#ended) continue;
        this.#queue.push(e); // carries its `partition` (made by the group's client)
        this.#wake?.();
      }
      // A partition's consumer that ends by itself (its client closed) ends them all.
      this.#end(undefined, false);
    } catch (err) {
      this.#end(err instanceof Error ? err : new Error(String(err)), false);
    }
  }

  /** part.unsubscribe(), once per part. */
  #stop(name: string): Promise<void> {
    let stopping = this.#stopping.get(name);
    if (!stopping) {
      stopping = this.#parts.get(name)!.unsubscribe();
      this.#stopping.set(name, stopping);
    }
    return stopping;
  }

  #end(error: Error | undefined, emitDropped: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    if (error) this.#failure = error;
    for (const name of this.#parts.keys()) void this.#stop(name);
    this.#wake?.();
    if (error && emitDropped) this.emit("dropped", error);
  }
}
