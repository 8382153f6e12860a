// Partitioned deployments: two single-node groups, real server processes.
import { randomUUID } from "node:crypto";
import {
  ChorusClient,
  ConnectionSettings,
  DiscoveryError,
  InvalidArgumentError,
  TimeoutError,
  WrongPartitionError,
  jsonEvent,
  type MemberInfo,
  type MergedSubscription,
  type PartitionedPersistentSubscriptionInfo,
} from "@chorus/client";
import { partitionOf, partitionWeight } from "@chorus/protocol";
import { freePorts, startNode, waitFor, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect, settle, startGroups } from "./helpers.js";

const GROUPS = ["east", "west"] as const;

let nodes: Record<string, TestNode>;
let stopGroups: () => Promise<void>;
/** One client over both groups. */
let client: ChorusClient;
/** A plain client of each group alone. */
const direct: Record<string, ChorusClient> = {};

/** A stream id that `owner` owns, with this prefix. */
function streamOwnedBy(owner: string, prefix: string): string {
  for (let i = 0; ; i++) {
    const id = `${prefix}-${i}`;
    if (partitionOf(id, GROUPS) === owner) return id;
  }
}

beforeAll(async () => {
  ({ nodes, stop: stopGroups } = await startGroups(GROUPS));
  client = new ChorusClient(
    ConnectionSettings.create()
      .withPartitions({
        east: nodes["east"]!.connectionString,
        west: nodes["west"]!.connectionString,
      })
      .build(),
  );
  for (const name of GROUPS) direct[name] = new ChorusClient(nodes[name]!.connectionString);
});

afterAll(async () => {
  await Promise.allSettled([client?.close(), ...Object.values(direct).map((c) => c.close())]);
  await stopGroups?.();
});

