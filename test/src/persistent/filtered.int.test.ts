// Persistent subscription groups on $all with a server-side filter, against a real node on
// the disk log, on PostgreSQL and in-process: exactly the matching events, the filter kept
// across a SIGKILL + restart, the checkpoint moving over long runs of non-matching events,
// and bad filters refused by the client and by the server.
import {
  ChorusClient,
  InvalidArgumentError,
  jsonEvent,
  type PersistentEvent,
  type PersistentSubscription,
} from "@chorus/client";
import { chorus } from "@chorus/protocol";
import { waitFor, type TestNode } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLIENT_DISK_BACKENDS, closeBackends, startBackendNode } from "../backends.js";
import { nextEvent } from "../iterate.js";
import { connect } from "./connect.js";
import { RawClient } from "../server/helpers.js";

let node: TestNode;
let client: ChorusClient;

/** A tag no other test's streams or types share ($all groups see every test's events). */
const tagOf = (): string => `f${randomUUID().slice(0, 8)}`;

const label = (e: PersistentEvent): string => `${e.event.streamId}:${e.event.type}`;

/**
 * Consumes (and acknowledges) until the event `last` (streamId:type); returns every label
 * before it, in delivery order.
 */
async function until(sub: PersistentSubscription, last: string): Promise<string[]> {
  const it = sub[Symbol.asyncIterator]();
  const seen: string[] = [];
  for (;;) {
    const e = await nextEvent(it, 15_000);
    await sub.ack(e);
    if (label(e) === last) return seen;
    seen.push(label(e));
  }
}

afterAll(closeBackends);

