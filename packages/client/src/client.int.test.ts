import { chorus } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import { ChorusClient } from "./client.js";
import {
  DiscoveryError,
  StreamNotFoundError,
  TimeoutError,
  WrongExpectedVersionError,
} from "./errors.js";
import { jsonEvent, binaryEvent } from "./operations/events.js";
import { FakeNode, FakeStore } from "./test-support/fake-node.js";
import { fast, inTestNodes, waitFor } from "./test-support/fixtures.js";
import type { MemberInfo, ResolvedEvent } from "./types.js";

const { node, client } = inTestNodes();

async function collect(iterable: AsyncIterable<ResolvedEvent>): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

function once<T>(
  emitter: { once(event: string, fn: (arg: T) => void): unknown },
  event: string,
): Promise<T> {
  return new Promise((resolve) => emitter.once(event, resolve));
}

describe("ChorusClient against an in-test node", () => {
  it("connects lazily, appends and reads back with bigints and parsed JSON", async () => {
    const n = await node();
    const c = client(`chorus://${n.httpEndpoint}`);
    const connected = once<MemberInfo>(c, "connected");
    const r1 = await c.appendToStream("order-1", jsonEvent({ type: "Placed", data: { id: 1 } }), {
      expectedVersion: "no_stream",
    });
    expect(r1).toEqual({ nextExpectedVersion: 0n, position: 1n });
    expect((await connected).instanceId).toBe("node-1");
    const r2 = await c.appendToStream(
      "order-1",
      [
        jsonEvent({ type: "Paid", data: { amount: 5 } }),
        binaryEvent({ type: "Blob", data: new Uint8Array([7]) }),
      ],
      { expectedVersion: 0n },
    );
    expect(r2.nextExpectedVersion).toBe(2n);
    const events = await collect(c.readStream("order-1"));
    expect(events.map((e) => [e.event.revision, e.event.type])).toEqual([
      [0n, "Placed"],
      [1n, "Paid"],
      [2n, "Blob"],
    ]);
    expect(events[0]!.event.data).toEqual({ id: 1 });
    expect(events[2]!.event.data).toEqual(new Uint8Array([7]));
  });

  it("throws WrongExpectedVersionError with the versions", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    await c.appendToStream("s", jsonEvent({ type: "A", data: 1 }));
    const err = await c
      .appendToStream("s", jsonEvent({ type: "A", data: 2 }), { expectedVersion: "no_stream" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect(err).toMatchObject({ streamId: "s", expectedVersion: "no_stream", actualVersion: 0n });
  });

  it("reads page by page, forwards and backwards, and throws StreamNotFoundError while iterating", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    for (let i = 0; i < 5; i++) await c.appendToStream("p", jsonEvent({ type: "E", data: i }));
    const forwards = await collect(c.readStream("p", { pageSize: 2 }));
    expect(forwards.map((e) => e.event.data)).toEqual([0, 1, 2, 3, 4]);
    const backwards = await collect(
      c.readStream("p", { direction: "backwards", pageSize: 2, maxCount: 3 }),
    );
    expect(backwards.map((e) => e.event.data)).toEqual([4, 3, 2]);
    const all = await collect(c.readAll({ pageSize: 2 }));
    expect(all.map((e) => e.event.position)).toEqual([1n, 2n, 3n, 4n, 5n]);
    const reads = n.received.filter(
      (f) => f.readStream?.streamId === "p" && f.readStream.direction === chorus.Direction.FORWARDS,
    );
    expect(reads.map((f) => [f.readStream!.fromRevision, f.readStream!.maxCount])).toEqual([
      [0, 2],
      [2, 2],
      [4, 2],
    ]);
    const iterator = c.readStream("missing")[Symbol.asyncIterator]();
    await expect(iterator.next()).rejects.toBeInstanceOf(StreamNotFoundError);
  });

  it("resumes a read at the first event not yet received when the connection drops", async () => {
    let dropped = false;
    const n = await node({
      intercept: (frame, ws) => {
        if (frame.readStream && frame.readStream.fromRevision === 2 && !dropped) {
          dropped = true;
          ws.terminate();
          return true;
        }
        return false;
      },
    });
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    for (let i = 0; i < 5; i++) await c.appendToStream("r", jsonEvent({ type: "E", data: i }));
    const events = await collect(c.readStream("r", { pageSize: 2 }));
    expect(events.map((e) => e.event.data)).toEqual([0, 1, 2, 3, 4]);
    expect(dropped).toBe(true);
  });

  it("retries an append whose reply was lost with the same event ids (idempotent)", async () => {
    let lost = 0;
    const n = await node({
      intercept: (frame, ws) => {
        if (frame.append && lost === 0) {
          lost++;
          n.store.append(frame.append); // applied, but the reply never arrives
          ws.terminate();
          return true;
        }
        return false;
      },
    });
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    const reconnecting = once<number>(c, "reconnecting");
    const result = await c.appendToStream("idem", jsonEvent({ type: "A", data: 1 }), {
      expectedVersion: "no_stream",
    });
    expect(await reconnecting).toBe(1);
    expect(result).toEqual({ nextExpectedVersion: 0n, position: 1n });
    const appends = n.received.filter((f) => f.append);
    expect(appends).toHaveLength(2);
    expect(appends[1]!.append!.events![0]!.id).toBe(appends[0]!.append!.events![0]!.id);
    expect(n.store.stream("idem")).toHaveLength(1);
  });

  it("follows NOT_LEADER to the leader it names", async () => {
    const store = new FakeStore();
    const leader = await node({ store, instanceId: "leader" });
    const follower = await node({
      store,
      instanceId: "follower",
      state: "Follower",
      intercept: (frame, _ws, send) => {
        if (!frame.append) return false;
        send({
          correlationId: frame.correlationId,
          notHandled: {
            reason: chorus.NotHandled.Reason.NOT_LEADER,
            leaderTcp: { host: "127.0.0.1", port: leader.tcpPort },
            leaderHttp: { host: "127.0.0.1", port: leader.httpPort },
          },
        });
        return true;
      },
    });
    // The follower's gossip only knows itself, so the client lands there first.
    const c = client(fast().withSingleNode(follower.httpEndpoint).build());
    const changes: string[] = [];
    c.on("leaderChanged", ({ current }) => changes.push(current.instanceId));
    const r = await c.appendToStream("x", jsonEvent({ type: "A", data: 1 }), {
      requireLeader: false,
    });
    expect(r.nextExpectedVersion).toBe(0n);
    expect(c.node?.instanceId).toBe("leader");
    expect(changes).toContain("leader");
    expect(leader.received.some((f) => f.append)).toBe(true);
  });

  it("declares a silent connection dead after the heartbeat timeout and reconnects", async () => {
    const n = await node({ noPong: true, intercept: (f) => !!f.ping });
    const c = client(
      fast()
        .withSingleNode(n.httpEndpoint)
        .withHeartbeat({ intervalMs: 50, timeoutMs: 100 })
        .build(),
    );
    await c.connect();
    const reason = await once<Error>(c, "disconnected");
    expect(reason.message).toMatch(/heartbeat timeout: no pong .* within 100 ms/);
    await once(c, "connected");
  });

  it("reports each seed's cause when discovery fails", async () => {
    const busy = await node();
    busy.gossipStatus = 503;
    const gone = await FakeNode.start();
    const goneEndpoint = gone.httpEndpoint;
    await gone.close();
    const c = client(fast().withGossipSeeds([busy.httpEndpoint, goneEndpoint]).build());
    const err = (await c.connect().catch((e: unknown) => e)) as DiscoveryError;
    expect(err).toBeInstanceOf(DiscoveryError);
    const causes = Object.fromEntries(err.causes.map((cause) => [cause.seed, cause.error.message]));
    expect(causes[busy.httpEndpoint]).toMatch(/HTTP 503/);
    expect(causes[goneEndpoint]).toMatch(/ECONNREFUSED/);
  });

  it("gives up with TimeoutError after timeoutMs, retries included", async () => {
    const n = await node({ intercept: (f) => !!f.append });
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    const started = Date.now();
    const err = await c
      .appendToStream("t", jsonEvent({ type: "A", data: 1 }), { timeoutMs: 200 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toBe("appendToStream timed out after 200 ms");
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("rejects with the signal's reason when aborted", async () => {
    const n = await node({ intercept: (f) => !!f.append });
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    const controller = new AbortController();
    const reason = new Error("stop it");
    const pending = c.appendToStream("t", jsonEvent({ type: "A", data: 1 }), {
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(reason), 50);
    await expect(pending).rejects.toBe(reason);
  });

  it("sends HTTP Basic credentials on the upgrade", async () => {
    const n = await node();
    const c = client(
      fast()
        .withSingleNode(n.httpEndpoint)
        .withDefaultCredentials({ username: "admin", password: "pw" })
        .build(),
    );
    await c.connect();
    expect(n.upgrades[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from("admin:pw").toString("base64")}`,
    );
  });

  it("stores and reads stream metadata in $$stream", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    expect(await c.getStreamMetadata("m")).toEqual({
      streamId: "m",
      metadata: {},
      metaRevision: undefined,
    });
    await c.setStreamMetadata("m", { maxCount: 10, truncateBefore: 2n });
    const meta = await c.getStreamMetadata("m");
    expect(meta).toEqual({
      streamId: "m",
      metadata: { maxCount: 10, truncateBefore: 2 },
      metaRevision: 0n,
    });
    expect(n.store.stream("$$m")[0]!.type).toBe("$metadata");
  });

  it("close() settles in-flight work, then closes the socket; later calls fail", async () => {
    const n = await node();
    const c = new ChorusClient(fast().withSingleNode(n.httpEndpoint).build());
    await c.connect();
    const append = c.appendToStream("c", jsonEvent({ type: "A", data: 1 }));
    const closed = once(c, "closed");
    await c.close();
    await closed;
    await expect(append).resolves.toMatchObject({ nextExpectedVersion: 0n });
    expect(c.status).toBe("closed");
    await waitFor(() => n.clients === 0);
    await expect(c.appendToStream("c", jsonEvent({ type: "A", data: 1 }))).rejects.toMatchObject({
      code: "CLIENT_CLOSED",
    });
  });
});

describe("subscriptions against an in-test node", () => {
  it("catches up, goes live, and resumes after a connection loss with no gap and no repeat", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    for (let i = 0; i < 3; i++) await c.appendToStream("sub", jsonEvent({ type: "E", data: i }));
    const sub = c.subscribeToStream("sub", { bufferSize: 4 });
    let caughtUp = 0;
    sub.on("caughtUp", () => caughtUp++);
    const seen: unknown[] = [];
    for await (const e of sub) {
      seen.push(e.event.data);
      if (seen.length === 3) {
        expect(caughtUp).toBe(1);
        n.dropConnections();
        await c.appendToStream("sub", jsonEvent({ type: "E", data: 3 }));
        await c.appendToStream("sub", jsonEvent({ type: "E", data: 4 }));
      }
      if (seen.length === 5) break;
    }
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(caughtUp).toBe(1);
    const subscribes = n.received.filter((f) => f.subscribe);
    expect(subscribes.length).toBeGreaterThanOrEqual(2);
    const resumed = subscribes[subscribes.length - 1]!.subscribe!;
    expect([resumed.start, resumed.afterRevision]).toEqual([
      chorus.SubscribeRequest.StartKind.AFTER,
      2,
    ]);
    // breaking out of the loop unsubscribed
    await waitFor(() => n.received.some((f) => f.unsubscribe));
    expect(sub.isEnded).toBe(true);
  });

  it("grants credit equal to the free buffer space and replenishes as the application consumes", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    for (let i = 0; i < 10; i++)
      await c.appendToStream("credit", jsonEvent({ type: "E", data: i }));
    const sub = c.subscribeToStream("credit", { bufferSize: 4 });
    const it = sub[Symbol.asyncIterator]();
    expect((await it.next()).value?.event.data).toBe(0);
    // the server may not have sent more than the 4 granted so far
    const subscribe = n.received.find((f) => f.subscribe)!;
    expect(subscribe.subscribe!.credit).toBe(4);
    const seen: unknown[] = [0];
    for (let i = 1; i < 10; i++) seen.push((await it.next()).value?.event.data);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const credits = n.received
      .filter((f) => f.subscriptionCredit)
      .map((f) => f.subscriptionCredit!.credit);
    expect(credits.length).toBeGreaterThan(0);
    expect(credits.every((k) => (k ?? 0) >= 1 && (k ?? 0) <= 4)).toBe(true);
    await sub.unsubscribe();
    expect((await it.next()).done).toBe(true);
  });

  it("subscribes to $all from the end: only events after the subscription", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).build());
    await c.appendToStream("a", jsonEvent({ type: "Old", data: 0 }));
    const sub = c.subscribeToAll({ fromPosition: "end" });
    await waitFor(() => n.received.some((f) => f.subscribe));
    await c.appendToStream("b", jsonEvent({ type: "New", data: 1 }));
    const it = sub[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.event.type).toBe("New");
    await sub.unsubscribe();
  });
});
