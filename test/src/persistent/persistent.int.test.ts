// Persistent subscriptions against a real single node: management, delivery, acks, nacks,
// parking, timeouts, strategies, and durability across a SIGKILL + restart; on the disk log
// and on PostgreSQL (where a restart is a new instance on the same database).
import {
  ChorusClient,
  ConnectionSettings,
  InvalidArgumentError,
  jsonEvent,
  NotAuthenticatedError,
  PersistentSubscriptionExistsError,
  PersistentSubscriptionNotFoundError,
  SubscriptionDroppedError,
  type PersistentEvent,
  type PersistentSubscription,
} from "@chorus/client";
import { waitFor, type TestNode } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLIENT_DISK_BACKENDS, closeBackends, startBackendNode } from "../backends.js";
import { RawClient } from "../server/helpers.js";
import { nextEvent } from "../iterate.js";
import { connect } from "./connect.js";

type StartedNode = TestNode;
let node: StartedNode;
let client: ChorusClient;

async function append(stream: string, count: number, from = 0): Promise<void> {
  await client.appendToStream(
    stream,
    Array.from({ length: count }, (_, i) => jsonEvent({ type: "Test", data: { n: from + i } })),
  );
}

/** Takes `count` events from a subscription (with a deadline). */
async function take(
  sub: PersistentSubscription,
  count: number,
  timeoutMs = 10_000,
): Promise<PersistentEvent[]> {
  const out: PersistentEvent[] = [];
  const it = sub[Symbol.asyncIterator]();
  const deadline = Date.now() + timeoutMs;
  while (out.length < count) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`took ${out.length} of ${count} events before the deadline`);
    out.push(await nextEvent(it, left));
  }
  return out;
}

const n = (e: PersistentEvent): number => (e.event.data as { n: number }).n;

/** A raw native-protocol connection to a node, for what the SDK never sends. */
function raw(n: StartedNode): Promise<RawClient> {
  return RawClient.connect(`ws://${n.extTcp.host}:${n.extTcp.port}/`);
}

/** The log positions of a stream's events, in order. */
async function positionsOf(c: ChorusClient, stream: string): Promise<number[]> {
  const out: number[] = [];
  for await (const e of c.readStream(stream, { fromRevision: "start" }))
    out.push(Number(e.event.position));
  return out;
}

/** The n of every event a raw consumer has been sent on correlation id `id`. */
function rawDelivered(c: RawClient, id: number): number[] {
  return c
    .framesFor(id)
    .flatMap((f) =>
      (f.persistentEvents?.events ?? []).map(
        (e) => (JSON.parse(Buffer.from(e.event?.data ?? []).toString()) as { n: number }).n,
      ),
    );
}

afterAll(closeBackends);

