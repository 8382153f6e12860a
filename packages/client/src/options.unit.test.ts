/**
 * Every options object the public API takes refuses keys it does not know: a misspelt key per
 * entry point is an InvalidArgumentError naming the call and the key, thrown before anything
 * is sent; the right key still works.
 */
import type { FrameInit } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import type { ChorusClient } from "./client.js";
import { ChorusClient as Client } from "./client.js";
import { InvalidArgumentError, SubscriptionDroppedError } from "./errors.js";
import { jsonEvent } from "./operations/events.js";
import type { PersistentEvent } from "./persistent/subscription.js";
import { ConnectionSettings } from "./settings/connection-settings.js";
import type { FakeNode } from "./test-support/fake-node.js";
import { fast, inTestNodes } from "./test-support/fixtures.js";

const { node, client } = inTestNodes();

/** A fake node that also answers the persistent subscription management requests. */
async function persistentNode(): Promise<FakeNode> {
  return node({
    intercept: (frame, _ws, send: (f: FrameInit) => void) => {
      const correlationId = frame.correlationId;
      if (
        frame.persistentCreate ||
        frame.persistentUpdate ||
        frame.persistentDelete ||
        frame.persistentReplayParked
      ) {
        send({ correlationId, persistentDone: {} });
        return true;
      }
      if (frame.persistentList) {
        send({ correlationId, persistentListResult: { groups: [] } });
        return true;
      }
      if (frame.persistentGetInfo) {
        send({ correlationId, persistentInfoResult: { info: { streamId: "s-1", group: "g" } } });
        return true;
      }
      return false;
    },
  });
}

const EVENT = { event: { position: 1n }, retryCount: 0 } as unknown as PersistentEvent;
const any = (v: unknown) => v as never;

async function drain(iterable: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of iterable) n++;
  return n;
}

/** Runs `fn`; the error it threw synchronously ("throws") or the rejection of its promise ("rejects"). */
async function failureOf(
  fn: () => unknown,
): Promise<{ style: "throws" | "rejects"; err: unknown }> {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    return { style: "throws", err };
  }
  try {
    await result;
  } catch (err) {
    return { style: "rejects", err };
  }
  throw new Error("the call did not fail");
}

type Call = (c: ChorusClient) => unknown;

interface Case {
  /** The call and the offending key, as the message names them. */
  name: string;
  style: "throws" | "rejects";
  bad: Call;
  message: RegExp;
  good: (c: ChorusClient) => Promise<unknown>;
}

const S = "order-1";