describe("a node of a partitioned deployment", () => {
  it("refuses a write on a stream of another group, naming the owner", async () => {
    const foreign = streamOwnedBy("west", "refused");
    const err = await settle(
      direct["east"]!.appendToStream(foreign, jsonEvent({ type: "T", data: 1 })),
    );
    expect(err).toBeInstanceOf(WrongPartitionError);
    expect((err as WrongPartitionError).owner).toBe("west");
    expect((err as WrongPartitionError).streamId).toBe(foreign);
    expect((err as WrongPartitionError).code).toBe("WRONG_PARTITION");
    // Nothing was written anywhere on east.
    const eastAll = await collect(direct["east"]!.readAll());
    expect(eastAll.filter((e) => e.event.streamId === foreign)).toEqual([]);
  });

  it("refuses reads, deletes, metadata, subscriptions and persistent groups of foreign streams", async () => {
    const foreign = streamOwnedBy("east", "ops");
    const west = direct["west"]!;
    const owners = async (p: Promise<unknown>) => {
      const err = await settle(p);
      expect(err).toBeInstanceOf(WrongPartitionError);
      return (err as WrongPartitionError).owner;
    };
    expect(await owners(collect(west.readStream(foreign)))).toBe("east");
    expect(await owners(west.deleteStream(foreign))).toBe("east");
    expect(await owners(west.setStreamMetadata(foreign, { maxCount: 3 }))).toBe("east");
    expect(await owners(west.getStreamMetadata(foreign))).toBe("east");
    expect(await owners(west.persistentSubscriptions.create(foreign, "g"))).toBe("east");
    const sub = west.subscribeToStream(foreign);
    expect(await owners(collect(sub))).toBe("east");
    // The owner takes all of them.
    await direct["east"]!.appendToStream(foreign, jsonEvent({ type: "T", data: 1 }));
    await direct["east"]!.setStreamMetadata(foreign, { maxCount: 3 });
    expect((await direct["east"]!.getStreamMetadata(foreign)).metadata.maxCount).toBe(3);
  });

  it("refuses a foreign stream over HTTP with 421, the owner in the body and a header", async () => {
    const foreign = streamOwnedBy("west", "http");
    const { host, port } = nodes["east"]!.extHttp;
    const res = await fetch(`http://${host}:${port}/streams/${encodeURIComponent(foreign)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify([{ eventId: randomUUID(), eventType: "T", data: {} }]),
    });
    expect(res.status).toBe(421);
    expect(res.headers.get("chorus-partition")).toBe("west");
    const body = (await res.json()) as { error: string; owner: string; message: string };
    expect(body).toMatchObject({ error: "WRONG_PARTITION", owner: "west" });
    expect(body.message).toContain(foreign);
    const read = await fetch(`http://${host}:${port}/streams/${encodeURIComponent(foreign)}`);
    expect(read.status).toBe(421);
    // The admin endpoints of a persistent group on a foreign stream too.
    const group = `http://${host}:${port}/subscriptions/${encodeURIComponent(foreign)}/g`;
    const info = await fetch(group);
    expect(info.status).toBe(421);
    expect(((await info.json()) as { owner: string }).owner).toBe("west");
    expect((await fetch(`${group}/replay-parked`, { method: "POST" })).status).toBe(421);
  });

  it("serves its own $all, whatever the other groups hold", async () => {
    const own = streamOwnedBy("east", "own-all");
    await direct["east"]!.appendToStream(own, jsonEvent({ type: "Mine", data: 1 }));
    const all = await collect(direct["east"]!.readAll());
    expect(all.some((e) => e.event.streamId === own)).toBe(true);
    expect(all.every((e) => partitionOf(e.event.streamId, GROUPS) === "east")).toBe(true);
  });
});

describe("a partitioned client", () => {
  it("routes 200 streams, each to its owning group (checked by reading each group directly)", async () => {
    const run = randomUUID().slice(0, 8);
    const ids = Array.from({ length: 200 }, (_, i) => `route-${run}-${i}`);
    await Promise.all(
      ids.map((id, i) =>
        client.appendToStream(id, jsonEvent({ type: "Routed", data: { i } }), {
          expectedVersion: "no_stream",
        }),
      ),
    );
    const seen: Record<string, Set<string>> = {};
    for (const name of GROUPS) {
      seen[name] = new Set(
        (await collect(direct[name]!.readAll()))
          .map((e) => e.event.streamId)
          .filter((s) => s.startsWith(`route-${run}-`)),
      );
    }
    for (const id of ids) {
      const owner = partitionOf(id, GROUPS);
      expect(seen[owner]!.has(id), `${id} on ${owner}`).toBe(true);
      expect(seen[owner === "east" ? "west" : "east"]!.has(id), `${id} elsewhere`).toBe(false);
    }
    // Both groups got a fair share (rendezvous hashing spreads them).
    expect(seen["east"]!.size).toBeGreaterThan(60);
    expect(seen["west"]!.size).toBeGreaterThan(60);
    expect(seen["east"]!.size + seen["west"]!.size).toBe(200);
    // And the client reads each back from its owner.
    for (const id of ids.slice(0, 20)) {
      const [e] = await collect(client.readStream(id));
      expect(e?.event.data).toEqual({ i: ids.indexOf(id) });
    }
  });

  it("keeps streams with the same {tenant} in one group, metadata and deletes included", async () => {
    const tenant = randomUUID().slice(0, 8);
    const streams = ["order-1", "order-2", "cart-1", "profile"].map((s) => `t{${tenant}}-${s}`);
    for (const s of streams) await client.appendToStream(s, jsonEvent({ type: "E", data: s }));
    await client.setStreamMetadata(streams[0]!, { maxCount: 10 });
    const owner = partitionOf(streams[0]!, GROUPS);
    const ownerStreams = new Set(
      (await collect(direct[owner]!.readAll())).map((e) => e.event.streamId),
    );
    for (const s of streams) expect(ownerStreams.has(s)).toBe(true);
    expect(ownerStreams.has(`$$${streams[0]}`)).toBe(true);
    expect((await client.getStreamMetadata(streams[0]!)).metadata.maxCount).toBe(10);
    await client.deleteStream(streams[3]!);
    const err = await settle(collect(client.readStream(streams[3]!)));
    expect((err as Error).name).toBe("StreamNotFoundError");
  });

  it("keeps the metadata of a metadata stream with the stream too", async () => {
    // A stream whose owner is not the group the text `$$name` would hash to: routing
    // `$$$$name` by that text (as the key rule once did) sends it to the wrong group.
    const ownerOfKey = (key: string) =>
      [...GROUPS].sort((a, b) => (partitionWeight(b, key) > partitionWeight(a, key) ? 1 : -1))[0];
    let stream = "";
    for (let i = 0; stream === ""; i++) {
      const id = `metameta-${i}`;
      if (ownerOfKey(`$$${id}`) !== partitionOf(id, GROUPS)) stream = id;
    }
    await client.appendToStream(stream, jsonEvent({ type: "E", data: {} }));
    await client.setStreamMetadata(stream, { maxCount: 5 });
    await client.setStreamMetadata(`$$${stream}`, { mine: 1 });
    expect((await client.getStreamMetadata(`$$${stream}`)).metadata).toEqual({ mine: 1 });
    const owner = partitionOf(stream, GROUPS);
    const ownerStreams = new Set(
      (await collect(direct[owner]!.readAll())).map((e) => e.event.streamId),
    );
    expect(ownerStreams.has(`$$$$${stream}`)).toBe(true);
  });

  it("subscribes to a stream on its owning group; its events name the group and are frozen", async () => {
    const stream = streamOwnedBy("west", `sub-${randomUUID().slice(0, 8)}`);
    const sub = client.subscribeToStream(stream);
    await client.appendToStream(stream, jsonEvent({ type: "Live", data: 1 }));
    for await (const e of sub) {
      expect(e.event.streamId).toBe(stream);
      expect(e.event.partition).toBe("west");
      expect(Object.isFrozen(e.event)).toBe(true);
      break;
    }
    await sub.unsubscribe();
    const [read] = await collect(client.readStream(stream));
    expect(read?.event.partition).toBe("west");
    expect(Object.isFrozen(read?.event)).toBe(true);
    // A client of one group is no partitioned client: its events carry no partition.
    const [plain] = await collect(direct.west!.readStream(stream));
    expect(plain?.event).not.toHaveProperty("partition");
  });

  it("lists every group's members, each with partition set", async () => {
    const members = await client.clusterMembers();
    const byPartition = new Map<string, MemberInfo[]>();
    for (const m of members)
      byPartition.set(m.partition!, [...(byPartition.get(m.partition!) ?? []), m]);
    expect([...byPartition.keys()].sort()).toEqual(["east", "west"]);
    for (const name of GROUPS) {
      const [m] = byPartition.get(name)!;
      expect(m!.externalHttp?.port).toBe(nodes[name]!.extHttp.port);
    }
    const leader = await client.connect();
    expect(leader.partition).toBe("east");
    expect(client.status).toBe("connected");
  });

  it("merges $all of every group, each event naming its group, in order within a group", async () => {
    const run = randomUUID().slice(0, 8);
    for (let i = 0; i < 20; i++)
      await client.appendToStream(`merge-${run}-${i % 5}`, jsonEvent({ type: "M", data: i }));
    const all = await collect(client.readAll());
    const mine = all.filter((e) => e.event.streamId.startsWith(`merge-${run}-`));
    expect(mine).toHaveLength(20);
    for (const e of all) expect(e.event.partition).toBe(partitionOf(e.event.streamId, GROUPS));
    for (const name of GROUPS) {
      const positions = all.filter((e) => e.event.partition === name).map((e) => e.event.position);
      expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    // Resuming after each group's last event read leaves out exactly what was read.
    const checkpoint: Record<string, bigint | "start"> = { east: "start", west: "start" };
    for (const e of all.slice(0, 10)) checkpoint[e.event.partition!] = e.event.position;
    const rest = await collect(client.readAll({ fromPosition: checkpoint }));
    expect(rest.map((e) => e.event.id).sort()).toEqual(
      all
        .slice(10)
        .map((e) => e.event.id)
        .sort(),
    );
    expect(() => client.readAll({ fromPosition: 5n })).toThrow(InvalidArgumentError);
    const limited = await collect(client.readAll({ maxCount: 3 }));
    expect(limited).toHaveLength(3);
  });

  it("subscribes to $all of every group, merged, and resumes from each group's position", async () => {
    const run = randomUUID().slice(0, 8);
    const east = streamOwnedBy("east", `live-${run}`);
    const west = streamOwnedBy("west", `live-${run}`);
    const sub = client.subscribeToAll({ fromPosition: "end" });
    let caughtUp = false;
    sub.on("caughtUp", () => (caughtUp = true));
    const got: { stream: string; n: number; partition: string }[] = [];
    const done = (async () => {
      for await (const e of sub) {
        if (!e.event.streamId.startsWith(`live-${run}`)) continue;
        got.push({
          stream: e.event.streamId,
          n: (e.event.data as { n: number }).n,
          partition: e.event.partition!,
        });
        if (got.length === 10) break;
      }
    })();
    await waitFor(() => caughtUp, { message: "the merged subscription caught up" });
    for (let n = 0; n < 5; n++) {
      await client.appendToStream(east, jsonEvent({ type: "L", data: { n } }));
      await client.appendToStream(west, jsonEvent({ type: "L", data: { n } }));
    }
    await done;
    expect(sub.isEnded).toBe(true);
    for (const [stream, partition] of [
      [east, "east"],
      [west, "west"],
    ] as const) {
      const mine = got.filter((g) => g.stream === stream);
      expect(mine.map((g) => g.n)).toEqual([0, 1, 2, 3, 4]);
      expect(mine.every((g) => g.partition === partition)).toBe(true);
    }

    // Resume: a new subscription from the first one's positions gets only what came after.
    const positions = (sub as unknown as MergedSubscription).positions;
    expect(Object.keys(positions).sort()).toEqual(["east", "west"]);
    await client.appendToStream(east, jsonEvent({ type: "L", data: { n: 5 } }));
    await client.appendToStream(west, jsonEvent({ type: "L", data: { n: 5 } }));
    const resumed = client.subscribeToAll({ fromPosition: positions });
    const after: number[] = [];
    for await (const e of resumed) {
      if (!e.event.streamId.startsWith(`live-${run}`)) continue;
      after.push((e.event.data as { n: number }).n);
      if (after.length === 2) break;
    }
    expect(after).toEqual([5, 5]);
    expect(() => client.subscribeToAll({ fromPosition: 7n })).toThrow(InvalidArgumentError);
  });

  it("says a filtered merged subscription's checkpoints in order per group, and ends it with an abort signal's reason", async () => {
    const run = randomUUID().slice(0, 8);
    // In each group: noise, a match, more noise, a match (checkpoints fall between them).
    for (const name of GROUPS) {
      for (const round of [0, 1]) {
        for (let i = 0; i < 12; i++) {
          const noise = streamOwnedBy(name, `noise-${run}-${round}-${i}`);
          await client.appendToStream(noise, jsonEvent({ type: "N", data: { i } }));
        }
        const match = streamOwnedBy(name, `match-${run}-${round}`);
        await client.appendToStream(match, jsonEvent({ type: "M", data: { round } }));
      }
    }
    const abort = new AbortController();
    const sub = client.subscribeToAll({
      fromPosition: "start",
      filter: { streamNamePrefix: [`match-${run}`], checkpointInterval: 4 },
      signal: abort.signal,
    });
    const seen: { kind: "event" | "checkpoint"; partition: string; position: bigint }[] = [];
    sub.on("checkpoint", (positions) => {
      for (const [partition, position] of Object.entries(positions)) {
        if (typeof position !== "bigint") continue;
        const last = seen.findLast((s) => s.partition === partition);
        if (last?.position !== position) seen.push({ kind: "checkpoint", partition, position });
      }
    });
    const reason = new Error("the application stops");
    let matches = 0;
    const thrown = await settle(
      (async () => {
        for await (const e of sub) {
          seen.push({ kind: "event", partition: e.event.partition!, position: e.event.position });
          if (++matches === 4) setImmediate(() => abort.abort(reason));
        }
      })(),
    );
    expect(thrown).toBe(reason);
    expect(sub.isEnded).toBe(true);
    for (const name of GROUPS) {
      const mine = seen.filter((s) => s.partition === name);
      expect(mine.filter((s) => s.kind === "event")).toHaveLength(2);
      expect(mine.some((s) => s.kind === "checkpoint")).toBe(true);
      // Each group's resume points only move forwards, and a checkpoint said before an
      // event lies before it: resuming from any of them would not skip that event.
      for (let i = 1; i < mine.length; i++) {
        const [before, after] = [mine[i - 1]!, mine[i]!];
        if (after.kind === "event") expect(before.position).toBeLessThan(after.position);
        else expect(before.position).toBeLessThanOrEqual(after.position);
      }
    }
  });

  it("creates a $all persistent group on every group and a stream's group on its owner", async () => {
    const group = `g-${randomUUID().slice(0, 8)}`;
    await client.persistentSubscriptions.create("$all", group);
    for (const name of GROUPS) {
      const list = await direct[name]!.persistentSubscriptions.list("$all");
      expect(list.map((g) => g.group)).toContain(group);
    }
    const stream = streamOwnedBy("east", `ps-${group}`);
    await client.persistentSubscriptions.create(stream, group);
    expect((await direct["east"]!.persistentSubscriptions.getInfo(stream, group)).group).toBe(
      group,
    );
    const listed = await client.persistentSubscriptions.list();
    // Each names the partition it lives in; a plain client's infos name none.
    expect(
      listed
        .filter((g) => g.group === group)
        .map((g) => `${g.partition}:${g.streamId}`)
        .sort(),
    ).toEqual([`east:$all`, `east:${stream}`, `west:$all`]);
    expect((await direct["east"]!.persistentSubscriptions.list())[0]?.partition).toBeUndefined();
    // getInfo of a $all group: every group's info under `partitions`, sums at the top.
    const info = (await client.persistentSubscriptions.getInfo(
      "$all",
      group,
    )) as PartitionedPersistentSubscriptionInfo;
    expect(Object.keys(info.partitions)).toEqual([...GROUPS]);
    for (const name of GROUPS) {
      expect(info.partitions[name]!.streamId).toBe("$all");
      expect(info.partitions[name]!.group).toBe(group);
      expect(info.partitions[name]!.partition).toBe(name);
    }
    expect(info.group).toBe(group);
    expect(info.partition).toBeUndefined();
    expect(info.lastCheckpoint).toBeUndefined();
    await client.persistentSubscriptions.delete("$all", group);
    for (const name of GROUPS) {
      const list = await direct[name]!.persistentSubscriptions.list("$all");
      expect(list.map((g) => g.group)).not.toContain(group);
    }
  });

  it("refuses a node listed under another group's name, before writing anything", async () => {
    // The client believes the groups are the other way round.
    const crossed = new ChorusClient(
      ConnectionSettings.create()
        .withPartitions({
          east: nodes["west"]!.connectionString,
          west: nodes["east"]!.connectionString,
        })
        .build(),
    );
    const stream = streamOwnedBy("east", "crossed");
    try {
      const err = await settle(crossed.appendToStream(stream, jsonEvent({ type: "T", data: 1 })));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(
        /^withPartitions lists 127\.0\.0\.1:\d+ under partition east, but that node serves partition west \(--partition west\): list east's nodes under east$/,
      );
      // Tried again, refused again: no retry loop, no hang.
      const again = await settle(crossed.appendToStream(stream, jsonEvent({ type: "T", data: 2 })));
      expect(again).toBeInstanceOf(InvalidArgumentError);
      // Not in its owner's log (the other group refuses the stream whatever it holds).
      expect(await settle(collect(direct["east"]!.readStream(stream)))).toMatchObject({
        name: "StreamNotFoundError",
      });
    } finally {
      await crossed.close();
    }
  });

  it("refuses a node of no partitioned deployment listed under a group", async () => {
    const plain = await startNode({ memDb: true });
    const mixed = new ChorusClient(
      ConnectionSettings.create()
        .withPartitions({ east: plain.connectionString, west: nodes["west"]!.connectionString })
        .build(),
    );
    try {
      const east = streamOwnedBy("east", "unpartitioned");
      const err = await settle(mixed.appendToStream(east, jsonEvent({ type: "T", data: 1 })));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(
        /^withPartitions lists 127\.0\.0\.1:\d+ under partition east, but that node serves no partitioned deployment \(it was started without --partition\) and would take streams of every partition: start the partition's nodes with --partition east --partitions east,west, or list east's nodes under it$/,
      );
      const direct = new ChorusClient(plain.connectionString);
      try {
        expect(await settle(collect(direct.readStream(east)))).toMatchObject({
          name: "StreamNotFoundError",
        });
      } finally {
        await direct.close();
      }
      // The other group, rightly listed, is not held up by it.
      const west = streamOwnedBy("west", "unpartitioned");
      await mixed.appendToStream(west, jsonEvent({ type: "T", data: 2 }));
      expect(await collect(mixed.readStream(west))).toHaveLength(1);
    } finally {
      await mixed.close();
      await plain.stop();
    }
  });

  it("with a group missing from its list, never writes a stream into a group that does not own it", async () => {
    const warnings: Record<string, unknown>[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      error: () => undefined,
      warn: (_message: string, fields?: Record<string, unknown>) => warnings.push(fields ?? {}),
    };
    // The client knows only east: every stream goes there, and east refuses west's.
    const partial = new ChorusClient(
      ConnectionSettings.create()
        .withPartitions({
          east: ConnectionSettings.create()
            .withSingleNode(new URL(nodes["east"]!.connectionString).host)
            .withoutTls()
            .withLogger(logger)
            .build(),
        })
        .build(),
    );
    try {
      const west = streamOwnedBy("west", "partial");
      const err = await settle(partial.appendToStream(west, jsonEvent({ type: "T", data: 1 })));
      expect(err).toBeInstanceOf(WrongPartitionError);
      expect((err as WrongPartitionError).owner).toBe("west");
      expect(warnings).toContainEqual(
        expect.objectContaining({
          partition: "east",
          nodePartitions: "east,west",
          clientPartitions: "east",
        }),
      );
      const east = streamOwnedBy("east", "partial");
      await partial.appendToStream(east, jsonEvent({ type: "T", data: 2 }));
      expect(await settle(collect(direct["west"]!.readStream(west)))).toMatchObject({
        name: "StreamNotFoundError",
      });
    } finally {
      await partial.close();
    }
  });

  it("uses in-process nodes of the right groups, and refuses one of another group", async () => {
    const { createNode } = await import("@chorus/server");
    const embedded = await Promise.all(
      GROUPS.map((name) =>
        createNode({
          memDb: true,
          listen: false,
          logLevel: "silent",
          partition: name,
          partitions: [...GROUPS],
        }),
      ),
    );
    const [east, west] = embedded as [(typeof embedded)[0], (typeof embedded)[0]];
    const inProcess = (node: typeof east) =>
      ConnectionSettings.create().withInProcessNode(node).build();
    const right = new ChorusClient(
      ConnectionSettings.create()
        .withPartitions({ east: inProcess(east), west: inProcess(west) })
        .build(),
    );
    const wrong = new ChorusClient(
      ConnectionSettings.create()
        .withPartitions({ east: inProcess(west), west: inProcess(east) })
        .build(),
    );
    try {
      for (const owner of GROUPS) {
        const stream = streamOwnedBy(owner, "in-process");
        await right.appendToStream(stream, jsonEvent({ type: "T", data: owner }));
        const [event] = await collect(right.readStream(stream));
        expect(event?.event.partition).toBe(owner);
      }
      const err = await settle(
        wrong.appendToStream(
          streamOwnedBy("east", "in-process-wrong"),
          jsonEvent({ type: "T", data: 0 }),
        ),
      );
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(
        /under partition east, but that node serves partition west/,
      );
    } finally {
      await Promise.allSettled([right.close(), wrong.close()]);
      await Promise.allSettled(embedded.map((n) => n.close()));
    }
  });

  it("with one group unreachable, serves the other and names the group in every failure", async () => {
    const [deadPort] = await freePorts(1); // nothing listens there
    const halfDown = (westOptions: string) =>
      new ChorusClient(
        ConnectionSettings.create()
          .withPartitions({
            east: nodes["east"]!.connectionString,
            west: `chorus://127.0.0.1:${deadPort}?tls=false&discoverDelay=50&${westOptions}`,
          })
          .build(),
      );
    // Still discovering at the deadline: the write fails then, saying which group and why.
    const waiting = halfDown("operationTimeout=1000&maxDiscoverAttempts=1000");
    // Discovery gives up first: the write fails with it, naming the group.
    const givingUp = halfDown("operationTimeout=30000&maxDiscoverAttempts=3");
    try {
      const west = streamOwnedBy("west", "half-down");
      const timedOut = await settle(
        waiting.appendToStream(west, jsonEvent({ type: "T", data: 1 })),
      );
      expect(timedOut).toBeInstanceOf(TimeoutError);
      expect((timedOut as Error).message).toMatch(
        new RegExp(
          `^appendToStream \\(partition west\\) timed out after 1000 ms: no connection yet: no node found in \\d+ of 1000 discovery attempt\\(s\\) so far: 127\\.0\\.0\\.1:${deadPort}: connection refused \\(ECONNREFUSED\\)$`,
        ),
      );
      // The other group is not held up.
      await waiting.appendToStream(
        streamOwnedBy("east", "half-down"),
        jsonEvent({ type: "T", data: 2 }),
      );
      const refused = await settle(
        givingUp.appendToStream(west, jsonEvent({ type: "T", data: 3 })),
      );
      expect(refused).toBeInstanceOf(DiscoveryError);
      expect((refused as Error).message).toMatch(
        /^partition west: no node found after 3 discovery attempt\(s\): 127\.0\.0\.1:\d+: connection refused \(ECONNREFUSED\)$/,
      );
    } finally {
      await Promise.all([waiting.close(), givingUp.close()]);
    }
  });
});
