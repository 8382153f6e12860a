// The soak's checkers can fail: histories with a lost acknowledged write, a duplicate, two
// successes for one expected version, a torn or failed-but-present append, and subscriptions
// with a gap, a repeat or an event the log does not hold, each reported. Also the schedule:
// one seed, one fault schedule; and the soak's flags.
import { describe, expect, it } from "vitest";
import {
  checkAppendHistory,
  checkLogsAgree,
  checkPersistentHistory,
  checkSubscriptionHistory,
  type AppendRecord,
  type LogEntry,
  type PersistentHanding,
} from "../cluster/write-checker.js";
import { kindsOf, parseRealArgs, UsageError } from "./main.js";
import { checkReaders } from "./phase.js";
import type { PersistentConsumers, Subscriber } from "./workload.js";
import { planFaults, type FaultKind } from "./schedule.js";

/** A log of `entries` ([stream, id] pairs) with revisions per stream and positions 100, 200, ... */
function logOf(entries: readonly (readonly [string, string])[]): LogEntry[] {
  const next = new Map<string, bigint>();
  return entries.map(([streamId, id], i) => {
    const revision = next.get(streamId) ?? 0n;
    next.set(streamId, revision + 1n);
    return { streamId, id, revision, position: BigInt((i + 1) * 100) };
  });
}

function acked(
  streamId: string,
  expectedVersion: AppendRecord["expectedVersion"],
  eventIds: string[],
  nextExpectedVersion: bigint,
  position: bigint,
  writer = 0,
): AppendRecord {
  return {
    writer,
    streamId,
    expectedVersion,
    eventIds,
    outcome: { kind: "acknowledged", nextExpectedVersion, position },
  };
}

describe("checkAppendHistory", () => {
  const log = logOf([
    ["s", "a"],
    ["s", "b"],
    ["t", "c"],
    ["s", "d"],
  ]);
  const good: AppendRecord[] = [
    acked("s", "no_stream", ["a", "b"], 1n, 200n),
    acked("t", "any", ["c"], 0n, 300n, 1),
    acked("s", 1n, ["d"], 2n, 400n),
  ];

  it("passes a correct history", () => {
    expect(checkAppendHistory(good, log)).toEqual([]);
  });

  it("reports an acknowledged append that is missing", () => {
    const lost = acked("s", "stream_exists", ["e"], 3n, 500n);
    const violations = checkAppendHistory([...good, lost], log);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatch(
      /^lost: acknowledged append by writer 0 to s .*1 of its 1 events missing/,
    );
  });

  it("reports an event id present twice", () => {
    const dup = [...log, { streamId: "t", id: "c", revision: 1n, position: 500n }];
    const violations = checkAppendHistory(good, dup);
    expect(violations).toContainEqual(
      expect.stringMatching(/^duplicate: event c is in the log 2 times/),
    );
  });

  it("reports two successes for one (stream, expected version)", () => {
    // Both were told they wrote right after revision 1 of s; the log holds both, one after the other.
    const twice = logOf([
      ["s", "a"],
      ["s", "b"],
      ["s", "d"],
      ["s", "e"],
    ]);
    const violations = checkAppendHistory(
      [
        acked("s", "no_stream", ["a", "b"], 1n, 200n),
        acked("s", 1n, ["d"], 2n, 300n),
        acked("s", 1n, ["e"], 3n, 400n, 2),
      ],
      twice,
    );
    expect(violations).toContainEqual(expect.stringMatching(/^2 successes for \(s expected 1\)/));
    expect(violations).toContainEqual(
      expect.stringMatching(/append by writer 2 to s \(expected 1, ids e\) was written at s@3/),
    );
  });

  it("reports two successes for no_stream on one stream", () => {
    const violations = checkAppendHistory(
      [acked("s", "no_stream", ["a"], 0n, 100n), acked("s", "no_stream", ["b"], 1n, 200n, 1)],
      logOf([
        ["s", "a"],
        ["s", "b"],
      ]),
    );
    expect(violations).toContainEqual(
      expect.stringMatching(/^2 successes for \(s expected no_stream\)/),
    );
  });

  it("reports a failed append that is present, a torn one, and an event no writer appended", () => {
    const records: AppendRecord[] = [
      acked("s", "no_stream", ["a", "b"], 1n, 200n),
      {
        writer: 1,
        streamId: "t",
        expectedVersion: 5n,
        eventIds: ["c"],
        outcome: { kind: "failed", reason: "wrong expected version" },
      },
      {
        writer: 2,
        streamId: "s",
        expectedVersion: "any",
        eventIds: ["d", "x"],
        outcome: { kind: "unknown", reason: "TimeoutError" },
      },
    ];
    const violations = checkAppendHistory(records, [
      ...log,
      { streamId: "s", id: "zz", revision: 3n, position: 500n },
    ]);
    expect(violations).toContainEqual(
      expect.stringMatching(/^failed append by writer 1 to t .* is present/),
    );
    expect(violations).toContainEqual(
      expect.stringMatching(/^torn: append by writer 2 .* partly present \(1 of 2\)/),
    );
    expect(violations).toContainEqual(expect.stringMatching(/^unexpected: s@3 .* holds event zz/));
  });

  it("accepts an unknown append that is wholly present or wholly absent", () => {
    const records: AppendRecord[] = [
      ...good.slice(0, 2),
      {
        writer: 0,
        streamId: "s",
        expectedVersion: 1n,
        eventIds: ["d"],
        outcome: { kind: "unknown", reason: "TimeoutError" },
      },
      {
        writer: 0,
        streamId: "s",
        expectedVersion: 2n,
        eventIds: ["y"],
        outcome: { kind: "unknown", reason: "TimeoutError" },
      },
    ];
    expect(checkAppendHistory(records, log)).toEqual([]);
  });

  it("reports a gap in a stream's revisions and a wrong acknowledged position", () => {
    const gap: LogEntry[] = [
      { streamId: "s", id: "a", revision: 0n, position: 100n },
      { streamId: "s", id: "b", revision: 2n, position: 200n },
    ];
    const violations = checkAppendHistory(
      [acked("s", "any", ["a"], 0n, 100n), acked("s", "any", ["b"], 1n, 200n)],
      gap,
    );
    expect(violations).toContainEqual(expect.stringMatching(/^revisions of s are not 0, 1, 2/));
    expect(violations).toContainEqual(
      expect.stringMatching(
        /was acknowledged as revision 1 at position 200, but its last event is s@2/,
      ),
    );
  });
});