describe.each(CLIENT_DISK_BACKENDS)("filtered $all persistent subscriptions (%s)", (backend) => {
  beforeAll(async () => {
    node = await startBackendNode(backend);
    client = connect(node, backend);
  });

  afterAll(async () => {
    await client?.close();
    await node?.stop();
  });

  it("delivers exactly the matching events: stream prefix, stream regex, event-type regex", async () => {
    const ps = client.persistentSubscriptions;
    const t = tagOf();
    const groups = {
      prefix: { streamNamePrefix: [`${t}-order-`] },
      regex: { streamNameRegex: `^${t}-(order|cart)-\\d+$` },
      type: { eventTypeRegex: `^${t}-Order(Placed|Paid)$` },
    };
    for (const [g, filter] of Object.entries(groups))
      await ps.create("$all", `${t}-${g}`, { startFrom: "end", filter });
    const write = (stream: string, ...types: string[]) =>
      client.appendToStream(
        stream,
        types.map((type) => jsonEvent({ type: `${t}-${type}`, data: {} })),
      );
    await write(`${t}-order-1`, "OrderPlaced", "OrderShipped");
    await write(`${t}-cart-2`, "CartOpened");
    await write(`${t}-order-x`, "OrderPaid");
    await write(`${t}-other-3`, "OrderPaid");
    await write(`x${t}-order-4`, "OrderPlaced");
    // Matches every filter: whatever a group delivers before it is everything it delivers.
    await write(`${t}-order-9`, "OrderPaid");
    const sentinel = `${t}-order-9:${t}-OrderPaid`;

    const got: Record<string, string[]> = {};
    for (const g of Object.keys(groups)) {
      const sub = ps.subscribe("$all", `${t}-${g}`, { bufferSize: 10 });
      try {
        got[g] = await until(sub, sentinel);
      } finally {
        await sub.unsubscribe();
      }
    }
    expect(got).toEqual({
      prefix: [
        `${t}-order-1:${t}-OrderPlaced`,
        `${t}-order-1:${t}-OrderShipped`,
        `${t}-order-x:${t}-OrderPaid`,
      ],
      regex: [
        `${t}-order-1:${t}-OrderPlaced`,
        `${t}-order-1:${t}-OrderShipped`,
        `${t}-cart-2:${t}-CartOpened`,
      ],
      type: [
        `${t}-order-1:${t}-OrderPlaced`,
        `${t}-order-x:${t}-OrderPaid`,
        `${t}-other-3:${t}-OrderPaid`,
        `x${t}-order-4:${t}-OrderPlaced`,
      ],
    });
  });

  it("keeps the filter (and an update of it) across a SIGKILL and restart; getInfo and list show it", async () => {
    const own = await startBackendNode(backend);
    const c1 = connect(own, backend);
    const t = tagOf();
    try {
      const ps1 = c1.persistentSubscriptions;
      await ps1.create("$all", "g", {
        startFrom: "end",
        filter: { streamNamePrefix: [`${t}-a-`], eventTypePrefix: ["Keep"] },
      });
      expect((await ps1.getInfo("$all", "g")).settings.filter).toEqual({
        streamNamePrefix: [`${t}-a-`],
        eventTypePrefix: ["Keep"],
      });
      // An update replaces the filter (the other settings stay).
      await ps1.update("$all", "g", {
        filter: { streamNameRegex: `^${t}-b-`, eventTypeRegex: "^Keep" },
        maxRetryCount: 3,
      });
      const updated = { streamNameRegex: `^${t}-b-`, eventTypeRegex: "^Keep" };
      expect((await ps1.list("$all")).find((i) => i.group === "g")?.settings.filter).toEqual(
        updated,
      );
      await own.kill();
      await c1.close();
      await own.restart();
      const c2 = connect(own, backend);
      try {
        const ps2 = c2.persistentSubscriptions;
        const info = await ps2.getInfo("$all", "g");
        expect(info.settings.filter).toEqual(updated);
        expect(info.settings.maxRetryCount).toBe(3);
        const events = (...types: string[]) => types.map((type) => jsonEvent({ type, data: {} }));
        await c2.appendToStream(`${t}-a-1`, events("KeepA"));
        await c2.appendToStream(`${t}-b-1`, events("Drop", "KeepB"));
        await c2.appendToStream(`${t}-b-2`, events("KeepLast"));
        const sub = ps2.subscribe("$all", "g", { bufferSize: 10 });
        try {
          expect(await until(sub, `${t}-b-2:KeepLast`)).toEqual([`${t}-b-1:KeepB`]);
        } finally {
          await sub.unsubscribe();
        }
        // `filter: {}` removes it: every non-system event again.
        await ps2.update("$all", "g", { filter: {} });
        expect((await ps2.getInfo("$all", "g")).settings.filter).toBeUndefined();
      } finally {
        await c2.close();
      }
    } finally {
      await c1.close();
      await own.stop();
    }
  });

  it("a group created over 20,000 non-matching events checkpoints past them, then delivers the one match", async () => {
    const ps = client.persistentSubscriptions;
    const t = tagOf();
    let lastNoise = -1n;
    for (let batch = 0; batch < 20; batch++) {
      const r = await client.appendToStream(
        `${t}-noise`,
        Array.from({ length: 1_000 }, (_, i) =>
          jsonEvent({ type: "Noise", data: { n: batch * 1_000 + i } }),
        ),
      );
      lastNoise = r.position;
    }
    // The group checkpoints by its own settings, counting the events it skipped as done
    // (with nothing done, a group that only moved its read point never checkpointed).
    const g = `${t}-g`;
    await ps.create("$all", g, {
      startFrom: "start",
      filter: { streamNamePrefix: [`${t}-match`] },
      checkpointAfterMs: 100,
      minCheckpointCount: 1,
    });
    expect((await ps.getInfo("$all", g)).lastCheckpoint).toBeUndefined();
    const sub = ps.subscribe("$all", g, { bufferSize: 10 });
    try {
      // With nothing matched yet, the checkpoint moves over the scanned events.
      await waitFor(
        async () => ((await ps.getInfo("$all", g)).lastCheckpoint ?? -1n) >= lastNoise,
        { timeoutMs: 20_000 },
      );
      const { position } = await client.appendToStream(
        `${t}-match`,
        jsonEvent({ type: "Match", data: {} }),
      );
      const e = await nextEvent(sub[Symbol.asyncIterator](), 15_000);
      expect(label(e)).toBe(`${t}-match:Match`);
      await sub.ack(e);
      await waitFor(async () => ((await ps.getInfo("$all", g)).lastCheckpoint ?? -1n) >= position, {
        timeoutMs: 20_000,
      });
    } finally {
      await sub.unsubscribe();
    }
  });

  it("refuses bad filters and a filter on a stream group (client and server); nothing is created", async () => {
    const ps = client.persistentSubscriptions;
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      [
        "$all",
        { streamNameRegex: "(" },
        /filter.streamNameRegex is not a valid regular expression/,
      ],
      [
        "$all",
        { streamNamePrefix: ["a"], streamNameRegex: "^b" },
        /filter takes streamNamePrefix or streamNameRegex, not both/,
      ],
      ["$all", { eventTypeRegex: "x".repeat(1_001) }, /at most 1000 are accepted/],
      // The client cannot tell; the node refuses it (as it does for reads).
      ["$all", { streamNameRegex: "^(?!x)a+|b" }, /runs on a linear-time engine/],
      ["$all", { checkpointInterval: 10 }, /checkpointInterval does not apply to persistent/],
      ["orders-1", { streamNamePrefix: ["o"] }, /a filter applies to groups on "\$all" only/],
    ];
    for (const [stream, filter, message] of cases) {
      const create = ps.create(stream, "bad", { filter });
      await expect(create).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(ps.create(stream, "bad", { filter })).rejects.toThrow(message);
    }
    const good = `${tagOf()}-good`;
    await ps.create("$all", good, { startFrom: "end" });
    await expect(
      ps.update("$all", good, { filter: { eventTypeRegex: "(x)y*\\1+" } }),
    ).rejects.toThrow(/runs on a linear-time engine/);
    expect((await ps.getInfo("$all", good)).settings.filter).toBeUndefined();
    expect((await ps.list()).map((i) => i.group)).not.toContain("bad");

    // What the SDK never sends: a filter on a stream group, a checkpoint interval.
    const raw = await RawClient.connect(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
    try {
      for (const [streamId, filter, message] of [
        ["orders-1", { streamNamePrefix: ["o"] }, /on "\$all" only, not on stream "orders-1"/],
        ["$all", { checkpointInterval: 5 }, /^filter: checkpoint_interval does not apply/],
      ] as Array<[string, chorus.IFilter, RegExp]>) {
        const reply = await raw.request({
          persistentCreate: { streamId, group: "raw-bad", settings: { filter } },
        });
        expect(reply.error?.code).toBe(chorus.ErrorResponse.Code.INVALID_ARGUMENT);
        expect(reply.error?.message).toMatch(message);
      }
    } finally {
      await raw.close();
    }
  });
});
