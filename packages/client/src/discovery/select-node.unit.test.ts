import { describe, expect, it } from "vitest";
import type { MemberInfo, NodePreference } from "../types.js";
import { isPreferred, selectNode } from "./select-node.js";
import { shuffle } from "./shuffle.js";
import { mergeViews } from "./discover.js";

function member(id: string, state: string, extra: Partial<MemberInfo> = {}): MemberInfo {
  return {
    instanceId: id,
    state,
    isAlive: true,
    timestamp: "t",
    externalTcp: { host: id, port: 1113 },
    externalHttp: { host: id, port: 2113 },
    lastCommitPosition: 0n,
    writerCheckpoint: 0n,
    chaserCheckpoint: 0n,
    epochNumber: 1,
    epochPosition: 0n,
    epochId: "",
    nodePriority: 0,
    isReadOnlyReplica: state === "ReadOnlyReplica",
    ...extra,
  };
}

const L = member("L", "Leader");
const F1 = member("F1", "Follower");
const F2 = member("F2", "Follower");
const R = member("R", "ReadOnlyReplica");
const deadLeader = member("DL", "Leader", { isAlive: false });
const oldLeader = member("OL", "Leader", { epochNumber: 0 });
const catchingUp = member("C", "CatchingUp");
const noTcp = member("N", "Leader", { externalTcp: undefined });
const first = () => 0;

describe("selectNode", () => {
  const cases: Array<[string, NodePreference, MemberInfo[], string | undefined]> = [
    ["leader when there is one", "leader", [F1, L, R], "L"],
    ["a follower when no leader", "leader", [F1, R], "F1"],
    ["a replica when only replicas", "leader", [R], "R"],
    ["never a dead leader", "leader", [deadLeader, F2], "F2"],
    ["the leader of the highest epoch", "leader", [oldLeader, L], "L"],
    ["nothing when none can serve", "leader", [catchingUp, deadLeader], undefined],
    ["not a member without external TCP", "leader", [noTcp], undefined],
    ["follower for follower", "follower", [L, F1, R], "F1"],
    ["leader when no follower", "follower", [L, R], "L"],
    ["replica for readOnlyReplica", "readOnlyReplica", [L, F1, R], "R"],
    ["follower when no replica", "readOnlyReplica", [L, F1], "F1"],
    ["random picks among serving", "random", [catchingUp, L, F1], "F1"],
    ["empty", "random", [], undefined],
  ];
  it.each(cases)("%s", (_name, preference, members, expected) => {
    expect(selectNode(preference, members, first)?.instanceId).toBe(expected);
  });

  it("random and follower spread with the rng", () => {
    const last = () => 0.999;
    expect(selectNode("follower", [F1, F2], last)?.instanceId).toBe("F1");
    expect(selectNode("follower", [F1, F2], first)?.instanceId).toBe("F2");
    expect(selectNode("random", [L, F1, F2], first)?.instanceId).toBe("F1");
  });

  it("spreads over leaders of one epoch (instances on a shared database), still preferring the highest epoch", () => {
    const L2 = member("L2", "Leader");
    const last = () => 0.999;
    expect(selectNode("leader", [L, L2], last)?.instanceId).toBe("L");
    expect(selectNode("leader", [L, L2], first)?.instanceId).toBe("L2");
    expect(selectNode("leader", [oldLeader, L, L2], first)?.instanceId).not.toBe("OL");
    expect(selectNode("leader", [L, oldLeader], last)?.instanceId).toBe("L");
  });
});

describe("shuffle", () => {
  it("is a permutation and does not modify its input", () => {
    const input = [1, 2, 3, 4, 5];
    const out = shuffle(input, () => 0.5);
    expect(input).toEqual([1, 2, 3, 4, 5]);
    expect([...out].sort()).toEqual([1, 2, 3, 4, 5]);
  });

  it("is deterministic for a given rng (Fisher–Yates)", () => {
    // random() = 0 swaps every item with index 0: [1,2,3,4] -> [2,3,4,1]
    expect(shuffle([1, 2, 3, 4], () => 0)).toEqual([2, 3, 4, 1]);
    // random() ~ 1 leaves every item in place
    expect(shuffle([1, 2, 3, 4], () => 0.9999)).toEqual([1, 2, 3, 4]);
  });

  it("is unbiased: every permutation of 3 is about equally likely", () => {
    // mulberry32
    let seed = 42;
    const rng = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const counts = new Map<string, number>();
    for (let i = 0; i < 60_000; i++) {
      const key = shuffle(["a", "b", "c"], rng).join("");
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(counts.size).toBe(6);
    for (const n of counts.values()) expect(Math.abs(n - 10_000)).toBeLessThan(600);
  });
});

describe("mergeViews", () => {
  it("keeps one entry per instance, the one of the newest epoch", () => {
    const stale = member("A", "Leader", { epochNumber: 1 });
    const fresh = member("A", "Follower", { epochNumber: 2 });
    const merged = mergeViews([[stale, F1], [fresh]]);
    expect(merged.map((m) => `${m.instanceId}:${m.state}`).sort()).toEqual([
      "A:Follower",
      "F1:Follower",
    ]);
  });
});

describe("isPreferred", () => {
  const cases: Array<[NodePreference, MemberInfo, boolean]> = [
    ["leader", L, true],
    ["leader", F1, false],
    ["follower", F1, true],
    ["follower", L, false],
    ["follower", R, false],
    ["readOnlyReplica", R, true],
    ["readOnlyReplica", F1, false],
    ["random", L, true],
    ["random", R, true],
    ["random", catchingUp, false],
  ];
  it.each(cases)("%s, %o: %s", (preference, node, expected) => {
    expect(isPreferred(preference, node)).toBe(expected);
  });
});