describe("checkSubscriptionHistory", () => {
  const log = logOf([
    ["s", "a"],
    ["t", "b"],
    ["s", "c"],
    ["s", "d"],
  ]);

  it("passes a subscription that was handed the committed log", () => {
    expect(checkSubscriptionHistory("sub", log, log)).toEqual([]);
  });

  it("reports a gap", () => {
    const violations = checkSubscriptionHistory("sub", [log[0]!, log[1]!, log[3]!], log);
    expect(violations).toContainEqual(
      expect.stringMatching(/^sub: gap: s@2 .* after revision 0 of that stream \(missing 1\.\.1\)/),
    );
    expect(violations).toContainEqual(expect.stringMatching(/^sub: event 2 delivered was s@2/));
  });

  it("reports a repeat", () => {
    const violations = checkSubscriptionHistory(
      "sub",
      [log[0]!, log[1]!, log[2]!, log[2]!, log[3]!],
      log,
    );
    expect(violations).toContainEqual("sub: repeat: event c delivered 2 times");
    expect(violations).toContainEqual(expect.stringMatching(/^sub: repeat or reorder: s@1/));
  });

  it("reports events missing at the end, and events beyond the committed log", () => {
    expect(checkSubscriptionHistory("sub", log.slice(0, 2), log)).toEqual([
      "sub: delivered 2 of 4 committed events; next missing s@1 (position 300)",
    ]);
    const phantom = { streamId: "s", id: "lost", revision: 3n, position: 500n };
    expect(checkSubscriptionHistory("sub", [...log, phantom], log)).toEqual([
      "sub: delivered 1 events beyond the committed log, from s@3 (position 500) (lost)",
    ]);
  });
});