const CASES: Case[] = [
  {
    name: 'appendToStream "expectedVersoin"',
    style: "rejects",
    bad: (c) =>
      c.appendToStream(S, jsonEvent({ type: "T", data: {} }), any({ expectedVersoin: "any" })),
    message:
      /^appendToStream: unknown option "expectedVersoin" \(known: .*\); did you mean "expectedVersion"\?$/,
    good: (c) =>
      c.appendToStream(S, jsonEvent({ type: "T", data: {} }), { expectedVersion: "any" }),
  },
  {
    name: 'appendToStream "credentials.usrname"',
    style: "rejects",
    bad: (c) =>
      c.appendToStream(
        S,
        jsonEvent({ type: "T", data: {} }),
        any({ credentials: { username: "a", password: "b", usrname: "a" } }),
      ),
    message:
      /^appendToStream: unknown option "credentials.usrname" .*did you mean "credentials.username"/,
    good: (c) =>
      c.appendToStream(S, jsonEvent({ type: "T", data: {} }), {
        credentials: { username: "a", password: "b" },
      }),
  },
  {
    name: "appendToStream options that are not an object",
    style: "rejects",
    bad: (c) => c.appendToStream(S, jsonEvent({ type: "T", data: {} }), any("no_stream")),
    message: /^appendToStream: options must be an object, got "no_stream"$/,
    good: (c) => c.appendToStream(S, jsonEvent({ type: "T", data: {} }), undefined),
  },
  {
    name: 'readStream "fromRevison"',
    style: "throws",
    bad: (c) => c.readStream(S, any({ fromRevison: "start" })),
    message: /^readStream: unknown option "fromRevison" .*did you mean "fromRevision"/,
    good: async (c) => {
      await c.appendToStream(S, jsonEvent({ type: "T", data: {} }));
      expect(await drain(c.readStream(S, { fromRevision: "start", maxCount: 1 }))).toBe(1);
    },
  },
  {
    name: 'readAll "fromPositon"',
    style: "throws",
    bad: (c) => c.readAll(any({ fromPositon: "start" })),
    message:
      /^readAll: unknown option "fromPositon" \(known: credentials, decodeJson, direction, filter, fromPosition, maxCount, pageSize, requireLeader, resolveLinks, signal, timeoutMs\); did you mean "fromPosition"\?$/,
    good: (c) => drain(c.readAll({ fromPosition: "start", maxCount: 10, pageSize: 5 })),
  },
  {
    name: "readAll null",
    style: "throws",
    bad: (c) => c.readAll(any(null)),
    message: /^readAll: options must be an object, got null$/,
    good: (c) => drain(c.readAll(undefined)),
  },
  {
    name: 'readAll "filter.streamNamePrefx"',
    style: "throws",
    bad: (c) => c.readAll(any({ filter: { streamNamePrefx: ["order-"] } })),
    message:
      /^readAll: unknown option "filter.streamNamePrefx" \(known: checkpointInterval, eventTypePrefix, eventTypeRegex, includeSystem, streamNamePrefix, streamNameRegex\); did you mean "filter.streamNamePrefix"\?$/,
    good: (c) =>
      drain(
        c.readAll({
          filter: { streamNamePrefix: ["order-"], eventTypePrefix: ["T"], includeSystem: false },
        }),
      ),
  },
  {
    name: 'readAll "filter.streamNameRegex" that does not compile',
    style: "throws",
    bad: (c) => c.readAll({ filter: { streamNameRegex: "^order-(" } }),
    message: /^readAll: filter.streamNameRegex is not a valid regular expression: /,
    good: (c) => drain(c.readAll({ filter: { streamNameRegex: "^order-" } })),
  },
  {
    name: 'readAll "filter.eventTypeRegex" beside eventTypePrefix',
    style: "throws",
    bad: (c) => c.readAll({ filter: { eventTypeRegex: "^T", eventTypePrefix: ["T"] } }),
    message: /^readAll: filter takes eventTypePrefix or eventTypeRegex, not both/,
    good: (c) => drain(c.readAll({ filter: { eventTypeRegex: "^T" } })),
  },
  {
    name: 'readAll "filter.checkpointInterval" (subscriptions only)',
    style: "throws",
    bad: (c) => c.readAll({ filter: { includeSystem: true, checkpointInterval: 10 } }),
    message: /^readAll: filter.checkpointInterval applies to subscribeToAll only/,
    good: (c) => drain(c.readAll({ filter: { includeSystem: true } })),
  },
  {
    name: 'deleteStream "hardd"',
    style: "rejects",
    bad: (c) => c.deleteStream(S, any({ hardd: true })),
    message: /^deleteStream: unknown option "hardd" .*did you mean "hard"/,
    good: async (c) => {
      await c.appendToStream(S, jsonEvent({ type: "T", data: {} }));
      await c.deleteStream(S, { hard: false, expectedVersion: "any" });
    },
  },
  {
    name: 'setStreamMetadata "expectedVerison"',
    style: "rejects",
    bad: (c) => c.setStreamMetadata(S, { maxCount: 5 }, any({ expectedVerison: "any" })),
    message:
      /^setStreamMetadata: unknown option "expectedVerison" .*did you mean "expectedVersion"/,
    good: (c) => c.setStreamMetadata(S, { maxCount: 5 }, { expectedVersion: "any" }),
  },
  {
    name: 'getStreamMetadata "timeout"',
    style: "rejects",
    bad: (c) => c.getStreamMetadata(S, any({ timeout: 5_000 })),
    message: /^getStreamMetadata: unknown option "timeout" .*did you mean "timeoutMs"/,
    good: (c) => c.getStreamMetadata(S, { timeoutMs: 5_000 }),
  },
  {
    name: 'getStreamMetadata "direction" (a readStream option it does not take)',
    style: "rejects",
    bad: (c) => c.getStreamMetadata(S, any({ direction: "forwards" })),
    message:
      /^getStreamMetadata: unknown option "direction" \(known: credentials, requireLeader, signal, timeoutMs\)$/,
    good: (c) => c.getStreamMetadata(S, { requireLeader: true }),
  },
  {
    name: 'subscribeToStream "fromRevison"',
    style: "throws",
    bad: (c) => c.subscribeToStream(S, any({ fromRevison: "end" })),
    message: /^subscribeToStream: unknown option "fromRevison" .*did you mean "fromRevision"/,
    good: (c) => c.subscribeToStream(S, { fromRevision: "end", bufferSize: 10 }).unsubscribe(),
  },
  {
    name: 'subscribeToAll "bufferSise"',
    style: "throws",
    bad: (c) => c.subscribeToAll(any({ bufferSise: 10 })),
    message: /^subscribeToAll: unknown option "bufferSise" .*did you mean "bufferSize"/,
    good: (c) => c.subscribeToAll({ fromPosition: "end", bufferSize: 10 }).unsubscribe(),
  },
  {
    name: 'subscribeToAll "filter.eventTypeRegex" too long',
    style: "throws",
    bad: (c) => c.subscribeToAll({ filter: { eventTypeRegex: "T".repeat(1_001) } }),
    message: /^subscribeToAll: filter.eventTypeRegex is 1001 characters long; at most 1000/,
    good: (c) => c.subscribeToAll({ filter: { eventTypeRegex: "T".repeat(1_000) } }).unsubscribe(),
  },
  {
    name: 'subscribeToAll "filter.checkpointInterval" 0',
    style: "throws",
    bad: (c) => c.subscribeToAll({ filter: { checkpointInterval: 0 } }),
    message:
      /^subscribeToAll: filter.checkpointInterval must be an integer in 1\.\.4294967295, got 0/,
    good: (c) => c.subscribeToAll({ filter: { checkpointInterval: 1_000 } }).unsubscribe(),
  },
  {
    name: 'connect "signl"',
    style: "rejects",
    bad: (c) => c.connect(any({ signl: new AbortController().signal })),
    message: /^connect: unknown option "signl" \(known: signal\); did you mean "signal"\?$/,
    good: (c) => c.connect({ signal: new AbortController().signal }),
  },
  {
    name: 'clusterMembers "signals"',
    style: "rejects",
    bad: (c) => c.clusterMembers(any({ signals: undefined })),
    message: /^clusterMembers: unknown option "signals" .*did you mean "signal"/,
    good: (c) => c.clusterMembers({}),
  },
  {
    name: 'persistentSubscriptions.create setting "messageTimeout"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.create(S, "g", any({ messageTimeout: 1_000 })),
    message:
      /^persistentSubscriptions.create: unknown setting "messageTimeout" .*did you mean "messageTimeoutMs"/,
    good: (c) => c.persistentSubscriptions.create(S, "g", { messageTimeoutMs: 1_000 }),
  },
  {
    name: 'persistentSubscriptions.create setting "filter.streamNamePrefixes"',
    style: "rejects",
    bad: (c) =>
      c.persistentSubscriptions.create("$all", "g", any({ filter: { streamNamePrefixes: ["o"] } })),
    message:
      /^persistentSubscriptions.create: unknown option "filter.streamNamePrefixes" .*did you mean "filter.streamNamePrefix"/,
    good: (c) =>
      c.persistentSubscriptions.create("$all", "g", { filter: { streamNamePrefix: ["o"] } }),
  },
  {
    name: 'persistentSubscriptions.create setting "filter.checkpointInterval"',
    style: "rejects",
    bad: (c) =>
      c.persistentSubscriptions.create("$all", "g", any({ filter: { checkpointInterval: 10 } })),
    message:
      /^persistentSubscriptions.create: filter.checkpointInterval does not apply to persistent subscription groups/,
    good: (c) =>
      c.persistentSubscriptions.create("$all", "g", { filter: { includeSystem: false } }),
  },
  {
    name: 'persistentSubscriptions.update setting "filter" on a stream group',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.update(S, "g", { filter: { eventTypePrefix: ["o"] } }),
    message: /^persistentSubscriptions.update: a filter applies to groups on "\$all" only/,
    good: (c) =>
      c.persistentSubscriptions.update("$all", "g", { filter: { eventTypePrefix: ["o"] } }),
  },
  {
    name: 'persistentSubscriptions.create option "requireLeadr"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.create(S, "g", {}, any({ requireLeadr: true })),
    message:
      /^persistentSubscriptions.create: unknown option "requireLeadr" .*did you mean "requireLeader"/,
    good: (c) => c.persistentSubscriptions.create(S, "g", {}, { requireLeader: true }),
  },
  {
    name: 'persistentSubscriptions.update setting "maxRetries"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.update(S, "g", any({ maxRetries: 3 })),
    message:
      /^persistentSubscriptions.update: unknown setting "maxRetries" \(known: .*maxRetryCount/,
    good: (c) => c.persistentSubscriptions.update(S, "g", { maxRetryCount: 3 }),
  },
  {
    name: 'persistentSubscriptions.update option "timeOutMs"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.update(S, "g", {}, any({ timeOutMs: 1_000 })),
    message:
      /^persistentSubscriptions.update: unknown option "timeOutMs" .*did you mean "timeoutMs"/,
    good: (c) => c.persistentSubscriptions.update(S, "g", {}, { timeoutMs: 1_000 }),
  },
  {
    name: 'persistentSubscriptions.delete "signl"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.delete(S, "g", any({ signl: undefined })),
    message: /^persistentSubscriptions.delete: unknown option "signl" .*did you mean "signal"/,
    good: (c) => c.persistentSubscriptions.delete(S, "g", { signal: undefined }),
  },
  {
    name: 'persistentSubscriptions.list "credential"',
    style: "rejects",
    bad: (c) =>
      c.persistentSubscriptions.list(S, any({ credential: { username: "a", password: "b" } })),
    message:
      /^persistentSubscriptions.list: unknown option "credential" .*did you mean "credentials"/,
    good: (c) =>
      c.persistentSubscriptions.list(S, { credentials: { username: "a", password: "b" } }),
  },
  {
    name: 'persistentSubscriptions.getInfo "requireleader"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.getInfo(S, "g", any({ requireleader: true })),
    message:
      /^persistentSubscriptions.getInfo: unknown option "requireleader" .*did you mean "requireLeader"/,
    good: (c) => c.persistentSubscriptions.getInfo(S, "g", { requireLeader: true }),
  },
  {
    name: 'persistentSubscriptions.replayParked "stopat"',
    style: "rejects",
    bad: (c) => c.persistentSubscriptions.replayParked(S, "g", any({ stopat: 10 })),
    message:
      /^persistentSubscriptions.replayParked: unknown option "stopat" .*did you mean "stopAt"/,
    good: (c) => c.persistentSubscriptions.replayParked(S, "g", { stopAt: 10 }),
  },
  {
    name: 'persistentSubscriptions.subscribe "buffersize"',
    style: "throws",
    bad: (c) => c.persistentSubscriptions.subscribe(S, "g", any({ buffersize: 10 })),
    message:
      /^persistentSubscriptions.subscribe: unknown option "buffersize" .*did you mean "bufferSize"/,
    good: (c) =>
      c.persistentSubscriptions
        .subscribe(S, "g", { bufferSize: 10, consumerName: "c" })
        .unsubscribe(),
  },
  {
    name: 'persistentSubscriptions.subscribe "credentials.role"',
    style: "throws",
    bad: (c) =>
      c.persistentSubscriptions.subscribe(
        S,
        "g",
        any({ credentials: { username: "a", password: "b", role: "admin" } }),
      ),
    message:
      /^persistentSubscriptions.subscribe: unknown option "credentials.role" \(known: password, username\)$/,
    good: (c) =>
      c.persistentSubscriptions
        .subscribe(S, "g", { credentials: { username: "a", password: "b" } })
        .unsubscribe(),
  },
  {
    name: 'PersistentSubscription.ack "x"',
    style: "rejects",
    bad: (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      void sub.unsubscribe();
      return sub.ack(EVENT, any({ x: 1 }));
    },
    message: /^PersistentSubscription.ack: unknown option "x" \(known: none\)$/,
    good: async (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      await sub.unsubscribe();
      // past the options: the subscription has ended
      await expect(sub.ack(EVENT, {})).rejects.toBeInstanceOf(SubscriptionDroppedError);
    },
  },
  {
    name: 'PersistentSubscription.nack "delay"',
    style: "rejects",
    bad: (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      void sub.unsubscribe();
      return sub.nack("retry", "later", EVENT, any({ delay: 5_000 }));
    },
    message:
      /^PersistentSubscription.nack: unknown option "delay" \(known: delayMs\); did you mean "delayMs"\?$/,
    good: async (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      await sub.unsubscribe();
      // past the options: the subscription has ended
      await expect(sub.nack("retry", "later", EVENT, { delayMs: 5_000 })).rejects.toBeInstanceOf(
        SubscriptionDroppedError,
      );
    },
  },
  {
    name: 'PersistentSubscription.nack "delayMs" out of range',
    style: "rejects",
    bad: (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      void sub.unsubscribe();
      return sub.nack("retry", "later", EVENT, { delayMs: 3_600_001 });
    },
    message: /^PersistentSubscription.nack: delayMs must be an integer in 0..3600000, got 3600001$/,
    good: async (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      await sub.unsubscribe();
      await expect(sub.nack("retry", "later", EVENT, { delayMs: 0 })).rejects.toBeInstanceOf(
        SubscriptionDroppedError,
      );
    },
  },
  {
    name: 'PersistentSubscription.nack "delayMs" with "park"',
    style: "rejects",
    bad: (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      void sub.unsubscribe();
      return sub.nack("park", "later", EVENT, { delayMs: 1_000 });
    },
    message: /^PersistentSubscription.nack: delayMs is for "retry" only, not "park"$/,
    good: async (c) => {
      const sub = c.persistentSubscriptions.subscribe(S, "g");
      await sub.unsubscribe();
      await expect(sub.nack("park", "later", EVENT, {})).rejects.toBeInstanceOf(
        SubscriptionDroppedError,
      );
    },
  },
];

describe("the client refuses unknown option keys", () => {
  it.each(CASES.map((c) => [c.name, c] as const))(
    "%s: refused before anything is sent; the right key works",
    async (_name, testCase) => {
      const n = await persistentNode();
      const c = client(fast().withSingleNode(n.httpEndpoint).build());
      const { style, err } = await failureOf(() => testCase.bad(c));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(testCase.message);
      expect(style).toBe(testCase.style);
      // nothing sent, not even a connection made
      expect(n.received).toHaveLength(0);
      expect(c.status).toBe("idle");
      await testCase.good(c);
    },
  );
});

describe("ConnectionSettings refuses unknown option keys", () => {
  const builder = () => ConnectionSettings.create();
  it.each<[string, () => unknown, RegExp]>([
    [
      "withClusterDns",
      () => builder().withClusterDns("cluster.example", any({ gossipport: 2113 })),
      /^withClusterDns: unknown option "gossipport" \(known: dnsServers, gossipPort, srv\); did you mean "gossipPort"\?$/,
    ],
    [
      "withClusterDns (not an object)",
      () => builder().withClusterDns("cluster.example", any(2113)),
      /^withClusterDns: options must be an object, got 2113$/,
    ],
    [
      "useTls",
      () => builder().useTls(any({ rejectUnauthorised: false })),
      /^useTls: unknown option "rejectUnauthorised" .*did you mean "rejectUnauthorized"/,
    ],
    [
      "withHeartbeat",
      () => builder().withHeartbeat(any({ interval: 500, intervalMs: 500, timeoutMs: 1_000 })),
      /^withHeartbeat: unknown option "interval" \(known: intervalMs, timeoutMs\)/,
    ],
    [
      "withDefaultCredentials",
      () => builder().withDefaultCredentials(any({ username: "a", password: "b", passwd: "c" })),
      /^withDefaultCredentials: unknown key "passwd" .*did you mean "password"/,
    ],
    [
      "withRetryBudget",
      () => builder().withRetryBudget(any({ window: 10_000 })),
      /^withRetryBudget: unknown option "window" \(known: minRetriesPerSecond, ratio, windowMs\)/,
    ],
    [
      "a connection string's query",
      () => ConnectionSettings.fromConnectionString("chorus://127.0.0.1:2113?nodePrefrence=leader"),
      /^invalid connection string: unknown query key "nodePrefrence" \(known: .*\); did you mean "nodePreference"\?$/,
    ],
    [
      "new ChorusClient with a plain object",
      () => new Client(any({ location: "127.0.0.1:2113" })),
      /^ChorusClient takes ConnectionSettings/,
    ],
  ])("%s", (_what, fn, message) => {
    let caught: unknown;
    try {
      fn();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as Error).message).toMatch(message);
  });

  it("accepts the right keys", () => {
    const settings = builder()
      .withClusterDns("cluster.example", {
        gossipPort: 2113,
        dnsServers: ["10.0.0.53:53"],
        srv: false,
      })
      .useTls({ rejectUnauthorized: false, caFile: "/ca.pem" })
      .withHeartbeat({ intervalMs: 500, timeoutMs: 1_000 })
      .withDefaultCredentials({ username: "a", password: "b" })
      .withRetryBudget({ ratio: 0.5, minRetriesPerSecond: 1, windowMs: 5_000 })
      .build();
    expect(settings.location).toMatchObject({ kind: "clusterDns", gossipPort: 2113 });
    expect(settings.tls?.rejectUnauthorized).toBe(false);
    expect(settings.heartbeat).toEqual({ intervalMs: 500, timeoutMs: 1_000 });
    expect(settings.retryBudget).toEqual({ ratio: 0.5, minRetriesPerSecond: 1, windowMs: 5_000 });
    expect(
      ConnectionSettings.fromConnectionString("chorus://h:1?NODEPREFERENCE=follower")
        .nodePreference,
    ).toBe("follower");
  });
});
