// The same seeded random sequence of persistent-subscription operations against a node of each
// backend (the log in memory: the reference; the log on disk; an in-process node on disk,
// reached with no socket; PostgreSQL; with CHORUS_DIFF_CLUSTER=1 also a 3-node cluster),
// compared answer by answer. The groups' code is
// shared (packages/server/src/persistent keeps a group's config, checkpoints, acks and parked
// copies in system streams of whichever store the node runs on), so a difference is a store
// reading or writing group state differently, or a race the slower stores expose. The disk and
// PostgreSQL nodes (and the cluster's leader) are killed (SIGKILL) and restarted between
// rounds, so every group is rebuilt there from what its streams hold while the in-memory node
// keeps running.
//
// Pools are small so operations meet each other's state: two streams and `$all` (with a filter
// from a pool), two group names; appends; create (startFrom start / end / a revision or the
// position of a known event; maxRetryCount 0..2; small readBatchSize / historyBufferSize /
// liveBufferSize), update, delete, getInfo, list, replayParked (with and without stopAt), and
// consume steps: one consumer subscribes, handles what the group hands out (ack, nack skip /
// park / retry, a retry with a short delay, or holding the event unacknowledged) and leaves
// (unsubscribe, or nack "stop"). Errors are compared by their code, never by their text.
//
// What is compared, and why only that:
// - A consume step runs until the delivery state has settled, never for a fixed time: it
//   appends a sentinel event to the group's source (with filler events first when the group
//   starts beyond the stream's end) and reads until the sentinel, every retry it asked for
//   (retryCount + 1) and the number of parked events a pending replay offers have arrived.
//   Then it compares the multiset of deliveries (event, retryCount, what the consumer did),
//   the order of first deliveries of events that were not parked (source order) and the order
//   of replayed events (the order parked). Where a retry is redelivered relative to new
//   events depends on how far the group had read, and so does where a replay's second round
//   lands, so deliveries with retryCount > 0 and the interleaving of replays are compared as
//   sets.
// - Decisions depend only on (step seed, event id, retryCount), never on arrival order, except
//   a cap on held events (below every buffer size, so the group never stalls) that is counted
//   over first deliveries in their (determined) order.
// - Parking order decides what a replay with stopAt offers, so it is kept determined: in one
//   step, events are parked either explicitly (first deliveries only, whose order is
//   determined) or by exhausting maxRetryCount with immediate retries (whose redeliveries keep
//   their relative order), never both, and never while a replay runs in several rounds.
// - Held events are held only on a first delivery (retryCount 0): an event's retry count lives
//   in the leader's memory and is not kept over a restart, so the next delivery of a held
//   event has retryCount 0 on every backend.
// - A replay asked for and not yet consumed lives in the group's memory (a restart forgets it
//   on disk and PostgreSQL, not in memory): pending replays are consumed before each restart.
// - messageTimeoutMs is 0 or 10 minutes (no timeout fires during the test).
// - getInfo / list: settings (a `$all` startFrom position replaced by the event it names,
//   positions differing between backends), status, consumers, inFlight, parkedCount, and for
//   stream groups lastCheckpoint. Checkpoints are either eager (after every done event) or
//   never within the test, so at rest the checkpoint is determined; a `$all` group's
//   checkpoint may rest on records of system streams (the group's own writes), so it is not
//   compared. Totals and rates (reset by a restart) are not compared.
//
// Contract checked on every backend, across restarts: an acknowledged or skipped event is
// never delivered again to that group; a retried one comes back with retryCount + 1 (and is
// parked past maxRetryCount); a parked one comes back only through replayParked, in the order
// parked; parkedCount counts the events parked and not replayed.
//
// CHORUS_DIFF_SEED and CHORUS_DIFF_OPS run one seed longer; CHORUS_DIFF_TRACE prints each step.
import {
  ChorusClient,
  ChorusError,
  jsonEvent,
  type EventData,
  type PersistentEvent,
  type PersistentSubscription,
  type PersistentSubscriptionFilter,
  type PersistentSubscriptionInfo,
  type PersistentSubscriptionSettings,
} from "@chorus/client";
import { startCluster, type TestCluster } from "@chorus/testing";
import { isDeepStrictEqual } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { pick, randomInt, seededRandom, seededUuid, type Random } from "../chaos/schedule.js";
import { nextEvent } from "../iterate.js";
import {
  BACKENDS,
  clientSettings,
  closeBackends,
  killAndRestartBackendNode,
  startBackendNode,
  type Backend,
} from "../backends.js";
import { differentialRun, outcomeOf } from "./differential-kit.js";