describe("checkPersistentHistory", () => {
  const log = logOf([
    ["s", "a"],
    ["t", "b"],
    ["s", "c"],
  ]);
  const to = (consumer: string, e: LogEntry): PersistentHanding => ({ consumer, ...e });
  /** Every handing's ack confirmed right after it. */
  const confirmedEach = (handings: readonly PersistentHanding[]) =>
    new Map(handings.map((h, k) => [h.id, k + 1]));

  it("passes every committed event handed once and confirmed, and counts events two consumers handled", () => {
    const handings = [to("c1", log[0]!), to("c2", log[1]!), to("c1", log[2]!)];
    expect(
      checkPersistentHistory("g", { handings, confirmedAt: confirmedEach(handings) }, log),
    ).toEqual({
      violations: [],
      byTwo: 0,
    });
    // b handed to c1, whose connection dropped before its ack was confirmed; then to c2.
    const again = [to("c1", log[0]!), to("c1", log[1]!), to("c2", log[1]!), to("c2", log[2]!)];
    const confirmedAt = new Map([
      ["a", 1],
      ["b", 3],
      ["c", 4],
    ]);
    expect(checkPersistentHistory("g", { handings: again, confirmedAt }, log)).toEqual({
      violations: [],
      byTwo: 1,
    });
  });

  it("reports a committed event never handed, and one whose ack was never confirmed", () => {
    const handings = [to("c1", log[0]!), to("c1", log[1]!)];
    const { violations } = checkPersistentHistory(
      "g",
      { handings, confirmedAt: new Map([["a", 1]]) },
      log,
    );
    expect(violations).toEqual([
      "g: committed but never handed to a consumer: 1 event(s): s@1 (position 300) (c)",
      "g: handed but its ack never confirmed: 1 event(s): t@0 (position 200) (b)",
    ]);
  });

  it("reports an event the log does not hold, one handed twice to a consumer, and one handed after its ack was confirmed", () => {
    const phantom = { streamId: "s", id: "lost", revision: 2n, position: 400n };
    const handings = [
      to("c1", log[0]!),
      to("c1", log[1]!),
      to("c1", log[1]!),
      to("c2", log[2]!),
      to("c2", log[0]!),
      to("c2", phantom),
    ];
    const confirmedAt = new Map([
      ["a", 1],
      ["b", 2],
      ["c", 4],
      ["lost", 6],
    ]);
    const { violations, byTwo } = checkPersistentHistory("g", { handings, confirmedAt }, log);
    expect(violations).toEqual([
      "g: handed an event the committed log does not hold: 1 event(s): s@2 (position 400) (lost) to c2",
      "g: handed twice to one consumer: 1 event(s): t@0 (position 200) (b) to c1",
      "g: handed again after its ack was confirmed: 2 event(s): " +
        "t@0 (position 200) (b) to c1, handing 2, confirmed at 2; " +
        "s@0 (position 100) (a) to c2, handing 4, confirmed at 1",
    ]);
    expect(byTwo).toBe(1);
  });

  it("spells out at most five events of a kind", () => {
    const many = logOf(Array.from({ length: 8 }, (_, i) => ["s", `e${i}`] as const));
    const { violations } = checkPersistentHistory(
      "g",
      { handings: [], confirmedAt: new Map() },
      many,
    );
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatch(
      /^g: committed but never handed to a consumer: 8 event\(s\): s@0 .*; \.\.\. 3 more$/,
    );
  });
});

describe("checkReaders over the groups of a partitioned deployment", () => {
  // Two groups, each with positions of its own (both have 100 and 200).
  const a = logOf([
    ["chaos-2", "a1"],
    ["chaos-2", "a2"],
  ]);
  const b = logOf([
    ["chaos-0", "b1"],
    ["chaos-1", "b2"],
  ]);
  const tagged = (partition: string, e: LogEntry) => ({ ...e, partition });
  const subscriber = (delivered: Subscriber["delivered"]): Subscriber => ({
    name: "merged",
    streamId: undefined,
    delivered,
    resubscribes: 0,
    drops: new Map(),
    stop: () => Promise.resolve(),
  });
  const consumers = (events: readonly LogEntry[]): PersistentConsumers => ({
    group: "g",
    strategy: "RoundRobin",
    handings: events.map((e) => ({ consumer: "c", ...e })),
    confirmedAt: new Map(events.map((e, k) => [e.id, k + 1])),
    drops: new Map(),
    ackRetries: 0,
    stop: () => Promise.resolve(),
  });
  const check = async (delivered: Subscriber["delivered"]) => {
    const violations: string[] = [];
    await checkReaders({
      tag: "t",
      print: () => undefined,
      violation: (v) => violations.push(v),
      subscribers: [subscriber(delivered)],
      persistent: consumers([...a, ...b]),
      strategy: "RoundRobin",
      logs: [
        { partition: "a", log: a },
        { partition: "b", log: b },
      ],
    });
    return violations;
  };

  it("checks each group's events in that group's order, however the groups interleave", async () => {
    const merged = [tagged("b", b[0]!), tagged("a", a[0]!), tagged("a", a[1]!), tagged("b", b[1]!)];
    expect(await check(merged)).toEqual([]);
  });

  it("reports a repeat within a group, and an event of no known group", async () => {
    const violations = await check([
      tagged("a", a[0]!),
      tagged("b", b[0]!),
      tagged("b", b[0]!),
      tagged("a", a[1]!),
      tagged("b", b[1]!),
      tagged("c", b[1]!),
    ]);
    expect(violations).toContainEqual("merged, group b: repeat: event b1 delivered 2 times");
    expect(violations).toContainEqual(
      expect.stringMatching(/^merged: 1 event\(s\) from an unknown group, first b2 \(c\)/),
    );
    expect(violations.filter((v) => v.startsWith("merged, group a"))).toEqual([]);
  });
});

