// `chorus --partition NAME=CONNECTION ...`: the command line over a partitioned deployment
// (single-node groups, real server processes): each stream to its group, status of every
// group, $all merged, and export / import, also into a deployment of more groups.
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { partitionOf } from "@chorus/protocol";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runChorus as chorus } from "./test-support/run.js";

const TWO = ["east", "west"] as const;
const THREE = ["east", "west", "north"] as const;

/** One in-memory single-node group per name of `names`. */
async function startGroups(names: readonly string[]): Promise<Record<string, TestNode>> {
  const nodes = await Promise.all(
    names.map((name) =>
      startNode({
        memDb: true,
        args: ["--partition", name, "--partitions", names.join(",")],
      }),
    ),
  );
  return Object.fromEntries(names.map((name, i) => [name, nodes[i]!]));
}

function partitionFlags(nodes: Record<string, TestNode>): string[] {
  return Object.entries(nodes).flatMap(([name, node]) => [
    "--partition",
    `${name}=${node.connectionString}`,
  ]);
}

/** A stream id that `owner` owns among `groups`, with this prefix. */
function streamOwnedBy(owner: string, groups: readonly string[], prefix: string): string {
  for (let i = 0; ; i++) {
    const id = `${prefix}-${i}`;
    if (partitionOf(id, groups) === owner) return id;
  }
}

/** The event types of `stream` as the node `node` holds it; undefined when it has none. */
async function typesOn(node: TestNode, stream: string): Promise<string[] | undefined> {
  const client = new ChorusClient(node.connectionString);
  try {
    const types: string[] = [];
    for await (const e of client.readStream(stream)) types.push(e.event.type);
    return types;
  } catch (err) {
    if ((err as Error).name === "StreamNotFoundError") return undefined;
    throw err;
  } finally {
    await client.close();
  }
}

let two: Record<string, TestNode>;
let three: Record<string, TestNode>;
let dir: string;

beforeAll(async () => {
  [two, three] = await Promise.all([startGroups(TWO), startGroups(THREE)]);
  dir = await mkdtemp(join(tmpdir(), "chorus-cli-partitions-"));
});