afterAll(closeBackends);

const { seeds: SEEDS, ops: OPS } = differentialRun(200);
const ROUND_OPS = 70;
const OP_TIMEOUT_MS = 10_000;
/** How long a step waits for deliveries, or for a target's state to come to rest. */
const SETTLE_MS = 10_000;
const TRACE = process.env.CHORUS_DIFF_TRACE !== undefined;
/** A 3-node cluster as a fourth target (CHORUS_DIFF_CLUSTER=1; it doubles the run time). */
const CLUSTER = process.env.CHORUS_DIFF_CLUSTER === "1";

const STREAMS = ["orders", "carts"] as const;
const SOURCES = [...STREAMS, "$all"] as const;
const GROUPS = ["g1", "g2"] as const;
const TYPES = ["Placed", "Paid", "Shipped"] as const;
const SENTINEL_TYPE = "Sentinel";
/** Filters of `$all` groups, each with a stream the sentinel (type Sentinel) passes it on. */
const FILTERS: readonly { filter: PersistentSubscriptionFilter | undefined; stream: string }[] = [
  { filter: undefined, stream: "orders" },
  { filter: { streamNamePrefix: ["car"] }, stream: "carts" },
  { filter: { streamNameRegex: "^ord" }, stream: "orders" },
  { filter: { eventTypePrefix: ["Pa", "Sen"] }, stream: "carts" },
  { filter: { eventTypeRegex: "^(Placed|Sentinel)$" }, stream: "orders" },
];

/** What the test's own bookkeeping knows of one group on one target (for the contract). */
interface GroupState {
  /** Acknowledged or skipped: never delivered again. */
  done: Set<string>;
  /** Parked and not replayed, in the order parked. */
  parked: string[];
  /** Held (delivered, never acknowledged) by the last consumer: event id -> its revision. */
  held: Map<string, number>;
}

interface Target {
  label: string;
  client: ChorusClient;
  stop: () => Promise<void>;
  /** Kills (SIGKILL) and restarts the node; absent for the in-memory reference. */
  restart?: () => Promise<void>;
  /** Position -> "stream@revision" of the event there. */
  eventAt: Map<bigint, string>;
  /** "stream@revision" -> its position. */
  positionOf: Map<string, bigint>;
  groups: Map<string, GroupState>;
}

const groupKey = (source: string, group: string): string => `${source}/${group}`;

function stateOf(t: Target, key: string): GroupState {
  let s = t.groups.get(key);
  if (s === undefined) t.groups.set(key, (s = { done: new Set(), parked: [], held: new Map() }));
  return s;
}

function remember(t: Target, position: bigint, key: string): void {
  const before = t.eventAt.get(position);
  if (before !== undefined && before !== key)
    throw new Error(`${t.label}: position ${position} named ${before}, now ${key}`);
  t.eventAt.set(position, key);
  t.positionOf.set(key, position);
}

/** A number in [0, 1) from the parts (FNV-1a, then murmur3's finalizer). */
function unit(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join("|")) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return (h >>> 0) / 4_294_967_296;
}

function errorOutcome(err: unknown): { error: string } {
  if (err instanceof ChorusError) return { error: err.code };
  throw err;
}

const outcome = (run: () => Promise<unknown>): Promise<unknown> => outcomeOf(run, errorOutcome);

/** The settings a group is created or updated with, as the test keeps them. */
type Settings = Partial<PersistentSubscriptionSettings>;

/** The generator's view of a group (the same for every target, learned from the reference). */
interface GroupModel {
  source: string;
  group: string;
  settings: Settings & {
    maxRetryCount: number;
    readBatchSize: number;
    historyBufferSize: number;
    liveBufferSize: number;
  };
  /** Stream groups: the first revision the group reads (fixed at creation). */
  initialFrom: number;
  /** Checkpoints after every done event ("eager") or never within the test. */
  eager: boolean;
  parkedCount: number;
  /** A replay asked for and not yet consumed: how many parked events it offers. */
  replay: number | undefined;
}

const EAGER = { checkpointAfterMs: 0, minCheckpointCount: 1, maxCheckpointCount: 1 };
const NEVER = { checkpointAfterMs: 600_000, minCheckpointCount: 1_000, maxCheckpointCount: 1_000 };

