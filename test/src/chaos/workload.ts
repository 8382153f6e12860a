// The soak's workload: writers appending with every expected-version kind over a bounded set
// of streams, recording each append and its outcome; catch-up subscribers on `$all` and on a
// stream, and the consumers of a persistent group on `$all`, recording what they were
// handed. Every loop ends when stopped or at its bound.
import {
  ChorusClient,
  ConnectionSettings,
  jsonEvent,
  StorageFullError,
  WrongExpectedVersionError,
  type ConsumerStrategy,
  type ExpectedVersion,
  type PersistentEvent,
  type PersistentSubscription,
  type Subscription,
} from "@chorus/client";
import type {
  AppendRecord,
  CheckedExpectedVersion,
  DeliveredEvent,
  PersistentHanding,
  PersistentHistory,
} from "../cluster/write-checker.js";
import { randomInt, type Random } from "./schedule.js";

/** Streams the writers share: `chaos-0` .. `chaos-(STREAMS - 1)`. */
export const STREAM_PREFIX = "chaos-";
export const STREAMS = 6;
/** Appends per writer at most (a bound besides the phase's end). */
export const MAX_APPENDS_PER_WRITER = 500_000;
/** Resubscriptions per subscriber at most, after its subscription dropped. */
export const MAX_RESUBSCRIBES = 10_000;
/** Pause before subscribing again after a drop. */
export const RESUBSCRIBE_DELAY_MS = 100;

/** The client's deadline of one operation, retries included. */
export const OPERATION_TIMEOUT_MS = 10_000;
/** How long past its deadline an operation may stay pending before it counts as hung. */
export const SETTLE_GRACE_MS = 20_000;

/** Quick to find a new leader, patient with a cluster that has none for a while. */
export const CLIENT_OPTIONS =
  `&operationTimeout=${OPERATION_TIMEOUT_MS}&reconnectionDelay=20&discoverDelay=20&maxReconnections=100000` +
  "&maxDiscoverAttempts=100000&heartbeatInterval=200&heartbeatTimeout=1000";

export const streamName = (k: number): string => `${STREAM_PREFIX}${k}`;

/**
 * Makes a client of the phase's deployment with CLIENT_OPTIONS and `options` (more
 * `&name=value` settings) on every connection string it has.
 */
export type ClientFactory = (options?: string) => ChorusClient;

/** Clients of one cluster or one set of instances. */
export function clientsOf(connectionString: string): ClientFactory {
  return (options = "") => new ChorusClient(`${connectionString}${CLIENT_OPTIONS}${options}`);
}

/** Partitioned clients over these groups (name -> connection string). */
export function partitionedClientsOf(groups: Readonly<Record<string, string>>): ClientFactory {
  return (options = "") =>
    new ChorusClient(
      ConnectionSettings.create()
        .withPartitions(
          Object.fromEntries(
            Object.entries(groups).map(([name, cs]) => [name, `${cs}${CLIENT_OPTIONS}${options}`]),
          ),
        )
        .build(),
    );
}

export interface Writers {
  /** Every append made so far, completed ones only (in completion order). */
  readonly appends: readonly AppendRecord[];
  readonly acknowledged: number;
  readonly failed: number;
  readonly unknown: number;
  /** Error names of unknown outcomes, with counts. */
  readonly unknownReasons: ReadonlyMap<string, number>;
  /** How long the oldest append in flight has been pending, ms (0: none). */
  oldestPendingMs(): number;
  /**
   * Stops the loops (each finishes its append in flight) and closes the clients. An append
   * still pending `OPERATION_TIMEOUT_MS + SETTLE_GRACE_MS` after it started is hung (its
   * deadline did not fire): the clients are closed under it and it is reported in the
   * returned sentences (and recorded as unknown if the close settles it).
   */
  stop(): Promise<string[]>;
}

