import { afterEach, describe, expect, it } from "vitest";
import { ClientClosedError, TimeoutError } from "../errors.js";
import { ConnectionSettings } from "../settings/connection-settings.js";
import { FakeNode } from "../test-support/fake-node.js";
import type { TimerHandle, Timers } from "../types.js";
import { Connection } from "./connection.js";
import type { GossipReader } from "../discovery/gossip.js";

/** Real timers that count what is pending, to prove nothing is left behind. */
function countingTimers(): Timers & { pending(): number } {
  const live = new Set<TimerHandle>();
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const h = setTimeout(() => {
        live.delete(h);
        fn();
      }, ms);
      live.add(h);
      return h;
    },
    clearTimeout(h) {
      live.delete(h);
      clearTimeout(h as NodeJS.Timeout);
    },
    pending: () => live.size,
  };
}

const nodes: FakeNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

describe("Connection state machine", () => {
  it("connects, loses the node, reconnects, and leaves no timer behind after close()", async () => {
    const n = await FakeNode.start();
    nodes.push(n);
    const timers = countingTimers();
    const settings = ConnectionSettings.create()
      .withSingleNode(n.httpEndpoint)
      .withReconnectionDelay(10)
      .withHeartbeat({ intervalMs: 20, timeoutMs: 200 })
      .withTimers(timers)
      .build();
    const conn = new Connection(settings);
    const statuses: string[] = [];
    conn.on("status", (s) => statuses.push(s));
    const node = await conn.connect();
    expect(node.state).toBe("Leader");
    const reconnected = new Promise((r) => conn.once("connected", r));
    n.dropConnections();
    await reconnected;
    expect(statuses).toEqual(["connecting", "connected", "reconnecting", "connected"]);
    await conn.close();
    expect(conn.status).toBe("closed");
    expect(timers.pending()).toBe(0);
    await expect(conn.session()).rejects.toBeInstanceOf(ClientClosedError);
  });

  it("queues requests while no node is reachable and times them out after queueTimeout", async () => {
    // gossip that never answers: discovery is still running when the queue deadline hits
    const hanging: GossipReader = {
      read: (_e, { signal }) =>
        new Promise((_resolve, reject) =>
          signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true }),
        ),
      close: async () => undefined,
    };
    const timers = countingTimers();
    const settings = ConnectionSettings.create()
      .withSingleNode("127.0.0.1:1")
      .withGossipTimeout(60_000)
      .withTimers(timers)
      .build();
    const conn = new Connection(settings, { gossipReader: hanging });
    const err = await conn.session({ queueTimeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toMatch(/queue timeout of 50 ms \(status: connecting\)/);
    await conn.close();
    expect(timers.pending()).toBe(0);
  });

  it("gives up after limitReconnectionsTo and fails waiting requests", async () => {
    const n = await FakeNode.start();
    const settings = ConnectionSettings.create()
      .withSingleNode(n.httpEndpoint)
      .limitReconnectionsTo(2)
      .withReconnectionDelay(5)
      .withMaxDiscoverAttempts(1)
      .build();
    const conn = new Connection(settings);
    await conn.connect();
    const attempts: number[] = [];
    conn.on("reconnecting", (a) => attempts.push(a));
    const waiting = new Promise((r) => conn.once("disconnected", r)).then(() => conn.session());
    await n.close();
    const err = await waiting.catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/gave up after 2 reconnection attempt\(s\)/);
    expect(attempts).toEqual([1, 2]);
    expect(conn.status).toBe("idle");
    await conn.close();
  });
});
