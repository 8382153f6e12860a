// Server-side $all filters (stream-name and event-type regular expressions) and checkpoint
// intervals, through @chorus/client against real nodes on each backend; refusals also over the
// raw protocol, past the client's own checks.
import {
  ChorusClient,
  ConnectionSettings,
  InvalidArgumentError,
  jsonEvent,
  type ResolvedEvent,
  type Subscription,
} from "@chorus/client";
import { chorus } from "@chorus/protocol";
import { waitFor, type TestNode } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS, DISK_BACKENDS, closeBackends, startBackendNode } from "../backends.js";
import { RawClient } from "../server/helpers.js";

afterAll(closeBackends);

function clientOf(node: TestNode): ChorusClient {
  return new ChorusClient(
    ConnectionSettings.create()
      .withSingleNode(node.httpEndpoint)
      .keepReconnecting()
      .withReconnectionDelay(50)
      .withDiscoverDelay(50)
      .withOperationTimeout(30_000)
      .withHeartbeat({ intervalMs: 200, timeoutMs: 1_000 })
      .build(),
  );
}

async function collect(events: AsyncIterable<ResolvedEvent>): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

const label = (e: ResolvedEvent) => `${e.event.streamId}/${e.event.revision}/${e.event.type}`;

/**
 * Appends `noise` events that match nothing (batches of 100 over 10 streams), with one
 * matching event (`match-<run>`, type "Wanted") after every `every` of them. Returns the
 * matching events' data in order.
 */
async function fill(
  client: ChorusClient,
  run: string,
  noise: number,
  every: number,
  from = 0,
): Promise<number[]> {
  const matches: number[] = [];
  for (let written = 0; written < noise; written += 100) {
    await client.appendToStream(
      `noise-${run}-${(written / 100) % 10}`,
      Array.from({ length: 100 }, (_, i) => jsonEvent({ type: "Noise", data: { i } })),
    );
    if ((written + 100) % every === 0) {
      const n = from + matches.length;
      await client.appendToStream(`match-${run}`, jsonEvent({ type: "Wanted", data: n }));
      matches.push(n);
    }
  }
  return matches;
}

/** Iterates a subscription in the background: events and checkpoints in the order handed over. */
function follow(sub: Subscription): {
  items: Array<{ event: number } | { checkpoint: bigint }>;
  matches: () => number[];
  checkpoints: () => bigint[];
  done: Promise<void>;
} {
  const items: Array<{ event: number } | { checkpoint: bigint }> = [];
  sub.on("checkpoint", (position) => items.push({ checkpoint: position }));
  const done = (async () => {
    for await (const e of sub) items.push({ event: e.event.data as number });
  })();
  done.catch(() => undefined);
  return {
    items,
    matches: () => items.flatMap((i) => ("event" in i ? [i.event] : [])),
    checkpoints: () => items.flatMap((i) => ("checkpoint" in i ? [i.checkpoint] : [])),
    done,
  };
}