/** Whether `promise` settles within `ms`. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

type Kind = "exact" | "any" | "no_stream" | "stream_exists";
const KIND_WEIGHTS: readonly [Kind, number][] = [
  ["exact", 0.45],
  ["any", 0.2],
  ["no_stream", 0.1],
  ["stream_exists", 0.25],
];

function pickKind(random: Random): Kind {
  let r = random();
  for (const [kind, weight] of KIND_WEIGHTS) {
    r -= weight;
    if (r < 0) return kind;
  }
  return "any";
}

/** `count` writers, each with a client of its own, until stopped. */
export function startWriters(clientOf: ClientFactory, count: number, random: Random): Writers {
  const appends: AppendRecord[] = [];
  const unknownReasons = new Map<string, number>();
  let acknowledged = 0;
  let failed = 0;
  let unknown = 0;
  let stopping = false;
  const clients: ChorusClient[] = [];
  /** When each writer's append in flight started (performance.now()), or undefined. */
  const pendingSince: (number | undefined)[] = Array.from({ length: count }, () => undefined);
  const loops = Array.from({ length: count }, async (_, writer) => {
    const client = clientOf();
    clients.push(client);
    /** What this writer last learnt of each stream's revision. */
    const known = new Map<string, bigint | "no_stream">();
    for (let n = 0; !stopping && n < MAX_APPENDS_PER_WRITER; n++) {
      const streamId = streamName(randomInt(random, 0, STREAMS - 1));
      const kind = pickKind(random);
      const knownVersion = known.get(streamId);
      const expectedVersion: CheckedExpectedVersion =
        kind === "exact" ? (typeof knownVersion === "bigint" ? knownVersion : "no_stream") : kind;
      const events = Array.from({ length: randomInt(random, 1, 3) }, (_, k) =>
        jsonEvent({ type: "Chaos", data: { writer, n, k } }),
      );
      const eventIds = events.map((e) => e.id);
      pendingSince[writer] = performance.now();
      try {
        const result = await client.appendToStream(streamId, events, {
          expectedVersion: expectedVersion as ExpectedVersion,
        });
        known.set(streamId, result.nextExpectedVersion);
        acknowledged++;
        appends.push({
          writer,
          streamId,
          expectedVersion,
          eventIds,
          outcome: {
            kind: "acknowledged",
            nextExpectedVersion: result.nextExpectedVersion,
            position: result.position,
          },
        });
      } catch (err) {
        // Definite refusals, which the checker holds to their word (their events must be
        // absent from the log): a wrong expected version, and a full disk ("the write was not
        // made").
        const refusal =
          err instanceof WrongExpectedVersionError
            ? `wrong expected version: ${err.message}`
            : err instanceof StorageFullError
              ? `storage full: ${err.message}`
              : undefined;
        if (err instanceof WrongExpectedVersionError) known.set(streamId, err.actualVersion);
        if (refusal !== undefined) {
          failed++;
          appends.push({
            writer,
            streamId,
            expectedVersion,
            eventIds,
            outcome: { kind: "failed", reason: refusal },
          });
        } else {
          known.delete(streamId);
          unknown++;
          // With the server's code where there is one: "ServerError(INTERNAL)".
          const code = (err as { serverCode?: unknown } | undefined)?.serverCode;
          const name =
            (err instanceof Error ? err.name : typeof err) +
            (typeof code === "string" ? `(${code})` : "");
          unknownReasons.set(name, (unknownReasons.get(name) ?? 0) + 1);
          const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
          appends.push({
            writer,
            streamId,
            expectedVersion,
            eventIds,
            outcome: { kind: "unknown", reason },
          });
        }
      } finally {
        pendingSince[writer] = undefined;
      }
    }
  });
  const oldestPendingMs = () => {
    const now = performance.now();
    return Math.max(0, ...pendingSince.map((t) => (t === undefined ? 0 : now - t)));
  };
  let stopped: Promise<string[]> | undefined;
  return {
    appends,
    get acknowledged() {
      return acknowledged;
    },
    get failed() {
      return failed;
    },
    get unknown() {
      return unknown;
    },
    unknownReasons,
    oldestPendingMs,
    stop() {
      stopping = true;
      stopped ??= (async () => {
        const problems: string[] = [];
        const all = Promise.all(loops);
        const waitMs = Math.max(0, OPERATION_TIMEOUT_MS + SETTLE_GRACE_MS - oldestPendingMs());
        if (!(await settlesWithin(all, waitMs))) {
          const hung = pendingSince.filter((t) => t !== undefined).length;
          problems.push(
            `hung: ${hung} append(s) still pending ${(oldestPendingMs() / 1_000).toFixed(0)} s after they ` +
              `started, past the client's ${OPERATION_TIMEOUT_MS} ms deadline`,
          );
        }
        await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
        if (!(await settlesWithin(all, SETTLE_GRACE_MS))) {
          problems.push(
            `hung: appends still pending ${SETTLE_GRACE_MS} ms after their client closed`,
          );
        }
        return problems;
      })();
      return stopped;
    },
  };
}