/** getInfo / list as compared: positions replaced by the event they name. */
function infoView(t: Target, info: PersistentSubscriptionInfo): Record<string, unknown> {
  const s = info.settings;
  const startFrom =
    typeof s.startFrom === "bigint" && info.streamId === "$all"
      ? `event ${t.eventAt.get(s.startFrom) ?? "unknown position"}`
      : String(s.startFrom);
  return {
    source: info.streamId,
    group: info.group,
    status: info.status,
    consumers: info.consumers.length,
    inFlight: info.inFlight,
    parkedCount: info.parkedCount,
    lastCheckpoint:
      info.streamId === "$all" ? "not compared" : String(info.lastCheckpoint ?? "none"),
    settings: { ...s, startFrom },
  };
}

/** Polls `read` until `done(value)` or the deadline; returns the last value read. */
async function settle<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() >= deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

type Action = "ack" | "skip" | "park" | "retry" | "delay" | "hold";

interface ConsumePlan {
  source: string;
  group: string;
  seed: number;
  bufferSize: number;
  /** How events get parked in this step (see the header). */
  parkMode: "explicit" | "exhaust" | "none";
  pHold: number;
  pPark: number;
  pRetry: number;
  pSkip: number;
  delays: boolean;
  end: "unsubscribe" | "stop";
  /** Appended to `sentinelStream` first: fillers, then the sentinel (last). */
  sentinelStream: string;
  sentinelEvents: EventData[];
  /** Parked events the pending replay offers (0: none pending). */
  replays: number;
  /** A second consumer tries to join (the group takes one at most). */
  second: boolean;
  maxRetryCount: number;
  holdBudget: number;
  /** Stream groups with eager checkpoints: the group's first revision and the sentinel's. */
  checkpoint: { initialFrom: number; last: number } | undefined;
}

/** What the consumer does with a delivery; depends on (step seed, event id, retryCount) only. */
function decide(
  plan: ConsumePlan,
  id: string,
  retryCount: number,
  replay: boolean,
  heldSoFar: number,
): Action {
  if (id === plan.sentinelEvents.at(-1)!.id) return "ack";
  const u = unit(plan.seed, id, retryCount, "hold");
  if (retryCount === 0 && !replay && u < plan.pHold)
    return heldSoFar < plan.holdBudget ? "hold" : "ack";
  const v = unit(plan.seed, id, retryCount, "act");
  if (v < plan.pPark) return plan.parkMode === "explicit" && retryCount === 0 ? "park" : "ack";
  if (v < plan.pPark + plan.pRetry) {
    if (retryCount + 1 > plan.maxRetryCount) return plan.parkMode === "exhaust" ? "retry" : "ack";
    if (plan.parkMode !== "exhaust" && plan.delays && unit(plan.seed, id, retryCount, "d") < 0.3)
      return "delay";
    return "retry";
  }
  if (v < plan.pPark + plan.pRetry + plan.pSkip) return "skip";
  return "ack";
}

