import { chorus, partitionOf } from "@chorus/protocol";
import type { ChorusClient } from "../client.js";
import { describe, expect, it } from "vitest";
import {
  InvalidArgumentError,
  WrongPartitionError,
  errorFromWire,
  isRetriable,
} from "../errors.js";
import { ConnectionSettings } from "../settings/connection-settings.js";
import { PartitionedClient } from "./partitioned-client.js";

const EAST = "chorus://127.0.0.1:2113?tls=false";
const WEST = "chorus+discover://10.0.2.1:2113,10.0.2.2:2113?tls=false&username=u&password=secret";

describe("withPartitions", () => {
  it("takes connection strings or built settings, one per group", () => {
    const west = ConnectionSettings.fromConnectionString(WEST);
    const settings = ConnectionSettings.create().withPartitions({ east: EAST, west }).build();
    expect(Object.keys(settings.partitions!)).toEqual(["east", "west"]);
    expect(settings.partitions!["west"]).toBe(west);
    expect(settings.partitions!["east"]!.location).toEqual({
      kind: "singleNode",
      endpoint: { host: "127.0.0.1", port: 2113 },
    });
    // The location is the first group's; the groups' passwords stay hidden.
    expect(settings.location).toEqual(settings.partitions!["east"]!.location);
    expect(JSON.stringify(settings)).not.toContain("secret");
    expect(JSON.stringify(settings)).toContain('"partitions"');
    expect(ConnectionSettings.create().withSingleNode("h:1").build().partitions).toBeUndefined();
  });

  it.each([
    ["no group", {}, /withPartitions: the partition list is empty/],
    ["a bad name", { East: EAST }, /partition name "East" is not 1 to 32 characters/],
    ["a bad connection string", { east: "http://x" }, /withPartitions: group east: /],
    [
      "a value of another kind",
      { east: 42 },
      /group east needs a connection string or ConnectionSettings/,
    ],
  ])("refuses %s", (_what, groups, message) => {
    expect(() =>
      ConnectionSettings.create().withPartitions(groups as Record<string, string>),
    ).toThrow(message);
  });

  it("refuses a partitioned group and a location besides the groups", () => {
    const nested = ConnectionSettings.create().withPartitions({ a: EAST }).build();
    expect(() => ConnectionSettings.create().withPartitions({ b: nested })).toThrow(
      /group b is itself partitioned/,
    );
    expect(() =>
      ConnectionSettings.create().withSingleNode("h:1").withPartitions({ a: EAST }),
    ).toThrow(InvalidArgumentError);
    expect(() =>
      ConnectionSettings.create().withPartitions({ a: EAST }).withGossipSeeds(["h:1"]),
    ).toThrow(/do not combine it with withGossipSeeds/);
  });
});

describe("withPartitions and the builder's other settings", () => {
  it("refuses a setting that would reach no group, naming it", () => {
    expect(() =>
      ConnectionSettings.create().withPartitions({ a: EAST }).withOperationTimeout(5_000).build(),
    ).toThrow(/withPartitions: operationTimeoutMs would not reach the groups/);
    expect(() =>
      ConnectionSettings.create()
        .withPartitions({ a: EAST })
        .withDefaultCredentials({ username: "u", password: "p" })
        .keepReconnecting()
        .build(),
    ).toThrow(/defaultCredentials, maxReconnections would not reach the groups/);
  });

  it("builds when only the groups carry settings", () => {
    const group = ConnectionSettings.create()
      .withSingleNode("h:1")
      .withOperationTimeout(5_000)
      .build();
    const settings = ConnectionSettings.create().withPartitions({ a: group }).build();
    expect(settings.partitions?.["a"]?.operationTimeoutMs).toBe(5_000);
  });
});

describe("WrongPartitionError", () => {
  it("is what a WRONG_PARTITION reply becomes, with the owner, and is not retried", () => {
    const err = errorFromWire({
      error: {
        code: chorus.ErrorResponse.Code.WRONG_PARTITION,
        message: 'stream "s" belongs to partition west, not to this node\'s partition east',
        streamId: "s",
        owner: "west",
      },
    });
    expect(err).toBeInstanceOf(WrongPartitionError);
    expect(err).toMatchObject({ code: "WRONG_PARTITION", owner: "west", streamId: "s" });
    expect(err.message).toContain("belongs to partition west");
    expect(isRetriable(err)).toBe(false);
  });
});

describe("PartitionedClient routing", () => {
  it("sends each stream to its owner, with the owner remembered or not", () => {
    const groups = { east: EAST, west: EAST, north: EAST };
    const settings = ConnectionSettings.create().withPartitions(groups).build();
    const made = new Map<object, string>();
    const sink = { connected() {}, disconnected() {}, reconnecting() {}, leaderChanged() {} };
    const routing = new PartitionedClient(
      settings.partitions!,
      (_s, name) => {
        const client = { on() {} } as unknown as ChorusClient;
        made.set(client, name);
        return client;
      },
      sink,
    );
    const names = Object.keys(groups);
    // More ids than the cache holds (it is cleared and refilled), each asked twice in a row
    // (the second answer from the cache), then a working set asked again; and ids too long
    // to be kept.
    const ids = Array.from({ length: 20_000 }, (_, i) => `tenant{${i % 700}}-order-${i}`);
    ids.push("x".repeat(300), `${"y".repeat(300)}{7}`);
    const check = (id: string): void => {
      const owner = made.get(routing.clientOf(id));
      if (owner !== partitionOf(id, names)) throw new Error(`${id} went to ${owner}`);
    };
    for (const id of ids) for (const _ of [1, 2]) check(id);
    for (const _ of [1, 2]) for (const id of ids.slice(0, 1000)) check(id);
    const owners = new Set(ids.map((id) => made.get(routing.clientOf(id))));
    expect(owners).toEqual(new Set(names));
  });
});