export interface Subscriber {
  readonly name: string;
  /** Which committed events it must be handed: every event of this stream, or of every `chaos-` stream. */
  readonly streamId: string | undefined;
  readonly delivered: readonly DeliveredEvent[];
  /** How many times its subscription dropped and it subscribed again. */
  readonly resubscribes: number;
  /** The errors its subscription dropped with, by name. */
  readonly drops: ReadonlyMap<string, number>;
  stop(): Promise<void>;
}

/**
 * A catch-up subscriber from the start, on `$all` (filtered to the writers' streams) or on
 * one stream; when its subscription drops it subscribes again from the last event it was
 * handed (as an application would), so the checker also covers resubscription.
 */
export interface SubscriberOptions {
  readonly name: string;
  /** A catch-up subscription to this stream; without one, to `$all` (the writers' streams). */
  readonly streamId?: string;
  readonly nodePreference?: "leader" | "follower" | "random" | "readOnlyReplica";
  /** The groups of a partitioned client: `$all` resumes from a checkpoint of each. */
  readonly partitions?: readonly string[];
}

export function startSubscriber(clientOf: ClientFactory, options: SubscriberOptions): Subscriber {
  const client = clientOf(`&nodePreference=${options.nodePreference ?? "leader"}`);
  const delivered: DeliveredEvent[] = [];
  const drops = new Map<string, number>();
  let resubscribes = 0;
  let stopping = false;
  let current: Subscription | undefined;
  /** Where `$all` resumes: the last position handed, of every group with partitions. */
  const resumeAt = (): bigint | "start" | Record<string, bigint | "start"> => {
    if (options.partitions === undefined) return delivered.at(-1)?.position ?? "start";
    const checkpoint: Record<string, bigint | "start"> = {};
    for (const g of options.partitions) checkpoint[g] = "start";
    for (const e of delivered) if (e.partition !== undefined) checkpoint[e.partition] = e.position;
    return checkpoint;
  };
  const loop = (async () => {
    for (let attempt = 0; !stopping && attempt <= MAX_RESUBSCRIBES; attempt++) {
      const last = delivered[delivered.length - 1];
      const sub =
        options.streamId === undefined
          ? client.subscribeToAll({
              fromPosition: resumeAt(),
              filter: { streamNamePrefix: [STREAM_PREFIX] },
            })
          : client.subscribeToStream(options.streamId, {
              fromRevision: last === undefined ? "start" : last.revision,
            });
      current = sub;
      try {
        for await (const { event } of sub) {
          delivered.push({
            position: event.position,
            id: event.id,
            streamId: event.streamId,
            revision: event.revision,
            partition: event.partition,
          });
        }
      } catch (err) {
        if (stopping) break;
        const name =
          err instanceof Error ? `${err.name}: ${err.message.slice(0, 80)}` : String(err);
        drops.set(name, (drops.get(name) ?? 0) + 1);
      }
      if (stopping) break;
      resubscribes++;
      await new Promise((resolve) => setTimeout(resolve, RESUBSCRIBE_DELAY_MS));
    }
  })();
  let stopped: Promise<void> | undefined;
  return {
    name: options.name,
    streamId: options.streamId,
    delivered,
    get resubscribes() {
      return resubscribes;
    },
    drops,
    stop() {
      stopping = true;
      stopped ??= (async () => {
        await settlesWithin(current?.unsubscribe() ?? Promise.resolve(), SETTLE_GRACE_MS);
        if (!(await settlesWithin(loop, SETTLE_GRACE_MS))) {
          await client.close().catch(() => undefined);
          await settlesWithin(loop, SETTLE_GRACE_MS);
        }
        await client.close().catch(() => undefined);
      })();
      return stopped;
    },
  };
}