/** One consume step on one target (see the header); `reference`: the first target's answer. */
async function consume(
  t: Target,
  plan: ConsumePlan,
  reference: { info?: unknown } | undefined,
): Promise<unknown> {
  const key = groupKey(plan.source, plan.group);
  const state = stateOf(t, key);
  const ps = t.client.persistentSubscriptions;
  const sentinelId = plan.sentinelEvents.at(-1)!.id;
  const appended = await t.client.appendToStream(plan.sentinelStream, plan.sentinelEvents, {
    timeoutMs: OP_TIMEOUT_MS,
  });
  remember(t, appended.position, `${plan.sentinelStream}@${appended.nextExpectedVersion}`);

  const violations: string[] = [];
  const deliveries: string[] = [];
  const firstOrder: string[] = [];
  const replayed: string[] = [];
  const settling: Promise<unknown>[] = [];
  /** Retries asked for: event id -> the retryCount its redelivery carries. */
  const awaiting = new Map<string, number>();
  const heldEvents: PersistentEvent[] = [];
  const heldBefore = new Map(state.held);
  /** What the pending replay offers: the first parked events, in the order parked. */
  const toReplay = state.parked.slice(0, plan.replays);
  const replayedIds: string[] = [];
  state.held.clear();
  let sentinelSeen = false;
  let second: unknown;
  let timedOut: string | undefined;

  const sub: PersistentSubscription = ps.subscribe(plan.source, plan.group, {
    bufferSize: plan.bufferSize,
  });
  const it = sub[Symbol.asyncIterator]();
  const deadline = Date.now() + SETTLE_MS;
  try {
    while (!(sentinelSeen && awaiting.size === 0 && replayed.length >= plan.replays)) {
      const left = deadline - Date.now();
      let e: PersistentEvent;
      try {
        e = await nextEvent(it, Math.max(1, left));
      } catch (err) {
        if (err instanceof ChorusError) throw err;
        timedOut = `sentinel ${sentinelSeen}, retries awaited ${awaiting.size}, replays ${replayed.length} of ${plan.replays}`;
        break;
      }
      const ev = e.event;
      const k = `${ev.streamId}@${ev.revision}`;
      remember(t, ev.position, k);
      const r = e.retryCount;
      const parkedAt = state.parked.indexOf(ev.id);
      const replay = parkedAt >= 0;
      if (state.done.has(ev.id)) violations.push(`${k} delivered again after its ack (r=${r})`);
      const expected = awaiting.get(ev.id);
      if (expected !== undefined) {
        if (r !== expected)
          violations.push(`${k} redelivered with retryCount ${r}, not ${expected}`);
        awaiting.delete(ev.id);
      } else if (replay) {
        if (plan.replays === 0) violations.push(`${k} delivered while parked, without a replay`);
        state.parked.splice(parkedAt, 1);
        replayed.push(k);
        replayedIds.push(ev.id);
      } else if (r !== 0) {
        violations.push(`${k} delivered with retryCount ${r} without a retry asked for`);
      }
      if (r === 0 && expected === undefined && !replay) firstOrder.push(k);
      heldBefore.delete(ev.id);
      const action = decide(plan, ev.id, r, replay, heldEvents.length);
      deliveries.push(`${k} ${ev.id.slice(0, 8)} r=${r} ${action}`);
      if (ev.id === sentinelId) sentinelSeen = true;
      switch (action) {
        case "ack":
          state.done.add(ev.id);
          settling.push(sub.ack(e));
          break;
        case "skip":
          state.done.add(ev.id);
          settling.push(sub.nack("skip", "skipped by the test", e));
          break;
        case "park":
          state.parked.push(ev.id);
          settling.push(sub.nack("park", "parked by the test", e));
          break;
        case "retry":
        case "delay":
          if (r + 1 > plan.maxRetryCount) state.parked.push(ev.id);
          else awaiting.set(ev.id, r + 1);
          settling.push(
            sub.nack(
              "retry",
              "retried by the test",
              e,
              action === "delay" ? { delayMs: randomInt(() => unit(plan.seed, ev.id), 5, 40) } : {},
            ),
          );
          break;
        case "hold":
          heldEvents.push(e);
          state.held.set(ev.id, Number(ev.revision));
          break;
      }
    }
    // Held from before and not offered again: the group lost them.
    for (const id of heldBefore.keys()) violations.push(`held event ${id} not offered again`);
    if (plan.second) {
      second = await outcome(async () => {
        const other = ps.subscribe(plan.source, plan.group, { bufferSize: 1 });
        const joined = new Promise<string>((resolve) =>
          other.once("confirmed", () => resolve("joined")),
        );
        try {
          return await Promise.race([
            joined,
            nextEvent(other[Symbol.asyncIterator](), OP_TIMEOUT_MS).then(() => "joined"),
          ]);
        } finally {
          await other.unsubscribe();
        }
      });
    }
    // Every ack and nack durable before the consumer leaves.
    const failed = (await Promise.allSettled(settling)).filter((s) => s.status === "rejected");
    if (failed.length > 0) violations.push(`${failed.length} acks / nacks failed`);
    if (plan.end === "stop" && heldEvents.length > 0) {
      await sub.nack("stop", "stopped by the test", heldEvents.at(-1)!);
      await sub.finished;
    } else {
      await sub.unsubscribe();
    }
  } catch (err) {
    await sub.unsubscribe();
    return errorOutcome(err);
  }

  // At rest: no consumer, and (stream groups with eager checkpoints) the checkpoint before the
  // first held event, or on the sentinel when none is held.
  let expectCheckpoint: string | undefined;
  if (plan.checkpoint !== undefined) {
    const minHeld = Math.min(...state.held.values());
    expectCheckpoint =
      state.held.size === 0
        ? String(plan.checkpoint.last)
        : minHeld > plan.checkpoint.initialFrom
          ? String(minHeld - 1)
          : "none";
  }
  const view = () =>
    outcome(async () =>
      infoView(t, await ps.getInfo(plan.source, plan.group, { timeoutMs: OP_TIMEOUT_MS })),
    );
  const info = (await settle(view, (v) => {
    if (reference !== undefined) return isDeepStrictEqual(v, reference.info);
    const i = v as { status?: string; consumers?: number; lastCheckpoint?: string };
    return (
      i.status === "Idle" &&
      i.consumers === 0 &&
      (expectCheckpoint === undefined || i.lastCheckpoint === expectCheckpoint)
    );
  })) as { parkedCount?: number; lastCheckpoint?: string };
  if (reference === undefined && expectCheckpoint !== undefined)
    expect(info.lastCheckpoint, `${t.label}: the checkpoint at rest`).toBe(expectCheckpoint);
  if (info.parkedCount !== undefined && info.parkedCount !== state.parked.length)
    violations.push(`parkedCount ${info.parkedCount}, but ${state.parked.length} parked`);
  if (replayed.length > 0) {
    // The replay ends when the parked stream's start moves past what it offered: until then
    // the group refuses another replay.
    const parked = `$persistent-${plan.source}::${plan.group}-parked`;
    // A stream all of whose events are truncated away reads as not found after a soft
    // delete (the group's streams are deleted with a group of the same name before).
    const readable = async () => {
      const n = await outcome(async () => {
        let count = 0;
        for await (const e of t.client.readStream(parked, { timeoutMs: OP_TIMEOUT_MS }))
          if (e.event !== undefined) count++;
        return count;
      });
      return isDeepStrictEqual(n, { error: "STREAM_NOT_FOUND" }) ? 0 : n;
    };
    const n = await settle(readable, (count) => count === state.parked.length);
    if (n !== state.parked.length)
      violations.push(
        `the parked stream holds ${JSON.stringify(n)} events after the replay, not ${state.parked.length}`,
      );
  }
  deliveries.sort();
  if (!isDeepStrictEqual(replayedIds, toReplay))
    violations.push(
      `replayed ${replayedIds.join(",")}, not the first ${plan.replays} parked: ${toReplay.join(",")}`,
    );
  return { deliveries, firstOrder, replayed, info, second, violations, timedOut };
}