describe.each(CLIENT_DISK_BACKENDS)("persistent subscriptions (%s)", (backend) => {
  beforeAll(async () => {
    node = await startBackendNode(backend);
    client = connect(node, backend);
  });

  afterAll(async () => {
    await client?.close();
    await node?.stop();
  });

  describe("group management", () => {
    it("creates, lists, reads info of, updates and deletes a group; bad settings change nothing", async () => {
      const ps = client.persistentSubscriptions;
      await ps.create("mgmt-a", "g1", { consumerStrategy: "Pinned", messageTimeoutMs: 5_000 });
      await expect(ps.create("mgmt-a", "g1")).rejects.toBeInstanceOf(
        PersistentSubscriptionExistsError,
      );
      await expect(
        ps.create("mgmt-a", "g2", { readBatchSize: 500, historyBufferSize: 500 }),
      ).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(
        ps.create("mgmt-a", "g2", { readBatchSize: 600 }), // above the default historyBufferSize
      ).rejects.toThrow(/readBatchSize \(600\) must be below historyBufferSize \(500\)/);
      await expect(
        ps.create("mgmt-a", "g2", { consumerStrategy: "Random" as never }),
      ).rejects.toBeInstanceOf(InvalidArgumentError);
      await ps.create("$all", "everything");

      const info = await ps.getInfo("mgmt-a", "g1");
      expect(info.settings.consumerStrategy).toBe("Pinned");
      expect(info.settings.messageTimeoutMs).toBe(5_000);
      expect(info.settings.maxRetryCount).toBe(10);
      expect(info.settings.historyBufferSize).toBe(500);
      expect(info.status).toBe("Idle");

      const names = (await ps.list()).map((g) => `${g.streamId}/${g.group}`);
      expect(names).toContain("mgmt-a/g1");
      expect(names).toContain("$all/everything");
      expect(names).not.toContain("mgmt-a/g2");
      expect((await ps.list("mgmt-a")).map((g) => g.group)).toEqual(["g1"]);

      await ps.update("mgmt-a", "g1", { messageTimeoutMs: 1_000 });
      const updated = await ps.getInfo("mgmt-a", "g1");
      expect(updated.settings.messageTimeoutMs).toBe(1_000);
      expect(updated.settings.consumerStrategy).toBe("Pinned");

      await ps.delete("mgmt-a", "g1");
      await expect(ps.getInfo("mgmt-a", "g1")).rejects.toBeInstanceOf(
        PersistentSubscriptionNotFoundError,
      );
      await expect(ps.delete("mgmt-a", "g1")).rejects.toBeInstanceOf(
        PersistentSubscriptionNotFoundError,
      );
      await expect(ps.update("nope", "nope", { maxRetryCount: 1 })).rejects.toBeInstanceOf(
        PersistentSubscriptionNotFoundError,
      );
      await ps.delete("$all", "everything");
    });

    it("ends a consumer's iterator with PersistentSubscriptionNotFoundError when its group is deleted or missing", async () => {
      const ps = client.persistentSubscriptions;
      const missing = ps.subscribe("nowhere", "nobody");
      await expect(take(missing, 1)).rejects.toBeInstanceOf(PersistentSubscriptionNotFoundError);

      await ps.create("del-s", "g");
      const sub = ps.subscribe("del-s", "g");
      await new Promise<void>((resolve) => sub.once("confirmed", resolve));
      const dropped = new Promise<Error>((resolve) => sub.once("dropped", resolve));
      await ps.delete("del-s", "g");
      expect(await dropped).toBeInstanceOf(PersistentSubscriptionNotFoundError);
      await expect(take(sub, 1)).rejects.toBeInstanceOf(PersistentSubscriptionNotFoundError);
    });
  });

  describe("delivery", () => {
    it("round-robins over two consumers; every event is handled once; acks are durable", async () => {
      const ps = client.persistentSubscriptions;
      await append("rr", 40);
      await ps.create("rr", "workers", { checkpointAfterMs: 0, minCheckpointCount: 1 });
      const a = ps.subscribe("rr", "workers", { bufferSize: 5 });
      const b = ps.subscribe("rr", "workers", { bufferSize: 5 });
      const seen = new Map<number, string>();
      const consume = async (sub: PersistentSubscription, name: string) => {
        for await (const e of sub) {
          expect(seen.has(n(e))).toBe(false);
          seen.set(n(e), name);
          await sub.ack(e);
          if (seen.size === 40) return;
        }
      };
      const done = Promise.race([consume(a, "a"), consume(b, "b")]);
      await waitFor(() => seen.size === 40, { timeoutMs: 10_000 });
      await done;
      expect([...seen.values()].filter((v) => v === "a").length).toBeGreaterThan(0);
      expect([...seen.values()].filter((v) => v === "b").length).toBeGreaterThan(0);
      await waitFor(async () => (await ps.getInfo("rr", "workers")).lastCheckpoint === 39n, {
        timeoutMs: 5_000,
      });
      const info = await ps.getInfo("rr", "workers");
      expect(info.totalAcked).toBe(40);
      expect(info.inFlight).toBe(0);
      // The node's /metrics reports the group as getInfo does.
      const metrics = await (await fetch(`http://${node.httpEndpoint}/metrics`)).text();
      const gauge = (name: string) =>
        metrics.match(new RegExp(`^${name}\\{stream="rr",group="workers"\\} (\\d+)$`, "m"))?.[1];
      expect(gauge("chorus_persistent_consumers")).toBe(String(info.consumers.length));
      expect(gauge("chorus_persistent_acked")).toBe("40");
      expect(gauge("chorus_persistent_delivered")).toBe(String(info.totalDelivered));
      expect(gauge("chorus_persistent_in_flight")).toBe("0");
      expect(gauge("chorus_persistent_parked")).toBe("0");
      await a.unsubscribe();
      await b.unsubscribe();
    });

    it("redelivers on nack retry with retryCount + 1, parks after maxRetryCount, and replays parked events", async () => {
      const ps = client.persistentSubscriptions;
      await append("poison", 3);
      await ps.create("poison", "g", { maxRetryCount: 2 });
      const sub = ps.subscribe("poison", "g", { bufferSize: 10 });
      const counts: number[] = [];
      const it = sub[Symbol.asyncIterator]();
      // Event 1 is poison: retried twice, then parked. 0 and 2 are acknowledged.
      while (counts.length < 3) {
        const e = await nextEvent(it);
        if (n(e) === 1) {
          counts.push(e.retryCount);
          await sub.nack("retry", "poison", e);
        } else {
          await sub.ack(e);
        }
      }
      expect(counts).toEqual([0, 1, 2]);
      await waitFor(async () => (await ps.getInfo("poison", "g")).parkedCount === 1, {
        timeoutMs: 5_000,
      });
      await ps.replayParked("poison", "g");
      const replayed = await nextEvent(it);
      expect(n(replayed)).toBe(1);
      await sub.ack(replayed);
      await waitFor(async () => (await ps.getInfo("poison", "g")).parkedCount === 0, {
        timeoutMs: 5_000,
      });
      await sub.unsubscribe();
    });

    it("replays many parked events in rounds of what the group may hold, each once, in the order they were parked", async () => {
      const ps = client.persistentSubscriptions;
      await append("parked-rounds", 25);
      await ps.create("parked-rounds", "g", { historyBufferSize: 10, readBatchSize: 5 });
      const sub = ps.subscribe("parked-rounds", "g", { bufferSize: 100 });
      const it = sub[Symbol.asyncIterator]();
      for (let i = 0; i < 25; i++)
        await sub.nack("park", "parked for the test", await nextEvent(it));
      await waitFor(async () => (await ps.getInfo("parked-rounds", "g")).parkedCount === 25, {
        timeoutMs: 10_000,
      });
      await ps.replayParked("parked-rounds", "g");
      // The first round: historyBufferSize events, and none after them until they are done
      // (a consumer with room for 100 would get all 25 at once from a replay in one go).
      const round: PersistentEvent[] = [];
      for (let i = 0; i < 10; i++) round.push(await nextEvent(it));
      expect(round.map(n)).toEqual(Array.from({ length: 10 }, (_, i) => i));
      const next = it.next();
      let timer: NodeJS.Timeout | undefined;
      const early = await Promise.race([
        next.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 1_000))),
      ]);
      clearTimeout(timer);
      expect(early).toBe(false);
      for (const e of round) await sub.ack(e);
      // The next rounds, as the events are done.
      const rest: number[] = [];
      let e = (await next).value as PersistentEvent;
      for (;;) {
        rest.push(n(e));
        await sub.ack(e);
        if (rest.length === 15) break;
        e = await nextEvent(it);
      }
      expect(rest).toEqual(Array.from({ length: 15 }, (_, i) => 10 + i));
      await waitFor(async () => (await ps.getInfo("parked-rounds", "g")).parkedCount === 0, {
        timeoutMs: 10_000,
      });
      await sub.unsubscribe();
    });

    it("redelivers an event not acknowledged within messageTimeoutMs, with retryCount 1", async () => {
      const ps = client.persistentSubscriptions;
      await append("slow", 1);
      await ps.create("slow", "g", { messageTimeoutMs: 300 });
      const sub = ps.subscribe("slow", "g");
      const [first, again] = await take(sub, 2);
      expect(first!.retryCount).toBe(0);
      expect(again!.retryCount).toBe(1);
      expect(again!.event.id).toBe(first!.event.id);
      await sub.ack(again!);
      await sub.unsubscribe();
    });

    it("hands a crashed consumer's unacknowledged events to another consumer", async () => {
      const ps = client.persistentSubscriptions;
      await append("crash", 6);
      await ps.create("crash", "g", { consumerStrategy: "DispatchToSingle" });
      const other = connect(node, backend);
      const victim = other.persistentSubscriptions.subscribe("crash", "g", { bufferSize: 10 });
      const held = await take(victim, 6);
      await victim.ack(held.slice(0, 2));
      // The victim's connection goes away without acknowledging the rest.
      await other.close();
      const survivor = ps.subscribe("crash", "g", { bufferSize: 10 });
      const redelivered = await take(survivor, 4);
      expect(redelivered.map(n).sort()).toEqual([2, 3, 4, 5]);
      await survivor.ack(redelivered);
      await survivor.unsubscribe();
    });

    it("nack stop ends the consumer; its events go to the next one", async () => {
      const ps = client.persistentSubscriptions;
      await append("stop", 3);
      await ps.create("stop", "g");
      const first = ps.subscribe("stop", "g", { bufferSize: 10 });
      const held = await take(first, 3);
      await first.nack("stop", "shutting this worker down", held[0]!);
      await waitFor(() => first.isEnded, { timeoutMs: 5_000, message: "the consumer ended" });
      const next = ps.subscribe("stop", "g", { bufferSize: 10 });
      const again = await take(next, 3);
      expect(again.map(n).sort()).toEqual([0, 1, 2]);
      await next.ack(again);
      await next.unsubscribe();
    });

    it("ends with NotAuthenticatedError when the node refuses the consumer's credentials", async () => {
      const secured = await startBackendNode(backend, { adminPassword: "changeit" });
      const admin = new ChorusClient(
        ConnectionSettings.create()
          .withSingleNode(secured.httpEndpoint)
          .withDefaultCredentials({ username: "admin", password: "changeit" })
          .build(),
      );
      try {
        await admin.persistentSubscriptions.create("secured", "g");
        const sub = admin.persistentSubscriptions.subscribe("secured", "g", {
          credentials: { username: "admin", password: "wrong" },
        });
        const dropped = new Promise<Error>((resolve) => sub.once("dropped", resolve));
        await expect(take(sub, 1)).rejects.toBeInstanceOf(NotAuthenticatedError);
        expect(await dropped).toBeInstanceOf(NotAuthenticatedError);
      } finally {
        await admin.close();
        await secured.stop();
      }
    });

    it("an ack after the subscription ended rejects without an unhandled rejection", async () => {
      const ps = client.persistentSubscriptions;
      await append("late-ack", 1);
      await ps.create("late-ack", "g");
      const sub = ps.subscribe("late-ack", "g");
      const [e] = await take(sub, 1);
      await sub.unsubscribe();
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on("unhandledRejection", onUnhandled);
      try {
        void sub.ack(e!);
        void sub.nack("retry", "late", e!);
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
      expect(unhandled).toEqual([]);
      await expect(sub.ack(e!)).rejects.toBeInstanceOf(SubscriptionDroppedError);
    });

    it("Pinned sends every event of a stream to the same consumer", async () => {
      const ps = client.persistentSubscriptions;
      for (let s = 0; s < 8; s++) {
        await client.appendToStream(
          `pin-${s}`,
          Array.from({ length: 5 }, (_, i) => jsonEvent({ type: "Test", data: { n: s * 10 + i } })),
        );
      }
      await ps.create("$all", "pinned", { consumerStrategy: "Pinned" });
      const subs = [0, 1, 2].map(() => ps.subscribe("$all", "pinned", { bufferSize: 50 }));
      await Promise.all(subs.map((s) => new Promise<void>((r) => s.once("confirmed", r))));
      const owner = new Map<string, number>();
      let pinEvents = 0;
      const loops = subs.map(async (sub, i) => {
        for await (const e of sub) {
          void sub.ack(e);
          if (!e.event.streamId.startsWith("pin-")) continue;
          const o = owner.get(e.event.streamId);
          expect(o === undefined || o === i, `${e.event.streamId} went to ${o} and ${i}`).toBe(
            true,
          );
          owner.set(e.event.streamId, i);
          pinEvents++;
        }
      });
      await waitFor(() => pinEvents >= 40, { timeoutMs: 10_000 });
      for (const s of subs) await s.unsubscribe();
      await Promise.all(loops);
      expect(owner.size).toBe(8);
      expect(new Set(owner.values()).size).toBeGreaterThan(1);
    });
  });

  describe("acks and claims of events the group never sent", () => {
    it("ignores an ack of an event the group has not handed out: it is still delivered", async () => {
      const ps = client.persistentSubscriptions;
      const stream = `never-sent-ack-${randomUUID()}`;
      await append(stream, 12);
      const positions = await positionsOf(client, stream);
      // The group holds at most two events in memory, so the eleventh is not read yet.
      await ps.create(stream, "g", { readBatchSize: 1, historyBufferSize: 2, liveBufferSize: 2 });
      const x = await raw(node);
      try {
        const joined = await x.request({
          persistentSubscribe: { streamId: stream, group: "g", bufferSize: 1 },
        });
        expect(joined.persistentConfirmed).toBeTruthy();
        const id = Number(joined.correlationId);
        await waitFor(() => rawDelivered(x, id).length === 1, { timeoutMs: 5_000 });
        // An ack of event 10, which this consumer was never sent.
        x.send({ correlationId: id, persistentAck: { positions: [positions[10] as number] } });
        await x.request({ ping: {} });
        x.send({ correlationId: id, unsubscribe: {} });
      } finally {
        await x.close();
      }
      const sub = ps.subscribe(stream, "g", { bufferSize: 20 });
      const got: PersistentEvent[] = [];
      const iter = sub[Symbol.asyncIterator]();
      while (got.length < 12) {
        const e = await nextEvent(iter).catch((err: unknown) => {
          throw new Error(`got ${got.map(n).join(",")}: ${String(err)}`);
        });
        got.push(e);
        await sub.ack(e);
      }
      expect(got.map(n).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      await sub.unsubscribe();
    });

    it("refuses held positions of events the group could not have sent: they are delivered", async () => {
      const ps = client.persistentSubscriptions;
      const stream = `never-sent-held-${randomUUID()}`;
      await append(stream, 10);
      const positions = await positionsOf(client, stream);
      await ps.create(stream, "g"); // just created: nobody can hold its events
      const y = await raw(node);
      try {
        const joined = await y.request({
          persistentSubscribe: {
            streamId: stream,
            group: "g",
            bufferSize: 10,
            heldPositions: positions,
          },
        });
        expect(joined.persistentConfirmed).toBeTruthy();
        const id = Number(joined.correlationId);
        await waitFor(() => rawDelivered(y, id).length === 10, { timeoutMs: 5_000 });
        expect(rawDelivered(y, id).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      } finally {
        await y.close();
      }
    });
  });

  describe("durability", () => {
    it("a replay of parked events interrupted by a SIGKILL and restart never offers the replayed and acknowledged ones again", async () => {
      const own = await startBackendNode(backend);
      const c1 = connect(own, backend);
      try {
        const stream = `replay-dur-${randomUUID()}`;
        await c1.appendToStream(
          stream,
          Array.from({ length: 10 }, (_, i) => jsonEvent({ type: "Test", data: { n: i } })),
        );
        const ps1 = c1.persistentSubscriptions;
        await ps1.create(stream, "g", { checkpointAfterMs: 100, minCheckpointCount: 1 });
        const sub = ps1.subscribe(stream, "g", { bufferSize: 10 });
        const it1 = sub[Symbol.asyncIterator]();
        const next10 = async (): Promise<PersistentEvent[]> => {
          const out: PersistentEvent[] = [];
          while (out.length < 10) out.push(await nextEvent(it1));
          return out;
        };
        await sub.nack("park", "poison", await next10());
        await waitFor(async () => (await ps1.getInfo(stream, "g")).parkedCount === 10, {
          timeoutMs: 5_000,
        });
        await ps1.replayParked(stream, "g");
        const replayed = await next10();
        const acked = replayed.filter((e) => n(e) < 6);
        await sub.ack(acked); // durable once this resolves
        await own.kill();
        await c1.close();
        await own.restart();
        const c2 = connect(own, backend);
        try {
          const ps2 = c2.persistentSubscriptions;
          expect((await ps2.getInfo(stream, "g")).parkedCount).toBe(4);
          const again = ps2.subscribe(stream, "g", { bufferSize: 20 });
          await new Promise<void>((r) => again.once("confirmed", r));
          await ps2.replayParked(stream, "g");
          // A sentinel after the replay: replayed events go first, so whatever comes before the
          // sentinel is everything the replay offers.
          await c2.appendToStream(stream, jsonEvent({ type: "Test", data: { n: 100 } }));
          const seen: number[] = [];
          const it = again[Symbol.asyncIterator]();
          for (;;) {
            const e = await nextEvent(it);
            await again.ack(e);
            if (n(e) === 100) break;
            seen.push(n(e));
          }
          expect(seen.sort((a, b) => a - b)).toEqual([6, 7, 8, 9]);
          await waitFor(async () => (await ps2.getInfo(stream, "g")).parkedCount === 0, {
            timeoutMs: 5_000,
          });
          await again.unsubscribe();
        } finally {
          await c2.close();
        }
      } finally {
        await c1.close();
        await own.stop();
      }
    });

    it("after a SIGKILL and restart, acknowledged events never come back; unacknowledged ones do", async () => {
      const own = await startBackendNode(backend);
      const c1 = connect(own, backend);
      try {
        await c1.appendToStream(
          "dur",
          Array.from({ length: 30 }, (_, i) => jsonEvent({ type: "Test", data: { n: i } })),
        );
        // Checkpoints rarely, so the acks beyond the checkpoint carry the state.
        await c1.persistentSubscriptions.create("dur", "g", {
          checkpointAfterMs: 60_000,
          minCheckpointCount: 1_000,
          maxCheckpointCount: 1_000,
        });
        const sub = c1.persistentSubscriptions.subscribe("dur", "g", { bufferSize: 30 });
        const got = await take(sub, 30);
        const acked = got.filter((e) => n(e) % 3 !== 0);
        await sub.ack(acked);
        // The consumer crashes with ten events unacknowledged; a new one joins after the restart.
        await own.kill();
        await c1.close();
        await own.restart();
        const c2 = connect(own, backend);
        try {
          const again = c2.persistentSubscriptions.subscribe("dur", "g", { bufferSize: 30 });
          const redelivered = await take(again, 10);
          expect(redelivered.map(n).sort((x, y) => x - y)).toEqual([
            0, 3, 6, 9, 12, 15, 18, 21, 24, 27,
          ]);
          await again.ack(redelivered);
          await again.unsubscribe();
        } finally {
          await c2.close();
        }
      } finally {
        await c1.close();
        await own.stop();
      }
    });
  });
});