/** The persistent group's consumers. */
export const PERSISTENT_CONSUMERS = 2;
/** The persistent group's settings besides its strategy: frequent checkpoints, short timeouts. */
export const PERSISTENT_SETTINGS = {
  checkpointAfterMs: 200,
  minCheckpointCount: 10,
  maxCheckpointCount: 200,
  messageTimeoutMs: 5_000,
} as const;
/** How many times one handing's ack is made, at most. */
const MAX_ACK_ATTEMPTS = 100;

export interface PersistentConsumers extends PersistentHistory {
  readonly group: string;
  readonly strategy: ConsumerStrategy;
  /** How many times a consumer's subscription ended (and a new one joined), by error. */
  readonly drops: ReadonlyMap<string, number>;
  /** Acks made again after one was not confirmed within the operation timeout. */
  readonly ackRetries: number;
  stop(): Promise<void>;
}

/**
 * Creates a persistent group on `$all` (the writers' streams only, from the start) and runs
 * `PERSISTENT_CONSUMERS` consumers of it, each on its own client, acking every event as it
 * is handed (not awaited) and never nacking. A subscription that ends is replaced by a new
 * one, which the checker counts as another consumer (the promise of no duplicates is per
 * subscription that stays up).
 */
export async function startPersistentConsumers(
  clientOf: ClientFactory,
  options: { group: string; strategy: ConsumerStrategy },
): Promise<PersistentConsumers> {
  const admin = clientOf();
  try {
    await admin.persistentSubscriptions.create("$all", options.group, {
      consumerStrategy: options.strategy,
      startFrom: "start",
      filter: { streamNamePrefix: [STREAM_PREFIX] },
      ...PERSISTENT_SETTINGS,
    });
  } finally {
    await admin.close();
  }
  const handings: PersistentHanding[] = [];
  const confirmedAt = new Map<string, number>();
  const drops = new Map<string, number>();
  let stopping = false;
  const current = new Set<PersistentSubscription>();
  const clients: ChorusClient[] = [];
  let ackRetries = 0;
  /**
   * Acks `e` and records when the ack is confirmed. An ack not confirmed within the client's
   * operation timeout rejects (the subscription still sends it again after it joins again):
   * acked again, as an application that awaits its acks would, so that a later confirmation
   * is seen. The checker reports any that never is.
   */
  const ackUntilConfirmed = (
    sub: PersistentSubscription,
    e: PersistentEvent,
    id: string,
    attempt: number,
  ): void => {
    sub.ack(e).then(
      () => {
        if (!confirmedAt.has(id)) confirmedAt.set(id, handings.length);
      },
      () => {
        if (stopping || sub.isEnded || attempt >= MAX_ACK_ATTEMPTS) return;
        ackRetries++;
        ackUntilConfirmed(sub, e, id, attempt + 1);
      },
    );
  };
  const loops = Array.from({ length: PERSISTENT_CONSUMERS }, async (_, i) => {
    const client = clientOf();
    clients.push(client);
    for (let attempt = 0; !stopping && attempt <= MAX_RESUBSCRIBES; attempt++) {
      const consumer = `consumer ${i}.${attempt}`;
      const sub = client.persistentSubscriptions.subscribe("$all", options.group, {
        bufferSize: 50,
        consumerName: consumer,
      });
      current.add(sub);
      try {
        for await (const e of sub) {
          const { id, streamId, revision, position } = e.event;
          handings.push({ consumer, id, streamId, revision, position });
          ackUntilConfirmed(sub, e, id, 0);
        }
      } catch (err) {
        if (stopping) break;
        const name =
          err instanceof Error ? `${err.name}: ${err.message.slice(0, 80)}` : String(err);
        drops.set(name, (drops.get(name) ?? 0) + 1);
      } finally {
        current.delete(sub);
      }
      if (stopping) break;
      await new Promise((resolve) => setTimeout(resolve, RESUBSCRIBE_DELAY_MS));
    }
  });
  let stopped: Promise<void> | undefined;
  return {
    group: options.group,
    strategy: options.strategy,
    handings,
    confirmedAt,
    drops,
    get ackRetries() {
      return ackRetries;
    },
    stop() {
      stopping = true;
      stopped ??= (async () => {
        await settlesWithin(Promise.all([...current].map((s) => s.unsubscribe())), SETTLE_GRACE_MS);
        await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
        await settlesWithin(Promise.all(loops), SETTLE_GRACE_MS);
      })();
      return stopped;
    },
  };
}