/** A step of the sequence: what it does, and how to run it on one target. */
interface Op {
  describe: string;
  run(target: Target, reference: unknown): Promise<unknown>;
  /** Learns from the reference's answer. */
  learn?(answer: unknown): void;
}

/** A group key the generator picked, and its model when the group exists. */
interface Picked {
  source: string;
  group: string;
  key: string;
  model: GroupModel | undefined;
}

class Generator {
  /** Events in each stream (every append succeeds). */
  readonly length = new Map<string, number>(STREAMS.map((s) => [s, 0]));
  /** Keys of events whose position every target learned from its append. */
  readonly known: string[] = [];
  readonly groups = new Map<string, GroupModel>();
  #counter = 0;

  constructor(private readonly random: Random) {}

  #events(stream: string, count: number, type?: string): EventData[] {
    return Array.from({ length: count }, () =>
      jsonEvent({
        id: seededUuid(this.random),
        type: type ?? pick(this.random, TYPES),
        data: { n: this.#counter++ },
      }),
    );
  }

  #appended(stream: string, count: number): number {
    const last = this.length.get(stream)! + count - 1;
    this.length.set(stream, last + 1);
    this.known.push(`${stream}@${last}`);
    return last;
  }

  #settings(source: string): GroupModel["settings"] {
    const r = this.random;
    const readBatchSize = randomInt(r, 1, 3);
    const s: GroupModel["settings"] = {
      consumerStrategy: pick(r, ["RoundRobin", "DispatchToSingle", "Pinned"] as const),
      messageTimeoutMs: r() < 0.5 ? 0 : 600_000,
      maxRetryCount: randomInt(r, 0, 2),
      readBatchSize,
      historyBufferSize: readBatchSize + randomInt(r, 1, 4),
      liveBufferSize: randomInt(r, 1, 5),
      maxSubscriberCount: r() < 0.3 ? 1 : 0,
      ...(r() < 0.7 ? EAGER : NEVER),
    };
    if (source === "$all") s.filter = pick(r, FILTERS).filter;
    return s;
  }

  #anyKey(): Picked {
    const source = pick(this.random, SOURCES);
    const group = pick(this.random, GROUPS);
    const key = groupKey(source, group);
    return { source, group, key, model: this.groups.get(key) };
  }

  /** A key of an existing group most of the time. */
  #existingKey(): Picked {
    const existing = [...this.groups.values()];
    if (existing.length > 0 && this.random() < 0.85) {
      const m = pick(this.random, existing);
      return { source: m.source, group: m.group, key: groupKey(m.source, m.group), model: m };
    }
    return this.#anyKey();
  }

  next(): Op {
    const r = this.random();
    if (r < 0.2) return this.#append();
    if (r < 0.3) return this.#create();
    // Rarely: the next consumer of an updated group waits REJOIN_GRACE_MS (500 ms) on each target.
    if (r < 0.32) return this.#update();
    if (r < 0.36) return this.#delete();
    if (r < 0.7) return this.consume();
    if (r < 0.8) return this.#replay();
    if (r < 0.92) return this.#getInfo();
    return this.#list();
  }

  #append(): Op {
    const stream = pick(this.random, STREAMS);
    const events = this.#events(stream, randomInt(this.random, 1, 3));
    const last = this.#appended(stream, events.length);
    return {
      describe: `append ${stream} ${events.length} (to ${last})`,
      run: (t) =>
        outcome(async () => {
          const res = await t.client.appendToStream(stream, events, { timeoutMs: OP_TIMEOUT_MS });
          remember(t, res.position, `${stream}@${res.nextExpectedVersion}`);
          return String(res.nextExpectedVersion);
        }),
    };
  }

  #create(): Op {
    const { source, group, key, model } = this.#anyKey();
    const settings: Settings = this.#settings(source);
    const r = this.random();
    let startKey: string | undefined;
    let initialFrom = 0;
    const length = this.length.get(source) ?? 0;
    if (r < 0.45) settings.startFrom = "start";
    else if (r < 0.65) {
      settings.startFrom = "end";
      initialFrom = length;
    } else if (source !== "$all") {
      initialFrom = randomInt(this.random, 0, length + 2);
      settings.startFrom = BigInt(initialFrom);
    } else if (this.known.length > 0) startKey = pick(this.random, this.known);
    const full = settings as GroupModel["settings"];
    return {
      describe: `create ${key} ${JSON.stringify({ ...settings, startFrom: startKey ?? String(settings.startFrom) })}`,
      run: (t) =>
        outcome(async () => {
          const s = { ...settings };
          if (startKey !== undefined) s.startFrom = t.positionOf.get(startKey)!;
          await t.client.persistentSubscriptions.create(source, group, s, {
            timeoutMs: OP_TIMEOUT_MS,
          });
          // A group created afresh: nothing done, parked or held yet.
          t.groups.delete(key);
          return "created";
        }),
      learn: (answer) => {
        if (answer !== "created") {
          expect(model, `create ${key} refused: ${JSON.stringify(answer)}`).toBeDefined();
          return;
        }
        expect(model, `create ${key} of an existing group`).toBeUndefined();
        this.groups.set(key, {
          source,
          group,
          settings: full,
          initialFrom,
          eager: full.checkpointAfterMs === 0,
          parkedCount: 0,
          replay: undefined,
        });
      },
    };
  }

  #update(): Op {
    const { source, group, key } = this.#existingKey();
    const all = this.#settings(source);
    const r = this.random;
    const change: Settings = {};
    if (r() < 0.4) change.maxRetryCount = all.maxRetryCount;
    if (r() < 0.3) change.readBatchSize = all.readBatchSize; // may reach historyBufferSize: refused
    if (r() < 0.3) {
      change.readBatchSize = all.readBatchSize;
      change.historyBufferSize = all.historyBufferSize;
    }
    if (r() < 0.3) change.liveBufferSize = all.liveBufferSize;
    if (r() < 0.3) change.consumerStrategy = all.consumerStrategy;
    if (r() < 0.2) change.maxSubscriberCount = all.maxSubscriberCount;
    if (r() < 0.3) Object.assign(change, r() < 0.5 ? EAGER : NEVER);
    if (source === "$all" && r() < 0.4) {
      const f = pick(r, FILTERS).filter;
      change.filter = f ?? {};
    }
    return {
      describe: `update ${key} ${JSON.stringify(change)}`,
      run: (t) =>
        outcome(async () => {
          await t.client.persistentSubscriptions.update(source, group, change, {
            timeoutMs: OP_TIMEOUT_MS,
          });
          return "updated";
        }),
      learn: (answer) => {
        const m = this.groups.get(key);
        if (answer !== "updated" || m === undefined) return;
        const { filter, ...rest } = change;
        Object.assign(m.settings, rest);
        if (filter !== undefined)
          m.settings.filter = Object.keys(filter).length === 0 ? undefined : filter;
        m.eager = m.settings.checkpointAfterMs === 0;
        // The group is loaded again from its streams: a replay in its memory is gone.
        m.replay = undefined;
      },
    };
  }

  #delete(): Op {
    const { source, group, key } = this.#existingKey();
    return {
      describe: `delete ${key}`,
      run: (t) =>
        outcome(async () => {
          await t.client.persistentSubscriptions.delete(source, group, {
            timeoutMs: OP_TIMEOUT_MS,
          });
          t.groups.delete(key);
          return "deleted";
        }),
      learn: (answer) => {
        if (answer === "deleted") this.groups.delete(key);
      },
    };
  }

  #replay(): Op {
    const { source, group, key } = this.#existingKey();
    const stopAt = this.random() < 0.5 ? undefined : randomInt(this.random, 1, 3);
    return {
      describe: `replayParked ${key} stopAt ${stopAt}`,
      run: (t) =>
        outcome(async () => {
          await t.client.persistentSubscriptions.replayParked(source, group, {
            stopAt,
            timeoutMs: OP_TIMEOUT_MS,
          });
          return "replaying";
        }),
      learn: (answer) => {
        const m = this.groups.get(key);
        if (answer !== "replaying" || m === undefined || m.replay !== undefined) return;
        const n = Math.min(stopAt ?? Infinity, m.parkedCount);
        m.replay = n > 0 ? n : undefined;
      },
    };
  }

  #getInfo(): Op {
    const { source, group, key } = this.#existingKey();
    return {
      describe: `getInfo ${key}`,
      run: (t) =>
        outcome(async () =>
          infoView(
            t,
            await t.client.persistentSubscriptions.getInfo(source, group, {
              timeoutMs: OP_TIMEOUT_MS,
            }),
          ),
        ),
    };
  }

  #list(): Op {
    const source = this.random() < 0.5 ? undefined : pick(this.random, SOURCES);
    return {
      describe: `list ${source ?? "all"}`,
      run: (t) =>
        outcome(async () =>
          (await t.client.persistentSubscriptions.list(source, { timeoutMs: OP_TIMEOUT_MS })).map(
            (i) => infoView(t, i),
          ),
        ),
    };
  }

  /** A consume step on a group (`on`: that one). */
  consume(on?: GroupModel): Op {
    const r = this.random;
    const picked = on ?? this.#existingKey().model;
    const source = picked?.source ?? pick(r, SOURCES);
    const group = picked?.group ?? pick(r, GROUPS);
    const key = groupKey(source, group);
    const m = this.groups.get(key);
    if (m === undefined) {
      return {
        describe: `consume ${key} (no such group)`,
        run: (t) =>
          outcome(async () => {
            const sub = t.client.persistentSubscriptions.subscribe(source, group);
            try {
              await nextEvent(sub[Symbol.asyncIterator](), OP_TIMEOUT_MS);
              return "delivered";
            } finally {
              await sub.unsubscribe();
            }
          }),
      };
    }
    const s = m.settings;
    const replays = m.replay ?? 0;
    const multiRound = replays > s.historyBufferSize;
    const bufferSize = pick(r, [1, 2, 3, 50]);
    const modes = ["explicit", "exhaust", "none"] as const;
    const parkMode = multiRound ? "none" : pick(r, modes);
    // The sentinel: on the group's stream (after fillers up to where the group starts), or on
    // a stream the `$all` group's filter passes.
    const sentinelStream =
      source === "$all"
        ? FILTERS.find((f) => isDeepStrictEqual(f.filter, s.filter))!.stream
        : source;
    const length = this.length.get(sentinelStream)!;
    const fillers = source === "$all" ? 0 : Math.max(0, m.initialFrom - length);
    const sentinelEvents = [
      ...this.#events(sentinelStream, fillers),
      ...this.#events(sentinelStream, 1, SENTINEL_TYPE),
    ];
    const last = this.#appended(sentinelStream, sentinelEvents.length);
    const plan: ConsumePlan = {
      source,
      group,
      seed: Math.floor(r() * 2 ** 31),
      bufferSize,
      parkMode,
      pHold: r() < 0.5 ? 0.25 : 0,
      pPark: parkMode === "explicit" ? 0.2 : 0,
      pRetry: parkMode === "exhaust" ? 0.5 : 0.2,
      pSkip: 0.1,
      delays: r() < 0.3,
      end: r() < 0.3 ? "stop" : "unsubscribe",
      sentinelStream,
      sentinelEvents,
      replays,
      second: s.maxSubscriberCount === 1 && r() < 0.5,
      maxRetryCount: s.maxRetryCount,
      holdBudget: Math.min(bufferSize, s.historyBufferSize, s.liveBufferSize) - 1,
      checkpoint: source !== "$all" && m.eager ? { initialFrom: m.initialFrom, last } : undefined,
    };
    m.replay = undefined;
    return {
      describe: `consume ${key} ${JSON.stringify({ ...plan, sentinelEvents: sentinelEvents.length, source: undefined, group: undefined })}`,
      run: (t, reference) => consume(t, plan, reference as { info?: unknown } | undefined),
      learn: (answer) => {
        const info = (answer as { info?: { parkedCount?: number } }).info;
        if (info?.parkedCount !== undefined) m.parkedCount = info.parkedCount;
      },
    };
  }

  /** Consume steps for the groups with a replay pending (it would not survive a restart). */
  drain(): Op[] {
    return [...this.groups.values()]
      .filter((m) => m.replay !== undefined)
      .map((m) => this.consume(m));
  }
}