afterAll(async () => {
  await Promise.allSettled(
    [...Object.values(two ?? {}), ...Object.values(three ?? {})].map((n) => n.stop()),
  );
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("chorus over a partitioned deployment", () => {
  it("appends each stream to its group, reads it back, and lists every group's members", async () => {
    const flags = partitionFlags(two);
    const prefix = `cli-routed-${randomUUID()}`;
    for (const owner of TWO) {
      const stream = streamOwnedBy(owner, TWO, prefix);
      const appended = await chorus([...flags, "append", stream, "--type", `To-${owner}`]);
      expect(appended.stderr).toBe("");
      expect(appended.code).toBe(0);
      // In its owner's log, nowhere else.
      expect(await typesOn(two[owner]!, stream)).toEqual([`To-${owner}`]);
      const read = await chorus([...flags, "read", stream, "--json"]);
      expect(read.code).toBe(0);
      expect(JSON.parse(read.stdout.trim())).toMatchObject({
        streamId: stream,
        eventType: `To-${owner}`,
        partition: owner,
      });
    }
    const all = await chorus([...flags, "read", "$all", "--json"]);
    expect(all.code).toBe(0);
    const records = all.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { streamId: string; partition: string });
    for (const owner of TWO) {
      expect(records).toContainEqual(
        expect.objectContaining({ streamId: streamOwnedBy(owner, TWO, prefix), partition: owner }),
      );
    }
    for (const command of ["read", "tail"]) {
      const fromPosition = await chorus([...flags, command, "$all", "--from", "5"]);
      expect(fromPosition.code).toBe(2);
      expect(fromPosition.stderr).toBe(
        "chorus: --from 5: over partitions '$all' takes --from start or end (a position is one partition's; read one partition with --connection to start at a position)\n",
      );
    }
    const status = await chorus([...flags, "status", "--json"]);
    expect(status.code).toBe(0);
    const members = status.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { partition: string; state: string; lag: string | null });
    expect(members.map((m) => m.partition).sort()).toEqual(["east", "west"]);
    expect(members.every((m) => m.state === "Leader" && m.lag === "0")).toBe(true);
    const text = await chorus([...flags, "status"]);
    expect(text.stdout).toMatch(
      /^partitions east=chorus:\/\/.*, west=chorus:\/\/.*: 2 members, east: leader 127\.0\.0\.1:\d+ \(epoch \d+\); west: leader /,
    );
    expect(text.stdout).toMatch(/^PARTITION\s+ENDPOINT/m);
  });

  it("exports $all of every group into one file and imports it into three groups, each stream to its new owner", async () => {
    const prefix = `cli-moved-${randomUUID()}`;
    const streams = [
      ...TWO.map((owner) => streamOwnedBy(owner, TWO, `${prefix}-a`)),
      // Some the third group wins: one stream of each group of three.
      ...THREE.map((owner) => streamOwnedBy(owner, THREE, `${prefix}-b`)),
    ];
    const client = new ChorusClient(
      ConnectionSettings.create()
        .withPartitions(Object.fromEntries(TWO.map((n) => [n, two[n]!.connectionString])))
        .build(),
    );
    try {
      for (const stream of streams)
        await client.appendToStream(stream, jsonEvent({ type: "Moved", data: { stream } }));
    } finally {
      await client.close();
    }
    const file = join(dir, `${prefix}.jsonl`);
    const exported = await chorus([
      ...partitionFlags(two),
      "export",
      "--all",
      "--out",
      file,
      "--json",
    ]);
    expect(exported.stderr).toBe("");
    expect(exported.code).toBe(0);
    const lines = (await readFile(file, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { streamId: string; partition?: string });
    for (const stream of streams) {
      // Each once, naming the group it was exported from.
      expect(lines.filter((l) => l.streamId === stream)).toEqual([
        expect.objectContaining({ partition: partitionOf(stream, TWO) }),
      ]);
    }
    const imported = await chorus([...partitionFlags(three), "import", file, "--json"]);
    expect(imported.stderr).toBe("");
    expect(imported.code).toBe(0);
    for (const stream of streams) {
      const owner = partitionOf(stream, THREE);
      expect(await typesOn(three[owner]!, stream)).toEqual(["Moved"]);
    }
  });

  it("lists persistent groups with their partition, and a $all group's info per partition", async () => {
    const flags = partitionFlags(two);
    const group = `g-${randomUUID().slice(0, 8)}`;
    const stream = streamOwnedBy("west", TWO, `cli-group-${group}`);
    for (const on of ["$all", stream]) {
      const created = await chorus([...flags, "subscriptions", "create", on, group]);
      expect(created.code).toBe(0);
    }
    const listed = await chorus([...flags, "subscriptions", "list", "--json"]);
    expect(listed.code).toBe(0);
    const mine = listed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { group: string; streamId: string; partition: string })
      .filter((g) => g.group === group)
      .map((g) => `${g.partition}:${g.streamId}`)
      .sort();
    expect(mine).toEqual(["east:$all", "west:$all", `west:${stream}`]);
    const text = await chorus([...flags, "subscriptions", "list"]);
    expect(text.stdout).toMatch(/^PARTITION\s+STREAM\s+GROUP/);
    const info = await chorus([...flags, "subscriptions", "info", "$all", group]);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(
      /^partitions:\n {2}east: Idle, in flight 0, parked 0, last checkpoint -, consumers 0\n {2}west: Idle/m,
    );
    expect(info.stdout).not.toMatch(/undefined/);
  });

  it("refuses --partition with --connection, a value without NAME=, and a group's node listed under another name", async () => {
    const both = await chorus([
      "--connection",
      two["east"]!.connectionString,
      "--partition",
      `east=${two["east"]!.connectionString}`,
      "status",
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give either --connection or --partition NAME=CONNECTION/);
    const bare = await chorus(["--partition", two["east"]!.connectionString, "status"]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/--partition takes NAME=CONNECTION/);
    const crossed = await chorus([
      "--partition",
      `east=${two["west"]!.connectionString}`,
      "--partition",
      `west=${two["east"]!.connectionString}`,
      "append",
      "crossed",
      "--type",
      "T",
    ]);
    expect(crossed.code).toBe(2);
    expect(crossed.stderr).toMatch(
      /lists 127\.0\.0\.1:\d+ under partition (east|west), but that node serves partition (west|east)/,
    );
  });
});