describe.each(BACKENDS)("filters (%s)", (backend) => {
  let node: TestNode;
  let client: ChorusClient;
  const run = randomUUID().slice(0, 8);

  beforeAll(async () => {
    node = await startBackendNode(backend);
    client = clientOf(node);
    for (let i = 0; i < 30; i++) {
      await client.appendToStream(`${["order", "invoice", "cart"][i % 3]}-${run}-${i}`, [
        jsonEvent({ type: i % 2 === 0 ? "OrderPlaced" : "OrderShipped", data: { i } }),
        jsonEvent({ type: "Audit", data: { i } }),
      ]);
    }
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await node?.stop();
  });

  it("a stream-name regex returns exactly the matching events, in order", async () => {
    const everything = await collect(client.readAll());
    const re = new RegExp(`^(order|cart)-${run}-\\d*[05]$`, "u");
    const expected = everything.filter((e) => re.test(e.event.streamId)).map(label);
    expect(expected.length).toBe(8); // i = 0, 5, 15, 20 (order- or cart-) x 2 events
    const got = await collect(
      client.readAll({ filter: { streamNameRegex: re.source }, pageSize: 7 }),
    );
    expect(got.map(label)).toEqual(expected);
  });

  it("a filtered read finds matches farther apart than the records one request examines", async () => {
    // The node examines at most 16,384 records per filtered read request and may answer one
    // with no event: the read goes on from where that request ended.
    const far = randomUUID().slice(0, 8);
    const matches = await fill(client, far, 20_000, 20_000);
    expect(matches).toEqual([0]);
    const got = await collect(client.readAll({ filter: { streamNameRegex: `^match-${far}$` } }));
    expect(got.map((e) => e.event.data)).toEqual(matches);
  }, 120_000);

  it("an event-type regex, with a stream-name prefix", async () => {
    const got = await collect(
      client.readAll({
        filter: { streamNamePrefix: [`invoice-${run}-`], eventTypeRegex: "Shipped$" },
      }),
    );
    const expected = Array.from({ length: 30 }, (_, i) => i)
      .filter((i) => i % 3 === 1 && i % 2 === 1)
      .map((i) => `invoice-${run}-${i}/0/OrderShipped`);
    expect(got.map(label)).toEqual(expected);
  });

  it("a catch-up subscription takes the same filter", async () => {
    const sub = client.subscribeToAll({
      filter: { streamNameRegex: `^cart-${run}-`, eventTypeRegex: "^Order" },
    });
    const seen: string[] = [];
    const caughtUp = new Promise<void>((resolve) => sub.once("caughtUp", resolve));
    const reading = (async () => {
      for await (const e of sub) seen.push(label(e));
    })();
    await caughtUp;
    await sub.unsubscribe();
    await reading;
    expect(seen).toEqual(
      Array.from({ length: 10 }, (_, k) => 3 * k + 2).map(
        (i) => `cart-${run}-${i}/0/${i % 2 === 0 ? "OrderPlaced" : "OrderShipped"}`,
      ),
    );
  });

  it("refuses a pattern the server cannot run as InvalidArgumentError; the client goes on", async () => {
    // Compiles in the client, refused by the server: lookaround and backreferences in patterns
    // that must run on the linear-time engine.
    await expect(
      collect(client.readAll({ filter: { streamNameRegex: "^(?!x)a+|b" } })),
    ).rejects.toThrow(InvalidArgumentError);
    const sub = client.subscribeToAll({ filter: { eventTypeRegex: "(x)y*\\1+" } });
    const dropped = new Promise<Error>((resolve) => sub.once("dropped", resolve));
    await expect(collect(sub)).rejects.toThrow(/runs on a linear-time engine/);
    expect(await dropped).toBeInstanceOf(InvalidArgumentError);
    // Refused before anything is sent.
    expect(() => client.readAll({ filter: { streamNameRegex: "(" } })).toThrow(
      InvalidArgumentError,
    );
    const after = await collect(
      client.readAll({ filter: { streamNameRegex: `^order-${run}-0$` } }),
    );
    expect(after.map(label)).toEqual([`order-${run}-0/0/OrderPlaced`, `order-${run}-0/1/Audit`]);
  });

  it("a pattern that backtracks exponentially runs in linear time: the node keeps serving", async () => {
    // Over a name of 44 "a"s, V8's backtracking engine takes minutes with (a|aa)+_ (each "a"
    // may be the start of an "a" or an "aa"), and the node would serve nothing meanwhile: the
    // read would time out, and so would every other request. No stream name here holds a "_"
    // (with "b", the classic form, a run id such as "4fabc496" matched).
    const stream = `${"a".repeat(44)}-${run}`;
    await client.appendToStream(stream, jsonEvent({ type: "Long", data: 1 }));
    const none = await collect(client.readAll({ filter: { streamNameRegex: "(a|aa)+_" } }));
    expect(none).toEqual([]);
    // The same shape, matching this stream: caught up, then live.
    const sub = client.subscribeToAll({
      fromPosition: "start",
      filter: { streamNameRegex: `(a|aa)+-${run}$` },
    });
    const live = follow(sub);
    await waitFor(() => live.matches().length === 1, { timeoutMs: 20_000 });
    await client.appendToStream(stream, jsonEvent({ type: "Long", data: 2 }));
    await waitFor(() => live.matches().length === 2, { timeoutMs: 20_000 });
    expect(live.matches()).toEqual([1, 2]);
    await sub.unsubscribe();
    await live.done;
  });

  it("refuses bad filters over the raw protocol and keeps serving the connection", async () => {
    const raw = await RawClient.connect(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
    try {
      const bad: Array<[chorus.IFilter, RegExp]> = [
        [{ streamNameRegex: "(" }, /streamNameRegex is not a valid regular expression/],
        [{ eventTypeRegex: "a".repeat(1_001) }, /eventTypeRegex is 1001 characters long/],
        [{ streamNameRegex: "(?<=a)b|c" }, /linear-time engine .*cannot run it/],
        [{ streamNamePrefix: ["o"], streamNameRegex: "^o" }, /streamNamePrefix or streamNameRegex/],
        [{ checkpointInterval: 10 }, /checkpoint_interval applies to \$all subscriptions/],
      ];
      for (const [filter, message] of bad) {
        const reply = await raw.request({ readAll: { maxCount: 10, filter } });
        expect(reply.error?.code).toBe(chorus.ErrorResponse.Code.INVALID_ARGUMENT);
        expect(reply.error?.message).toMatch(message);
      }
      const dropped = await raw.request({
        subscribe: { all: true, filter: { eventTypeRegex: "[" }, credit: 10 },
      });
      expect(dropped.subscriptionDropped?.reason?.code ?? dropped.error?.code).toBe(
        chorus.ErrorResponse.Code.INVALID_ARGUMENT,
      );
      const ok = await raw.request({
        readAll: { maxCount: 100, filter: { streamNameRegex: `^invoice-${run}-1$` } },
      });
      expect(ok.readResult?.events?.map((e) => e.event?.type)).toEqual(["OrderShipped", "Audit"]);
      expect(raw.closed).toBeUndefined();
    } finally {
      await raw.close();
    }
  });
});

describe.each(DISK_BACKENDS)("checkpoint intervals (%s)", (backend) => {
  it("a filtered subscription over 20,000 non-matching events sends checkpoints and resumes from the last one", async () => {
    const node = await startBackendNode(backend);
    const client = clientOf(node);
    const run = randomUUID().slice(0, 8);
    const interval = 1_000;
    const filter = { streamNameRegex: `^match-${run}$`, checkpointInterval: interval };
    try {
      const history = await fill(client, run, 20_000, 4_000); // 5 matches
      const total = (await collect(client.readAll({ filter: { includeSystem: true } }))).length;
      const first = follow(client.subscribeToAll({ filter, bufferSize: 16 }));
      await waitFor(() => first.matches().length === history.length, {
        timeoutMs: 30_000,
        message: "the history's matches",
      });
      // Checkpoints come after `interval` records with no match: about total / interval.
      await waitFor(() => first.checkpoints().length >= Math.floor(total / interval) - 6, {
        timeoutMs: 30_000,
        message: "checkpoints",
      });
      const cps = first.checkpoints();
      // Records other than events (the log's own) count as examined too: a little slack.
      expect(cps.length).toBeLessThanOrEqual(Math.ceil((total * 1.1) / interval) + 1);
      expect([...cps].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(cps); // increasing
      expect(first.matches()).toEqual(history);

      // An application that kept a checkpoint resumes from it: nothing repeats, nothing is missed.
      const at = first.items.findIndex((i) => "event" in i && i.event === history[2]);
      const kept = first.items.slice(at).find((i) => "checkpoint" in i) as { checkpoint: bigint };
      const expectedAfter = first.items
        .slice(first.items.indexOf(kept))
        .flatMap((i) => ("event" in i ? [i.event] : []));
      const resumed = follow(
        client.subscribeToAll({ fromPosition: kept.checkpoint, filter, bufferSize: 16 }),
      );
      await waitFor(() => resumed.matches().length === expectedAfter.length, {
        timeoutMs: 30_000,
        message: "the matches after the kept checkpoint",
      });

      // The live subscription across a restart of the node (disk, PostgreSQL) resumes after
      // its last checkpoint or event: every match exactly once, in order.
      const before = first.checkpoints().length;
      const live1 = await fill(client, run, 3_000, 1_500, history.length);
      await waitFor(() => first.checkpoints().length > before, {
        timeoutMs: 30_000,
        message: "a live checkpoint",
      });
      await node.kill();
      await waitFor(() => client.status !== "connected", {
        timeoutMs: 10_000,
        message: "the client to notice the crash",
      });
      await node.restart();
      const live2 = await fill(client, run, 5_000, 1_000, history.length + live1.length);
      const all = [...history, ...live1, ...live2];
      await waitFor(() => first.matches().length >= all.length, {
        timeoutMs: 30_000,
        message: "every match after the restart",
      });
      // A moment for any repeat to arrive, bounded by a round trip through the node.
      await collect(client.readAll({ filter: { streamNameRegex: `^match-${run}$` } }));
      expect(first.matches()).toEqual(all);
      const after = first.checkpoints();
      expect([...after].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(after);
      expect(resumed.matches()).toEqual([...expectedAfter, ...live1, ...live2]);
    } finally {
      await client.close();
      await node.stop();
    }
  }, 120_000);
});