describe("the backends run persistent subscription groups alike", () => {
  it.each(SEEDS)(
    "seed %i",
    async (seed) => {
      const random = seededRandom(seed);
      const targets: Target[] = [];
      try {
        const backends: Backend[] = ["mem-db", "disk", "in-process:disk"];
        if (BACKENDS.includes("postgres")) backends.push("postgres");
        for (const backend of backends) {
          const node = await startBackendNode(backend);
          const settings = () =>
            clientSettings(backend, node).withReconnectionDelay(20).withDiscoverDelay(50).build();
          const target: Target = {
            label: backend,
            client: new ChorusClient(settings()),
            stop: () => node.stop(),
            restart:
              backend === "mem-db"
                ? undefined
                : async () => {
                    target.client = await killAndRestartBackendNode(
                      backend,
                      node,
                      target.client,
                      settings,
                    );
                  },
            eventAt: new Map(),
            positionOf: new Map(),
            groups: new Map(),
          };
          targets.push(target);
        }
        if (CLUSTER) {
          // A 3-node cluster on disk: its leader is killed and restarted between rounds, and
          // the groups move to the next leader, rebuilt from the replicated log.
          const cluster: TestCluster = await startCluster({ size: 3 });
          targets.push({
            label: "cluster",
            client: new ChorusClient(
              `${cluster.connectionString}&reconnectionDelay=20&discoverDelay=50`,
            ),
            stop: () => cluster.stop(),
            restart: async () => {
              const leader = await cluster.leader({ timeoutMs: 30_000 });
              await cluster.kill(leader);
              await cluster.restart(leader);
            },
            eventAt: new Map(),
            positionOf: new Map(),
            groups: new Map(),
          });
        }
        const gen = new Generator(random);
        const step = async (i: number, op: Op) => {
          const answers: unknown[] = [];
          const startedMs = Date.now();
          for (const t of targets) answers.push(await op.run(t, answers[0]));
          if (TRACE) {
            process.stderr.write(
              `${i} ${Date.now() - startedMs}ms ${op.describe} -> ${JSON.stringify(answers[0]).slice(0, process.env.CHORUS_DIFF_TRACE === "full" ? undefined : 400)}\n`,
            );
          }
          for (let k = 0; k < targets.length; k++) {
            const v = (answers[k] as { violations?: string[] } | undefined)?.violations;
            expect(
              v ?? [],
              `op ${i} (${op.describe}): ${targets[k]!.label} broke the contract`,
            ).toEqual([]);
          }
          for (let k = 1; k < targets.length; k++) {
            expect(
              answers[k],
              `op ${i} (${op.describe}): ${targets[k]!.label} vs ${targets[0]!.label}`,
            ).toEqual(answers[0]);
          }
          op.learn?.(answers[0]);
        };
        for (let i = 0; i < OPS; i++) {
          if (i > 0 && i % ROUND_OPS === 0) {
            for (const op of gen.drain()) await step(i, op);
            for (const t of targets) await t.restart?.();
          }
          await step(i, gen.next());
        }
        // Every group consumed once more after a last restart: nothing done comes back.
        for (const op of gen.drain()) await step(OPS, op);
        for (const t of targets) await t.restart?.();
        for (const m of [...gen.groups.values()]) await step(OPS, gen.consume(m));
      } finally {
        for (const t of targets) {
          await t.client.close();
          await t.stop();
        }
      }
    },
    300_000,
  );
});