describe("checkLogsAgree", () => {
  it("reports a lagging node and a diverging one", () => {
    const log = logOf([
      ["s", "a"],
      ["s", "b"],
    ]);
    expect(checkLogsAgree([log, log])).toEqual([]);
    expect(checkLogsAgree([log, log.slice(0, 1)])).toEqual(["node 1 holds 1 of 2 log entries"]);
    const other = [log[0]!, { ...log[1]!, id: "x" }];
    expect(checkLogsAgree([log, other])[0]).toMatch(/^node 1's log diverges at entry 1/);
  });
});

describe("the soak's schedule and flags", () => {
  const kinds: FaultKind[] = ["kill-leader", "pause-node", "proxy-blackhole", "kernel-partition"];
  const plan = (seed: number) =>
    planFaults({
      seed,
      phase: "disk",
      durationMs: 120_000,
      nodes: 3,
      kinds,
      electionTimeoutMs: 500,
    });

  it("draws the same schedule from the same seed, another from another", () => {
    expect(plan(42)).toEqual(plan(42));
    expect(plan(42)).not.toEqual(plan(43));
    const { process, network } = plan(42);
    expect(process.length).toBeGreaterThan(5);
    expect(network.length).toBeGreaterThan(5);
    for (const f of process) expect(["kill-leader", "pause-node"]).toContain(f.kind);
    for (const f of network) expect(["proxy-blackhole", "kernel-partition"]).toContain(f.kind);
    for (const f of process.filter((f) => f.kind === "pause-node")) {
      expect(f.durationMs).toBeGreaterThan(1_000);
    }
  });

  it("stalls and fails disks in the on-disk phase only, where their file systems can be mounted", () => {
    const stalls = ["disk-stall-leader", "disk-stall-node"];
    const disk = kindsOf("disk", { kernelFaults: false, tmpfs: false });
    expect(disk).toEqual(expect.arrayContaining(stalls));
    expect(disk).not.toContain("disk-full");
    expect(kindsOf("disk", { kernelFaults: false, tmpfs: true })).toContain("disk-full");
    expect(disk).not.toContain("disk-eio");
    expect(disk).not.toContain("power-loss");
    expect(kindsOf("disk", { kernelFaults: false, tmpfs: false, faultyFs: true })).toEqual(
      expect.arrayContaining(["disk-eio", "power-loss"]),
    );
    const mem = kindsOf("mem", { kernelFaults: true, tmpfs: true, faultyFs: true });
    for (const k of [...stalls, "disk-full", "disk-eio", "power-loss"]) {
      expect(mem).not.toContain(k);
    }
  });

  it("parses --minutes, --seed, --phases and --faults, and refuses anything else", () => {
    expect(parseRealArgs(["--minutes", "0.5", "--seed=7", "--phases", "mem"])).toEqual({
      minutes: 0.5,
      seed: 7,
      phases: ["mem"],
      faults: undefined,
    });
    expect(parseRealArgs(["--faults", "kill-node,proxy-reset"], () => 0).faults).toEqual([
      "kill-node",
      "proxy-reset",
    ]);
    const pg = parseRealArgs(["--phases", "disk,pg", "--faults", "db-crash,kill-instance"]);
    expect(pg.phases).toEqual(["disk", "pg"]);
    expect(pg.faults).toEqual(["db-crash", "kill-instance"]);
    expect(parseRealArgs([]).phases).toEqual(["disk", "mem", "pg", "parts"]);
    expect(() => parseRealArgs(["--voters", "5"])).toThrow(UsageError);
    expect(() => parseRealArgs(["--minutes", "0"])).toThrow(/positive/);
    expect(() => parseRealArgs(["--seed", "x"])).toThrow(/integer/);
    expect(parseRealArgs(["--phases", "parts"]).phases).toEqual(["parts"]);
    expect(() => parseRealArgs(["--phases", "cloud"])).toThrow(/unknown phase/);
    expect(() => parseRealArgs(["--faults", "meteor"])).toThrow(/unknown fault kind/);
  });
});
