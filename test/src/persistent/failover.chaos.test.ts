// Persistent subscriptions on a three-node cluster under leader kills and pauses, with the
// subscription checker of quality.md: every event written is handled; an event whose ack was
// confirmed is never handed over again (to any consumer); a consumer that stays up is never
// handed an event twice; with every consumer connected, a consumer sees a stream's events in
// order and Pinned keeps each stream on one consumer.
import {
  ChorusClient,
  jsonEvent,
  type ConsumerStrategy,
  type PersistentSubscription,
} from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";

const CLIENT_OPTIONS =
  "&operationTimeout=30000&reconnectionDelay=20&discoverDelay=20&maxReconnections=10000" +
  "&maxDiscoverAttempts=1000&heartbeatInterval=200&heartbeatTimeout=1500";
const STREAMS = 6;
/** Leader kills in the long run (the target); fewer for the other strategies. */
const KILLS = Number(process.env.CHORUS_CHAOS_KILLS ?? 10);

let cluster: TestCluster | undefined;
const clients: ChorusClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await cluster?.stop();
  cluster = undefined;
});

function client(c: TestCluster): ChorusClient {
  const cl = new ChorusClient(`${c.connectionString}${CLIENT_OPTIONS}`);
  clients.push(cl);
  return cl;
}

interface Handed {
  consumer: number;
  streamId: string;
  revision: bigint;
  retryCount: number;
  /** Order of handing over, across consumers. */
  seq: number;
  /** Consumers that had joined again by then. */
  rejoins: number;
}

/** Consumers that record every event handed to them and ack it without awaiting. */
function startConsumers(c: TestCluster, group: string, count: number) {
  const handed = new Map<string, Handed[]>();
  /** Event id -> when its ack was confirmed durable (ms). */
  const confirmed = new Map<string, number>();
  const handedAfterConfirm: string[] = [];
  const subs: PersistentSubscription[] = [];
  let seq = 0;
  /** Counts consumers leaving and joining again; handings in different counts are not compared. */
  let rejoins = 0;
  const loops = Array.from({ length: count }, async (_, i) => {
    const sub = client(c).persistentSubscriptions.subscribe("$all", group, {
      bufferSize: 20,
      consumerName: `consumer-${i}`,
    });
    subs.push(sub);
    sub.on("reconnecting", () => rejoins++);
    sub.on("resubscribed", () => rejoins++);
    for await (const e of sub) {
      if (!e.event.streamId.startsWith("ps-")) {
        void sub.ack(e);
        continue;
      }
      const id = e.event.id;
      if (confirmed.has(id)) handedAfterConfirm.push(id);
      const list = handed.get(id) ?? [];
      list.push({
        consumer: i,
        streamId: e.event.streamId,
        revision: e.event.revision,
        retryCount: e.retryCount,
        seq: seq++,
        rejoins,
      });
      handed.set(id, list);
      sub.ack(e).then(
        () => confirmed.set(id, Date.now()),
        () => undefined, // sent again after a reconnect; the end state is checked below
      );
    }
  });
  return {
    handed,
    confirmed,
    handedAfterConfirm,
    /** How many handings so far. */
    get seq() {
      return seq;
    },
    async stop() {
      await Promise.all(subs.map((s) => s.unsubscribe()));
      await Promise.all(loops);
    },
  };
}

/** Appends batches round-robin over the test streams until stopped; returns the event ids it saw acknowledged. */
function startWriter(c: TestCluster) {
  const writer = client(c);
  let stopping = false;
  let acknowledged = 0;
  let i = 0;
  const loop = (async () => {
    while (!stopping && i < 5_000) {
      const stream = `ps-${i % STREAMS}`;
      const events = Array.from({ length: 5 }, (_, k) => jsonEvent({ type: "T", data: { i, k } }));
      i++;
      try {
        await writer.appendToStream(stream, events);
        acknowledged += events.length;
      } catch {
        // unknown outcome: the end state decides
      }
    }
  })();
  return {
    get acknowledged() {
      return acknowledged;
    },
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

async function streamEvents(c: TestCluster): Promise<Map<string, string[]>> {
  const reader = client(c);
  const out = new Map<string, string[]>();
  for (let s = 0; s < STREAMS; s++) {
    const ids: string[] = [];
    try {
      for await (const e of reader.readStream(`ps-${s}`)) ids.push(e.event.id);
    } catch (err) {
      if ((err as { code?: string }).code !== "STREAM_NOT_FOUND") throw err;
    }
    out.set(`ps-${s}`, ids);
  }
  return out;
}

async function runScenario(
  strategy: ConsumerStrategy,
  faults: (c: TestCluster, progress: () => Promise<void>) => Promise<void>,
  options: { linkProxies?: boolean; group?: string } = {},
): Promise<void> {
  const c = (cluster = await startCluster({ size: 3, linkProxies: options.linkProxies === true }));
  const group = options.group ?? strategy;
  const admin = client(c);
  await admin.persistentSubscriptions.create("$all", group, {
    consumerStrategy: strategy,
    checkpointAfterMs: 200,
    minCheckpointCount: 10,
    maxCheckpointCount: 200,
  });
  const consumers = startConsumers(c, group, 3);
  const writer = startWriter(c);
  const progress = async () => {
    const before = writer.acknowledged;
    await waitFor(() => writer.acknowledged >= before + 50, {
      timeoutMs: 30_000,
      message: "writes continue",
    });
  };
  await progress();
  await faults(c, progress);
  // Once every consumer is back, Pinned places each stream on one consumer (by name).
  await waitFor(
    async () => (await admin.persistentSubscriptions.getInfo("$all", group)).consumers.length === 3,
    { timeoutMs: 30_000, message: "every consumer joined again" },
  );
  const settled = consumers.seq;
  await progress();
  await writer.stop();

  // Every event in the streams is handled by some consumer, once the group catches up.
  const written = await streamEvents(c);
  const all = [...written.values()].flat();
  await waitFor(() => all.every((id) => consumers.handed.has(id)), {
    timeoutMs: 60_000,
    message: "every event handled",
  });
  await waitFor(() => all.every((id) => consumers.confirmed.has(id)), {
    timeoutMs: 30_000,
    message: "every ack confirmed",
  });
  await consumers.stop();

  // Checker.
  const duplicates: string[] = [];
  for (const [id, list] of consumers.handed) {
    const perConsumer = new Map<number, number>();
    for (const h of list) perConsumer.set(h.consumer, (perConsumer.get(h.consumer) ?? 0) + 1);
    // Consumers stay up and never nack: nothing may be handed to one of them twice.
    for (const n of perConsumer.values()) if (n > 1) duplicates.push(id);
  }
  expect(duplicates, "events handed twice to a consumer that stayed up").toEqual([]);
  // Across consumers an event is handled twice only when its holder joins the new leader
  // later than the rejoin grace, so only across a reconnect: never two handings with no
  // consumer rejoining between them. (How many cross a reconnect depends on how slowly the
  // consumers rejoin: 0 on a quiet machine, more on a loaded one; it is not a bound.)
  const acrossWithoutRejoin = [...consumers.handed]
    .filter(([, l]) => l.length > 1 && new Set(l.map((h) => h.rejoins)).size === 1)
    .map(([id]) => id);
  expect(acrossWithoutRejoin, "events handled by two consumers with no rejoin between").toEqual([]);
  expect(consumers.handedAfterConfirm, "events handed over after their ack was confirmed").toEqual(
    [],
  );
  // Within a stream, each consumer sees revisions in increasing order once every consumer is
  // connected. (While consumers rejoin after a failover, the first to rejoin may be handed an
  // earlier event that another consumer held before: competing consumers do not promise order.)
  const seen = [...consumers.handed.values()]
    .flat()
    .filter((h) => h.seq >= settled)
    .sort((a, b) => a.seq - b.seq);
  const last = new Map<string, bigint>();
  const outOfOrder: string[] = [];
  for (const h of seen) {
    // A consumer joining again (e.g. after a missed heartbeat on a loaded machine) may take
    // over events another one held: compare only handings between the same rejoins.
    const key = `${h.rejoins}/${h.consumer}/${h.streamId}`;
    const prev = last.get(key);
    if (prev !== undefined && h.revision <= prev)
      outOfOrder.push(`${key}: ${h.revision} after ${prev}`);
    last.set(key, h.revision);
  }
  expect(outOfOrder, "events of a stream handed out of order").toEqual([]);
  if (strategy === "Pinned") {
    // With every consumer connected, each stream is handled by one consumer.
    const owners = new Map<string, Set<number>>();
    for (const list of consumers.handed.values())
      for (const h of list) {
        if (h.seq < settled) continue;
        const stream = `${h.streamId} (after ${h.rejoins} rejoins)`;
        const set = owners.get(stream) ?? new Set<number>();
        set.add(h.consumer);
        owners.set(stream, set);
      }
    for (const [stream, set] of owners) expect(set.size, `consumers of ${stream}`).toBe(1);
  }
  const info = await admin.persistentSubscriptions.getInfo("$all", group);
  expect(info.parkedCount).toBe(0);
}

describe("persistent subscriptions through failover", () => {
  it(`RoundRobin: no loss and no duplicate across ${KILLS} leader kills`, async () => {
    await runScenario("RoundRobin", async (c, progress) => {
      for (let k = 0; k < KILLS; k++) {
        const leader = await c.leader({ timeoutMs: 20_000 });
        await c.kill(leader);
        await progress();
        await c.restart(leader);
      }
    });
  });

  it("DispatchToSingle: no loss and no duplicate across leader kills and a leader pause", async () => {
    await runScenario("DispatchToSingle", async (c, progress) => {
      for (let k = 0; k < 2; k++) {
        const leader = await c.leader({ timeoutMs: 20_000 });
        await c.kill(leader);
        await progress();
        await c.restart(leader);
      }
      const leader = await c.leader({ timeoutMs: 20_000 });
      c.nodes[leader]!.pause();
      await progress();
      c.nodes[leader]!.resume();
      await progress();
    });
  });

  it("Pinned: no loss, no duplicate, one consumer per stream across leader kills and a pause", async () => {
    await runScenario("Pinned", async (c, progress) => {
      const leader = await c.leader({ timeoutMs: 20_000 });
      c.nodes[leader]!.pause();
      await progress();
      c.nodes[leader]!.resume();
      await progress();
      for (let k = 0; k < 2; k++) {
        const l = await c.leader({ timeoutMs: 20_000 });
        await c.kill(l);
        await progress();
        await c.restart(l);
      }
    });
  });

  it.each(["RoundRobin", "DispatchToSingle", "Pinned"] as const)(
    "%s: no loss and no duplicate when the leader is cut off from both followers, then healed",
    async (strategy) => {
      await runScenario(
        strategy,
        async (c, progress) => {
          for (let k = 0; k < 2; k++) {
            const leader = await c.leader({ timeoutMs: 20_000 });
            const others = [0, 1, 2].filter((i) => i !== leader);
            c.partition([leader], others);
            await progress();
            // The majority side elected another leader: the fault took effect.
            await waitFor(
              async () => (await Promise.all(others.map((i) => c.stateOf(i)))).includes("Leader"),
              { timeoutMs: 20_000, message: "the majority elects a leader" },
            );
            c.heal();
            await progress();
          }
        },
        { linkProxies: true, group: `partitioned-${strategy}` },
      );
    },
  );
});
