import { describe, expect, it } from "vitest";
import { MemLog } from "../sim/mem-log.js";
import { ConsensusCore, ConsensusInvariantError } from "./raft.js";
import type {
  AppendMessage,
  CoreConfig,
  Effect,
  HardState,
  LogPoint,
  LogRecord,
  Message,
  NodeId,
} from "./types.js";

const MIN_MS = 500;
const MAX_MS = 1_000;
const EPOCH_RECORD_BYTES = 16;

type Spec = readonly (readonly [epoch: number, length: number])[];

function records(spec: Spec): LogRecord<string>[] {
  let position = 0;
  return spec.map(([epoch, length], i) => {
    const r: LogRecord<string> = {
      epoch,
      position,
      length,
      kind: "data",
      payload: `r${i}@e${epoch}`,
    };
    position += length;
    return r;
  });
}

interface NodeOptions {
  voters?: readonly NodeId[];
  learners?: readonly NodeId[];
  log?: Spec;
  durable?: number;
  hardState?: HardState;
  commit?: number;
  priorities?: Record<NodeId, number>;
  random?: () => number;
  nowMs?: number;
  amnesiac?: boolean;
  maxBatchBytes?: number;
  maxInFlightBytes?: number;
}

class TestNode {
  readonly log: MemLog<string>;
  readonly core: ConsensusCore<string>;
  effects: Effect<string>[] = [];

  constructor(
    readonly id: NodeId,
    o: NodeOptions = {},
  ) {
    this.log = new MemLog(records(o.log ?? []));
    this.log.durable = o.durable ?? this.log.end();
    const cfg: CoreConfig<string> = {
      id,
      voters: o.voters ?? ["n1", "n2", "n3"],
      learners: o.learners ?? [],
      electionTimeoutMinMs: MIN_MS,
      electionTimeoutMaxMs: MAX_MS,
      heartbeatMs: 50,
      maxBatchBytes: o.maxBatchBytes ?? 10_000,
      ...(o.maxInFlightBytes !== undefined ? { maxInFlightBytes: o.maxInFlightBytes } : {}),
      random: o.random ?? (() => 0),
      epochRecord: (epoch, leader) => ({
        length: EPOCH_RECORD_BYTES,
        payload: `epoch:${epoch}:${leader}`,
      }),
      ...(o.priorities ? { priorities: o.priorities } : {}),
    };
    this.core = new ConsensusCore(cfg, this.log, {
      hardState: o.hardState ?? { epoch: this.log.lastPoint().epoch, votedFor: undefined },
      commitPosition: o.commit ?? 0,
      nowMs: o.nowMs ?? 0,
      amnesiac: o.amnesiac === true,
    });
  }

  /** Applies log effects as a driver would and remembers all effects of the input. */
  run(effects: Effect<string>[]): Effect<string>[] {
    for (const e of effects) {
      if (e.type === "append") this.log.append(e.records);
      if (e.type === "truncate") this.log.truncate(e.position);
    }
    this.effects = effects;
    return effects;
  }

  tick(nowMs: number): Effect<string>[] {
    return this.run(this.core.tick(nowMs));
  }

  receive(from: NodeId, m: Message<string>, nowMs?: number): Effect<string>[] {
    return this.run(this.core.receive(from, m, nowMs));
  }

  durableTo(position: number): Effect<string>[] {
    this.log.durable = position;
    return this.run(this.core.localDurable(position));
  }

  sent(type?: Message<string>["type"]): { to: NodeId; message: Message<string> }[] {
    return this.effects.flatMap((e) =>
      e.type === "send" && (type === undefined || e.message.type === type)
        ? [{ to: e.to, message: e.message }]
        : [],
    );
  }

  sentTo(to: NodeId): Message<string> | undefined {
    return this.sent().find((s) => s.to === to)?.message;
  }
}

function of<T extends Effect<string>["type"]>(
  effects: readonly Effect<string>[],
  type: T,
): Extract<Effect<string>, { type: T }>[] {
  return effects.filter((e): e is Extract<Effect<string>, { type: T }> => e.type === type);
}

/** Drives `node` through pre-vote and vote (granted by `grantors`) to leadership. */
function elect(node: TestNode, grantors: readonly NodeId[], nowMs = 2 * MAX_MS): void {
  node.tick(nowMs);
  expect(node.core.state.role).toBe("preCandidate");
  const preEpoch = node.core.state.epoch + 1;
  for (const g of grantors) {
    node.receive(g, {
      type: "VoteReply",
      epoch: preEpoch,
      preVote: true,
      granted: true,
      voterEpoch: preEpoch - 1,
    });
  }
  expect(node.core.state.role).toBe("candidate");
  for (const g of grantors) {
    node.receive(g, {
      type: "VoteReply",
      epoch: preEpoch,
      preVote: false,
      granted: true,
      voterEpoch: preEpoch,
    });
  }
  expect(node.core.state.role).toBe("leader");
}

function ok(epoch: number, match: LogPoint, durableEnd: number): Message<string> {
  return { type: "AppendReply", epoch, ok: true, match, durableEnd };
}

/** An accepting reply of a follower whose storage is full (it took no records). */
function okButFull(epoch: number, match: LogPoint, durableEnd: number): Message<string> {
  return { type: "AppendReply", epoch, ok: true, match, durableEnd, storageFull: true };
}

describe("consensus core: votes", () => {
  it.each<[string, Spec, LogPoint, boolean]>([
    [
      "candidate in a higher epoch, shorter log",
      [
        [1, 16],
        [1, 500],
      ],
      { epoch: 2, position: 100 },
      true,
    ],
    [
      "candidate in a lower epoch, longer log",
      [
        [1, 16],
        [2, 40],
      ],
      { epoch: 1, position: 900 },
      false,
    ],
    [
      "equal last point",
      [
        [1, 16],
        [2, 84],
      ],
      { epoch: 2, position: 100 },
      true,
    ],
    [
      "same epoch, candidate shorter",
      [
        [1, 16],
        [2, 84],
      ],
      { epoch: 2, position: 99 },
      false,
    ],
    [
      "same epoch, candidate longer",
      [
        [1, 16],
        [2, 84],
      ],
      { epoch: 2, position: 300 },
      true,
    ],
    ["empty voter", [], { epoch: 0, position: 0 }, true],
  ])("%s", (_name, voterLog, candidateLast, granted) => {
    const voter = new TestNode("n2", {
      log: voterLog,
      hardState: { epoch: 2, votedFor: undefined },
    });
    const effects = voter.receive("n1", {
      type: "Vote",
      epoch: 3,
      last: candidateLast,
      transfer: false,
    });
    expect(voter.sentTo("n1")).toEqual({
      type: "VoteReply",
      epoch: 3,
      preVote: false,
      granted,
      voterEpoch: 3,
      voterLast: voter.log.lastPoint(),
    });
    // The epoch moved to 3 either way; a granted vote is persisted before the reply.
    const persisted = of(effects, "persist").at(-1)?.state;
    expect(persisted).toEqual({ epoch: 3, votedFor: granted ? "n1" : undefined });
    const persistAt = effects.findIndex((e) => e.type === "persist");
    const sendAt = effects.findIndex((e) => e.type === "send");
    expect(persistAt).toBeLessThan(sendAt);
  });

  it("votes once per epoch", () => {
    const voter = new TestNode("n2");
    voter.receive("n1", {
      type: "Vote",
      epoch: 1,
      last: { epoch: 0, position: 0 },
      transfer: false,
    });
    expect(voter.sentTo("n1")).toMatchObject({ granted: true });
    voter.receive("n3", {
      type: "Vote",
      epoch: 1,
      last: { epoch: 0, position: 0 },
      transfer: false,
    });
    expect(voter.sentTo("n3")).toMatchObject({ granted: false });
    // A duplicate request from the same candidate is answered the same way.
    voter.receive("n1", {
      type: "Vote",
      epoch: 1,
      last: { epoch: 0, position: 0 },
      transfer: false,
    });
    expect(voter.sentTo("n1")).toMatchObject({ granted: true });
  });

  it("pre-vote is refused while a leader is alive and changes nothing", () => {
    const follower = new TestNode("n2", {
      log: [[1, 16]],
      hardState: { epoch: 1, votedFor: "n1" },
    });
    follower.receive(
      "n1",
      { type: "Append", epoch: 1, prev: { epoch: 1, position: 16 }, records: [], leaderCommit: 16 },
      1_000,
    );
    const preVote: Message<string> = {
      type: "PreVote",
      epoch: 2,
      last: { epoch: 1, position: 16 },
    };
    const effects = follower.receive("n3", preVote, 1_000 + MIN_MS - 1);
    expect(follower.sentTo("n3")).toMatchObject({ preVote: true, granted: false });
    expect(of(effects, "persist")).toEqual([]);
    expect(follower.core.state.epoch).toBe(1);
    // A disruptive (non-transfer) vote is ignored in the lease as well.
    follower.receive("n3", {
      type: "Vote",
      epoch: 2,
      last: { epoch: 1, position: 16 },
      transfer: false,
    });
    expect(follower.sentTo("n3")).toMatchObject({ granted: false });
    expect(follower.core.state).toMatchObject({ epoch: 1, leaderId: "n1" });
    // Once the leader has been silent for the election timeout, the pre-vote is granted.
    follower.receive("n3", preVote, 1_000 + MIN_MS);
    expect(follower.sentTo("n3")).toMatchObject({ preVote: true, granted: true });
    expect(follower.core.state.epoch).toBe(1);
  });

  it("a follower whose link from the leader closed leaves the lease and stands within two heartbeats", () => {
    const follower = new TestNode("n2", {
      log: [[1, 16]],
      hardState: { epoch: 1, votedFor: "n1" },
      random: () => 0.5,
    });
    const heartbeat: Message<string> = {
      type: "Append",
      epoch: 1,
      prev: { epoch: 1, position: 16 },
      records: [],
      leaderCommit: 16,
    };
    follower.receive("n1", heartbeat, 1_000);
    const preVote: Message<string> = {
      type: "PreVote",
      epoch: 2,
      last: { epoch: 1, position: 16 },
    };
    // Another peer's link closing changes nothing.
    follower.run(follower.core.peerLost("n3", 1_010));
    follower.receive("n3", preVote, 1_020);
    expect(follower.sentTo("n3")).toMatchObject({ preVote: true, granted: false });
    expect(follower.tick(1_200)).toEqual([]);
    // The leader's link closing: pre-votes are granted at once, and it stands soon.
    follower.run(follower.core.peerLost("n1", 1_200));
    follower.receive("n3", preVote, 1_201);
    expect(follower.sentTo("n3")).toMatchObject({ preVote: true, granted: true });
    follower.tick(1_200 + 2 * 50);
    expect(follower.core.state.role).toBe("preCandidate");
    expect(follower.sent("PreVote").map((m) => m.to)).toEqual(["n1", "n3"]);
  });

  it("a pre-candidate or candidate asks a peer again when its link to that peer opens", () => {
    const node = new TestNode("n2", { log: [[1, 16]], hardState: { epoch: 1, votedFor: "n1" } });
    // Not standing: a link opening sends nothing.
    node.run(node.core.peerReachable("n3", 100));
    expect(node.sent()).toEqual([]);
    node.tick(2 * MAX_MS);
    expect(node.core.state.role).toBe("preCandidate");
    const preVote = node.sentTo("n3");
    expect(preVote).toMatchObject({ type: "PreVote", epoch: 2 });
    // The request to n3 was lost (no link): it goes again, the same, when the link opens.
    node.run(node.core.peerReachable("n3", 2 * MAX_MS + 10));
    expect(node.sent()).toEqual([{ to: "n3", message: preVote }]);
    node.receive(
      "n3",
      { type: "VoteReply", epoch: 2, preVote: true, granted: true, voterEpoch: 1 },
      2 * MAX_MS + 20,
    );
    expect(node.core.state.role).toBe("candidate");
    const vote = node.sentTo("n3");
    expect(vote).toMatchObject({ type: "Vote", epoch: 2 });
    // The vote goes again to a voter that has not granted it.
    node.run(node.core.peerReachable("n1", 2 * MAX_MS + 30));
    expect(node.sent()).toEqual([{ to: "n1", message: vote }]);
    // Not a voter: never asked.
    node.run(node.core.peerReachable("n9", 2 * MAX_MS + 40));
    expect(node.sent()).toEqual([]);
    node.receive(
      "n1",
      { type: "VoteReply", epoch: 2, preVote: false, granted: true, voterEpoch: 2 },
      2 * MAX_MS + 50,
    );
    expect(node.core.state.role).toBe("leader");
    // A leader asks nobody.
    node.run(node.core.peerReachable("n3", 2 * MAX_MS + 60));
    expect(node.sent("Vote")).toEqual([]);
    expect(node.sent("PreVote")).toEqual([]);
  });

  it("followers that lose the leader's link together stand in separate heartbeat slots", () => {
    const heartbeat: Message<string> = {
      type: "Append",
      epoch: 1,
      prev: { epoch: 1, position: 16 },
      records: [],
      leaderCommit: 16,
    };
    // The worst case for a split vote: both draw the same random offset.
    const standsAt = (id: string): number => {
      const node = new TestNode(id, {
        log: [[1, 16]],
        hardState: { epoch: 1, votedFor: "n1" },
        random: () => 0.9,
      });
      node.receive("n1", heartbeat, 1_000);
      node.run(node.core.peerLost("n1", 1_000));
      for (let t = 1_000; t <= 1_000 + MIN_MS; t += 5) {
        node.tick(t);
        if (node.core.state.role === "preCandidate") return t - 1_000;
      }
      return Number.POSITIVE_INFINITY;
    };
    const n2 = standsAt("n2");
    const n3 = standsAt("n3");
    expect(n2).toBeLessThan(50);
    expect(n3).toBeGreaterThanOrEqual(50);
    expect(n3).toBeLessThan(100);
  });

  it("a follower that still hears the leader refuses the pre-vote of one whose link closed", () => {
    const other = new TestNode("n3", { log: [[1, 16]], hardState: { epoch: 1, votedFor: "n1" } });
    other.receive(
      "n1",
      { type: "Append", epoch: 1, prev: { epoch: 1, position: 16 }, records: [], leaderCommit: 16 },
      1_000,
    );
    other.receive("n2", { type: "PreVote", epoch: 2, last: { epoch: 1, position: 16 } }, 1_100);
    expect(other.sentTo("n2")).toMatchObject({ preVote: true, granted: false });
  });

  it("a follower without a leader that refuses a pre-vote for a shorter log stands at once", () => {
    const heartbeat: Message<string> = {
      type: "Append",
      epoch: 1,
      prev: { epoch: 1, position: 32 },
      records: [],
      leaderCommit: 16,
    };
    const behind: Message<string> = { type: "PreVote", epoch: 2, last: { epoch: 1, position: 16 } };
    const node = new TestNode("n2", {
      log: [
        [1, 16],
        [1, 16],
      ],
      hardState: { epoch: 1, votedFor: "n1" },
    });
    node.receive("n1", heartbeat, 1_000);
    // Still hearing the leader: refuses, and stays a follower.
    node.receive("n3", behind, 1_100);
    expect(node.sentTo("n3")).toMatchObject({ preVote: true, granted: false });
    expect(node.core.state.role).toBe("follower");
    // The leader gone: refuses the shorter log, and stands itself right away.
    node.run(node.core.peerLost("n1", 1_200));
    node.receive("n3", behind, 1_201);
    expect(node.sentTo("n3")).toMatchObject({ type: "VoteReply", preVote: true, granted: false });
    expect(node.core.state.role).toBe("preCandidate");
    expect(node.sent("PreVote").map((m) => m.to)).toEqual(["n1", "n3"]);
    // An up-to-date pre-candidate gets the pre-vote instead, and nobody stands against it.
    const peer = new TestNode("n1", {
      log: [
        [1, 16],
        [1, 16],
      ],
      hardState: { epoch: 1, votedFor: "n1" },
    });
    peer.receive("n3", { type: "PreVote", epoch: 2, last: { epoch: 1, position: 32 } }, 5_000);
    expect(peer.sentTo("n3")).toMatchObject({ preVote: true, granted: true });
    expect(peer.core.state.role).toBe("follower");
  });

  it("a pre-candidate only bumps the epoch after a majority of pre-votes", () => {
    const node = new TestNode("n1");
    node.tick(MAX_MS);
    expect(node.core.state).toMatchObject({ role: "preCandidate", epoch: 0 });
    expect(
      node
        .sent("PreVote")
        .map((s) => s.to)
        .sort(),
    ).toEqual(["n2", "n3"]);
    node.receive("n2", {
      type: "VoteReply",
      epoch: 1,
      preVote: true,
      granted: true,
      voterEpoch: 0,
    });
    expect(node.core.state).toMatchObject({ role: "candidate", epoch: 1, votedFor: "n1" });
    expect(node.sent("Vote").map((s) => s.message)).toContainEqual({
      type: "Vote",
      epoch: 1,
      last: { epoch: 0, position: 0 },
      transfer: false,
    });
  });

  it("a new leader first writes an EPOCH record and replicates it", () => {
    const node = new TestNode("n1", {
      log: [
        [1, 16],
        [1, 10],
      ],
      hardState: { epoch: 1, votedFor: undefined },
    });
    elect(node, ["n2"]);
    const appended = of(node.effects, "append").flatMap((e) => e.records);
    expect(appended).toEqual([
      { epoch: 2, position: 26, length: EPOCH_RECORD_BYTES, kind: "epoch", payload: "epoch:2:n1" },
    ]);
    const append = node.sentTo("n2") as AppendMessage<string>;
    expect(append).toMatchObject({ type: "Append", epoch: 2, prev: { epoch: 1, position: 26 } });
    expect(append.records).toEqual(appended);
  });
});

describe("consensus core: commit", () => {
  it("commits only a position in the leader's own epoch (Raft figure 8)", () => {
    // n1 holds an epoch-2 record (16..26) a previous leader never committed; it now leads
    // epoch 4. n2 acknowledges up to 26 durably: a majority holds it, but counting
    // replicas of an older epoch's record must not commit it.
    const leader = new TestNode("n1", {
      log: [
        [1, 16],
        [2, 10],
      ],
      hardState: { epoch: 3, votedFor: undefined },
    });
    elect(leader, ["n2"]);
    expect(leader.core.state.epoch).toBe(4);
    leader.durableTo(42);
    leader.receive("n2", ok(4, { epoch: 2, position: 26 }, 26));
    expect(of(leader.effects, "commit")).toEqual([]);
    expect(leader.core.state.commitPosition).toBe(0);
    // Once the epoch-4 record is durable on a majority, everything before it commits too.
    leader.receive("n2", ok(4, { epoch: 4, position: 42 }, 42));
    expect(of(leader.effects, "commit")).toEqual([{ type: "commit", position: 42 }]);
  });

  it("commits the highest position durable on a majority, and not above its own durable end", () => {
    const leader = new TestNode("n1", { voters: ["n1", "n2", "n3", "n4", "n5"] });
    elect(leader, ["n2", "n3"]);
    const r = leader.core.propose([
      { length: 100, payload: "a" },
      { length: 50, payload: "b" },
    ]);
    expect(r.ok && r.points).toEqual([
      { epoch: 1, position: 116 },
      { epoch: 1, position: 166 },
    ]);
    leader.run(r.effects);
    leader.receive("n2", ok(1, { epoch: 1, position: 166 }, 166));
    leader.receive("n3", ok(1, { epoch: 1, position: 166 }, 116));
    expect(of(leader.effects, "commit")).toEqual([]); // the leader itself has synced nothing
    leader.durableTo(166);
    expect(of(leader.effects, "commit")).toEqual([{ type: "commit", position: 116 }]);
    // Durable end is capped by the matched point: a stale suffix on a follower does not count.
    leader.receive("n4", ok(1, { epoch: 1, position: 116 }, 900));
    expect(leader.core.state.commitPosition).toBe(116);
    leader.receive("n3", ok(1, { epoch: 1, position: 166 }, 166));
    expect(of(leader.effects, "commit")).toEqual([{ type: "commit", position: 166 }]);
  });

  it("never counts a learner", () => {
    const leader = new TestNode("n1", { learners: ["r1"] });
    elect(leader, ["n2"]);
    expect(leader.sentTo("r1")).toMatchObject({ type: "Append" }); // learners are replicated to
    leader.durableTo(16);
    leader.receive("r1", ok(1, { epoch: 1, position: 16 }, 16));
    leader.receive("r1", ok(1, { epoch: 1, position: 16 }, 16));
    expect(leader.core.state.commitPosition).toBe(0);
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 16));
    expect(leader.core.state.commitPosition).toBe(16);
  });

  it("replicates to a learner added after formation, and still never counts it", () => {
    const leader = new TestNode("n1");
    elect(leader, ["n2"]);
    expect(leader.sentTo("r1")).toBeUndefined();
    leader.run(leader.core.setLearners(["r1", "n2"])); // a voter id is ignored
    expect(leader.sentTo("r1")).toMatchObject({ type: "Append", epoch: 1 });
    expect(leader.sentTo("n2")).toBeUndefined();
    // The learner has nothing: it backs the leader up to the origin and gets the EPOCH record.
    leader.receive("r1", {
      type: "AppendReply",
      epoch: 1,
      ok: false,
      hint: { epoch: 0, position: 0 },
    });
    expect(leader.sentTo("r1")).toMatchObject({
      type: "Append",
      prev: { epoch: 0, position: 0 },
      records: [{ kind: "epoch", position: 0, length: 16 }],
    });
    leader.durableTo(16);
    leader.receive("r1", ok(1, { epoch: 1, position: 16 }, 16));
    expect(leader.core.state.commitPosition).toBe(0); // the learner does not make a majority
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 16));
    expect(leader.core.state.commitPosition).toBe(16);
    // New records reach the caught-up learner with the voters.
    const proposed = leader.core.propose([{ length: 10, payload: "a" }]);
    leader.run(proposed.effects);
    expect(leader.sentTo("r1")).toMatchObject({ type: "Append", prev: { epoch: 1, position: 16 } });
    // Heartbeats go to it while it is a learner, not once it is removed.
    leader.tick(2 * MAX_MS + 60);
    expect(leader.sentTo("r1")).toMatchObject({ type: "Append" });
    leader.run(leader.core.setLearners([]));
    leader.tick(2 * MAX_MS + 120);
    expect(leader.sentTo("n2")).toMatchObject({ type: "Append" });
    expect(leader.sentTo("r1")).toBeUndefined();
  });

  it("a learner that learns of the others later still never stands", () => {
    const learner = new TestNode("r1", { learners: ["r1"] });
    learner.run(learner.core.setLearners(["r2"]));
    expect(learner.core.state.role).toBe("learner");
    expect(learner.tick(100 * MAX_MS)).toEqual([]);
  });

  it("a follower commits at most what it matched and made durable", () => {
    const follower = new TestNode("n2");
    const epochRecord: LogRecord<string> = {
      epoch: 1,
      position: 0,
      length: 16,
      kind: "epoch",
      payload: "e1",
    };
    follower.receive("n1", {
      type: "Append",
      epoch: 1,
      prev: { epoch: 0, position: 0 },
      records: [epochRecord],
      leaderCommit: 16,
    });
    expect(follower.core.state.commitPosition).toBe(0);
    expect(follower.sentTo("n1")).toEqual(ok(1, { epoch: 1, position: 16 }, 0));
    follower.durableTo(16);
    expect(of(follower.effects, "commit")).toEqual([{ type: "commit", position: 16 }]);
    expect(follower.sentTo("n1")).toEqual(ok(1, { epoch: 1, position: 16 }, 16)); // durable ack
  });
});

describe("consensus core: log matching", () => {
  const base: Spec = [
    [1, 16],
    [1, 10],
    [2, 10],
    [2, 10],
  ]; // ends 16, 26, 36, 46

  it.each<[string, LogPoint, LogPoint]>([
    ["prev beyond the end", { epoch: 2, position: 90 }, { epoch: 2, position: 46 }],
    [
      "prev epoch differs: back up to the last point of an older epoch",
      { epoch: 3, position: 36 },
      { epoch: 2, position: 36 },
    ],
    [
      "prev in an epoch the follower never saw",
      { epoch: 1, position: 46 },
      { epoch: 1, position: 26 },
    ],
    ["prev not a record boundary", { epoch: 2, position: 40 }, { epoch: 2, position: 36 }],
  ])("rejects a mismatching prev with a hint: %s", (_name, prev, hint) => {
    const follower = new TestNode("n2", {
      log: base,
      hardState: { epoch: 3, votedFor: undefined },
    });
    follower.receive("n1", { type: "Append", epoch: 3, prev, records: [], leaderCommit: 0 });
    expect(follower.sentTo("n1")).toEqual({ type: "AppendReply", epoch: 3, ok: false, hint });
    expect(of(follower.effects, "truncate")).toEqual([]);
  });

  it("truncates a conflicting uncommitted suffix and appends the leader's records", () => {
    const follower = new TestNode("n2", {
      log: base,
      commit: 26,
      hardState: { epoch: 2, votedFor: undefined },
    });
    const newRecords: LogRecord<string>[] = [
      { epoch: 2, position: 26, length: 10, kind: "data", payload: "r2@e2" }, // already there
      { epoch: 3, position: 36, length: 16, kind: "epoch", payload: "e3" },
    ];
    follower.receive("n1", {
      type: "Append",
      epoch: 3,
      prev: { epoch: 1, position: 26 },
      records: newRecords,
      leaderCommit: 26,
    });
    expect(follower.effects.filter((e) => e.type === "truncate" || e.type === "append")).toEqual([
      { type: "truncate", position: 36 },
      { type: "append", records: [newRecords[1]] },
    ]);
    expect(follower.log.lastPoint()).toEqual({ epoch: 3, position: 52 });
    expect(follower.sentTo("n1")).toMatchObject({
      ok: true,
      match: { epoch: 3, position: 52 },
      durableEnd: 36,
    });
  });

  it("an old duplicate append does not truncate records it does not mention", () => {
    const follower = new TestNode("n2", {
      log: base,
      hardState: { epoch: 2, votedFor: undefined },
    });
    const again: LogRecord<string> = {
      epoch: 2,
      position: 26,
      length: 10,
      kind: "data",
      payload: "r2@e2",
    };
    follower.receive("n1", {
      type: "Append",
      epoch: 2,
      prev: { epoch: 1, position: 26 },
      records: [again],
      leaderCommit: 0,
    });
    expect(of(follower.effects, "truncate")).toEqual([]);
    expect(follower.log.end()).toBe(46);
  });

  it("refuses to truncate below its commit position", () => {
    const follower = new TestNode("n2", {
      log: base,
      commit: 46,
      hardState: { epoch: 2, votedFor: undefined },
    });
    const conflicting: LogRecord<string> = {
      epoch: 3,
      position: 26,
      length: 16,
      kind: "epoch",
      payload: "e3",
    };
    expect(() =>
      follower.receive("n1", {
        type: "Append",
        epoch: 3,
        prev: { epoch: 1, position: 26 },
        records: [conflicting],
        leaderCommit: 0,
      }),
    ).toThrow(ConsensusInvariantError);
  });

  it("the leader backs up by epoch on a hint", () => {
    // Leader log: e1 to 26, e3 from 26. A follower holding e2 records answers with hint
    // (2, 46); the leader backs up to its last point at or before it: (1, 26).
    const leader = new TestNode("n1", {
      log: [
        [1, 16],
        [1, 10],
        [3, 16],
      ],
      hardState: { epoch: 3, votedFor: undefined },
    });
    elect(leader, ["n2"]);
    leader.receive("n2", {
      type: "AppendReply",
      epoch: 4,
      ok: false,
      hint: { epoch: 2, position: 46 },
    });
    const append = leader.sentTo("n2") as AppendMessage<string>;
    expect(append.prev).toEqual({ epoch: 1, position: 26 });
    expect(append.records.map((r) => r.position)).toEqual([26, 42]);
  });
});

describe("consensus core: leadership", () => {
  it("check-quorum: a leader that hears from no majority steps down and refuses writes", () => {
    const leader = new TestNode("n1", { voters: ["n1", "n2", "n3", "n4", "n5"] });
    elect(leader, ["n2", "n3"], 1_000);
    leader.tick(1_000 + MIN_MS - 10);
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 0));
    leader.receive("n3", ok(1, { epoch: 1, position: 16 }, 0));
    leader.tick(1_000 + MIN_MS); // n2, n3 heard recently: still a majority with itself
    expect(leader.core.state.role).toBe("leader");
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 0));
    leader.tick(1_000 + 2 * MIN_MS); // only n2 (and itself) heard since: 2 of 5
    expect(leader.core.state).toMatchObject({ role: "follower", epoch: 1, leaderId: undefined });
    expect(of(leader.effects, "roleChanged")).toEqual([
      { type: "roleChanged", role: "follower", epoch: 1, leaderId: undefined },
    ]);
    const r = leader.core.propose([{ length: 5, payload: "x" }]);
    expect(r.ok).toBe(false);
    // And it commits nothing afterwards, whatever acks straggle in.
    leader.durableTo(16);
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 16));
    leader.receive("n3", ok(1, { epoch: 1, position: 16 }, 16));
    expect(leader.core.state.commitPosition).toBe(0);
  });

  it("steps down on seeing a higher epoch", () => {
    const leader = new TestNode("n1");
    elect(leader, ["n2"]);
    leader.receive("n3", {
      type: "AppendReply",
      epoch: 7,
      ok: false,
      hint: { epoch: 0, position: 0 },
    });
    expect(leader.core.state).toMatchObject({ role: "follower", epoch: 7 });
  });

  it.each<[string, Record<NodeId, number>, NodeId]>([
    ["n1 has the higher priority", { n1: 2, n2: 1 }, "n1"],
    ["n2 has the higher priority", { n1: 1, n2: 2 }, "n2"],
  ])("priority breaks ties between equally up-to-date nodes: %s", (_name, priorities, first) => {
    // Same random draws, same log: the lower-priority node waits an extra slice.
    const nodes = ["n1", "n2"].map((id) => new TestNode(id, { priorities, random: () => 0.5 }));
    const standing: NodeId[] = [];
    for (let t = 0; t <= 3 * MAX_MS && standing.length === 0; t += 10) {
      for (const n of nodes) {
        n.tick(t);
        if (n.core.state.role === "preCandidate") standing.push(n.id);
      }
    }
    expect(standing).toEqual([first]);
  });

  it("a learner never stands and never votes", () => {
    const learner = new TestNode("r1", { learners: ["r1"] });
    expect(learner.core.state.role).toBe("learner");
    expect(learner.tick(100 * MAX_MS)).toEqual([]);
    learner.receive("n1", { type: "PreVote", epoch: 1, last: { epoch: 0, position: 0 } });
    expect(learner.sentTo("n1")).toMatchObject({ granted: false });
    learner.receive("n1", {
      type: "Vote",
      epoch: 1,
      last: { epoch: 0, position: 0 },
      transfer: true,
    });
    expect(learner.sentTo("n1")).toMatchObject({ granted: false });
  });

  it("TimeoutNow hands leadership to the most up-to-date follower", () => {
    const leader = new TestNode("n1");
    elect(leader, ["n2", "n3"]);
    leader.receive("n3", ok(1, { epoch: 1, position: 16 }, 16));
    const w = leader.core.propose([{ length: 30, payload: "w" }]);
    leader.run(w.effects);
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 16));
    // n3 and n2 are both at 16; the log ends at 46. Transfer waits for the target to catch up.
    leader.run(leader.core.transferLeadership());
    expect(leader.sent("TimeoutNow")).toEqual([]);
    expect(leader.core.propose([{ length: 5, payload: "refused" }]).ok).toBe(false);
    const target = leader.sent("Append")[0]?.to;
    expect(target === "n2" || target === "n3").toBe(true);
    leader.receive(target!, ok(1, { epoch: 1, position: 46 }, 46));
    expect(leader.sent("TimeoutNow")).toEqual([
      { to: target, message: { type: "TimeoutNow", epoch: 1 } },
    ]);

    // The target stands at once, without pre-vote, and voters in the lease still grant.
    const follower = new TestNode(target!, {
      log: [
        [1, 16],
        [1, 30],
      ],
      hardState: { epoch: 1, votedFor: "n1" },
    });
    follower.receive(
      "n1",
      { type: "Append", epoch: 1, prev: { epoch: 1, position: 46 }, records: [], leaderCommit: 16 },
      100,
    );
    follower.receive("n1", { type: "TimeoutNow", epoch: 1 }, 110);
    expect(follower.core.state).toMatchObject({ role: "candidate", epoch: 2 });
    const vote = follower.sent("Vote")[0]?.message;
    expect(vote).toMatchObject({ type: "Vote", epoch: 2, transfer: true });

    const other = new TestNode("n3", {
      log: [
        [1, 16],
        [1, 30],
      ],
      hardState: { epoch: 1, votedFor: "n1" },
    });
    other.receive(
      "n1",
      { type: "Append", epoch: 1, prev: { epoch: 1, position: 46 }, records: [], leaderCommit: 16 },
      100,
    );
    other.receive(target!, vote!, 120);
    expect(other.sentTo(target!)).toMatchObject({ granted: true });
    // The old leader gives way when it sees the vote request of the new epoch.
    leader.receive(target!, vote!);
    expect(leader.core.state).toMatchObject({ role: "follower", epoch: 2 });
  });

  it("a message from a stale epoch is answered with the current epoch", () => {
    const follower = new TestNode("n2", {
      log: [[3, 16]],
      hardState: { epoch: 3, votedFor: undefined },
    });
    follower.receive("n1", {
      type: "Append",
      epoch: 2,
      prev: { epoch: 0, position: 0 },
      records: [],
      leaderCommit: 0,
    });
    expect(follower.sentTo("n1")).toMatchObject({ type: "AppendReply", epoch: 3, ok: false });
    expect(follower.core.state.epoch).toBe(3);
  });
});

describe("consensus core: recovery after lost memory", () => {
  const probeReply = (epoch: number, last: LogPoint, voterEpoch = epoch): Message<string> => ({
    type: "VoteReply",
    epoch: epoch + 1,
    preVote: true,
    granted: true,
    voterEpoch,
    voterLast: last,
  });

  it("neither votes, pre-votes nor stands; probes the other voters instead", () => {
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.receive("n3", { type: "PreVote", epoch: 1, last: { epoch: 0, position: 0 } }, 10);
    expect(n2.sentTo("n3")).toMatchObject({ type: "VoteReply", preVote: true, granted: false });
    n2.receive("n3", { type: "Vote", epoch: 1, last: { epoch: 0, position: 0 }, transfer: false });
    expect(n2.sentTo("n3")).toMatchObject({ type: "VoteReply", preVote: false, granted: false });
    expect(of(n2.effects, "persist").every((p) => p.state.votedFor === undefined)).toBe(true);
    // Past any election timeout: still no election, only probes.
    const effects = n2.tick(5 * MAX_MS);
    expect(of(effects, "roleChanged")).toEqual([]);
    expect(n2.sent("Vote")).toEqual([]);
    expect(n2.sent("PreVote").map((s) => s.to)).toEqual(["n1", "n3"]);
    expect(n2.core.state).toMatchObject({ role: "follower", recovering: true });
  });

  it("does not help a voter that lacks acknowledged records win (the lost-write scenario)", () => {
    // n1 led epoch 1 and committed with n2; n2 lost its memory; n3 never got the records.
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.tick(MAX_MS);
    n2.receive("n3", probeReply(1, { epoch: 1, position: 16 }));
    // n1 is unreachable; n3 stands.
    n2.receive("n3", { type: "PreVote", epoch: 2, last: { epoch: 1, position: 16 } }, 3 * MAX_MS);
    expect(n2.sentTo("n3")).toMatchObject({ granted: false });
    n2.receive("n3", { type: "Vote", epoch: 2, last: { epoch: 1, position: 16 }, transfer: false });
    expect(n2.sentTo("n3")).toMatchObject({ granted: false });
    expect(n2.core.state.recovering).toBe(true);
  });

  it("a brand-new cluster: every other voter reports an empty log", () => {
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.tick(MAX_MS);
    n2.receive("n1", probeReply(0, { epoch: 0, position: 0 }));
    expect(n2.core.state.recovering).toBe(true); // n3 not heard yet
    // n3 already stands in epoch 1 (its log is empty too).
    const effects = n2.receive("n3", probeReply(1, { epoch: 0, position: 0 }));
    expect(n2.core.state).toMatchObject({ recovering: false, epoch: 1, votedFor: "n2" });
    expect(of(effects, "persist").at(-1)?.state).toEqual({ epoch: 1, votedFor: "n2" });
    // It may have voted in epoch 1 before it restarted: no vote for anyone else there...
    n2.receive("n3", { type: "Vote", epoch: 1, last: ORIGIN_POINT, transfer: false });
    expect(n2.sentTo("n3")).toMatchObject({ granted: false });
    // ...but in a later epoch, as usual.
    n2.receive("n3", { type: "Vote", epoch: 2, last: ORIGIN_POINT, transfer: false }, 5 * MAX_MS);
    expect(n2.sentTo("n3")).toMatchObject({ granted: true });
  });

  it("recovers once a current leader brought it to its commit; its copy counts only then", () => {
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.tick(MAX_MS);
    n2.receive("n3", probeReply(3, { epoch: 3, position: 116 }));
    const leaderLog = records([
      [3, 16],
      [3, 100],
    ]);
    n2.receive("n1", {
      type: "Append",
      epoch: 3,
      prev: ORIGIN_POINT,
      records: leaderLog,
      leaderCommit: 116,
    });
    // Not durable yet: still recovering.
    expect(n2.core.state.recovering).toBe(true);
    const beforeDurable = n2.sent("AppendReply");
    for (const r of beforeDurable) expect(r.message).toMatchObject({ ok: true, durableEnd: 0 });
    n2.durableTo(116);
    expect(n2.core.state).toMatchObject({ recovering: false, epoch: 3, votedFor: "n1" });
    expect(n2.sentTo("n1")).toMatchObject({ ok: true, durableEnd: 116 });
  });

  it("does not recover under a deposed leader that does not know it yet", () => {
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.tick(MAX_MS);
    // n1 still believes it leads epoch 3; n3, in epoch 5, asks for pre-votes.
    n2.receive("n1", probeReply(3, { epoch: 3, position: 116 }));
    n2.receive("n3", { type: "PreVote", epoch: 6, last: { epoch: 5, position: 200 } });
    n2.receive("n1", {
      type: "Append",
      epoch: 3,
      prev: ORIGIN_POINT,
      records: records([
        [3, 16],
        [3, 100],
      ]),
      leaderCommit: 116,
    });
    n2.durableTo(116);
    expect(n2.core.state.recovering).toBe(true);
    expect(n2.sentTo("n1")).toMatchObject({ ok: true, durableEnd: 0 });
  });

  it("waits until the leader has committed in its own epoch (all older commits are below)", () => {
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.receive("n3", probeReply(4, { epoch: 3, position: 116 }));
    const log = records([
      [3, 16],
      [3, 100],
      [4, 16],
    ]);
    // The new leader of epoch 4 only knows of commit 16 so far (116 may be committed too).
    n2.receive("n1", {
      type: "Append",
      epoch: 4,
      prev: ORIGIN_POINT,
      records: log,
      leaderCommit: 16,
    });
    n2.durableTo(132);
    expect(n2.core.state.recovering).toBe(true);
    n2.receive("n1", {
      type: "Append",
      epoch: 4,
      prev: { epoch: 4, position: 132 },
      records: [],
      leaderCommit: 132,
    });
    expect(n2.core.state.recovering).toBe(false);
  });

  it("needs a majority of the other voters' reports, not the leader's alone", () => {
    const n2 = new TestNode("n2", { amnesiac: true });
    n2.receive("n1", {
      type: "Append",
      epoch: 3,
      prev: ORIGIN_POINT,
      records: records([[3, 16]]),
      leaderCommit: 16,
    });
    n2.durableTo(16);
    expect(n2.core.state.recovering).toBe(true);
    n2.receive("n3", probeReply(3, { epoch: 3, position: 16 }));
    n2.receive("n1", {
      type: "Append",
      epoch: 3,
      prev: { epoch: 3, position: 16 },
      records: [],
      leaderCommit: 16,
    });
    expect(n2.core.state.recovering).toBe(false);
  });
});

const ORIGIN_POINT: LogPoint = { epoch: 0, position: 0 };

describe("consensus core: flow control", () => {
  const bytesSentTo = (node: TestNode, to: NodeId): number =>
    node
      .sent("Append")
      .filter((s) => s.to === to)
      .reduce(
        (n, s) =>
          n + (s.message as AppendMessage<string>).records.reduce((m, r) => m + r.length, 0),
        0,
      );

  it("splits a large proposal into Appends of about maxBatchBytes, back to back", () => {
    const leader = new TestNode("n1", { maxBatchBytes: 2_000, maxInFlightBytes: 100_000 });
    elect(leader, ["n2"]);
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 16));
    const r = leader.core.propose(
      Array.from({ length: 10 }, (_, i) => ({ length: 500, payload: `p${i}` })),
    );
    leader.run(r.effects);
    const appends = leader
      .sent("Append")
      .filter((s) => s.to === "n2")
      .map((s) => s.message as AppendMessage<string>);
    expect(appends.length).toBe(3); // 4 + 4 + 2 records
    let prev = 16;
    for (const a of appends) {
      expect(a.prev.position).toBe(prev);
      const bytes = a.records.reduce((n, x) => n + x.length, 0);
      expect(bytes).toBeLessThanOrEqual(2_000);
      prev += bytes;
    }
    expect(prev).toBe(16 + 5_000);
  });

  it("feeds a lagging follower no faster than it acknowledges", () => {
    const spec: [number, number][] = Array.from({ length: 40 }, () => [1, 1_000]);
    const leader = new TestNode("n1", {
      log: spec,
      hardState: { epoch: 1, votedFor: undefined },
      maxBatchBytes: 1_000,
      maxInFlightBytes: 4_000,
    });
    elect(leader, ["n2"]);
    // n3 has nothing: it rejects, and the leader backs up to the start.
    leader.receive("n3", { type: "AppendReply", epoch: 2, ok: false, hint: ORIGIN_POINT });
    let sent = bytesSentTo(leader, "n3");
    // Many heartbeats pass without a word from n3: no more than the in-flight bound goes out.
    const n2Ok = ok(2, { epoch: 2, position: 40_016 }, 40_016);
    for (let t = 1; t <= 40; t++) {
      leader.tick(2 * MAX_MS + t * 50);
      sent += bytesSentTo(leader, "n3");
      leader.receive("n2", n2Ok); // the leader keeps its quorum
    }
    expect(sent).toBe(4_000);
    // n3 acknowledges the first 2,000 bytes: 2,000 more may go.
    leader.receive("n3", ok(2, { epoch: 1, position: 2_000 }, 2_000));
    sent = bytesSentTo(leader, "n3");
    for (let t = 41; t <= 60; t++) {
      leader.tick(2 * MAX_MS + t * 50);
      sent += bytesSentTo(leader, "n3");
      leader.receive("n2", n2Ok);
    }
    expect(leader.core.state.role).toBe("leader");
    expect(sent).toBe(2_000);
  });

  it("sends a follower whose storage is full heartbeats only, until a reply says it has room", () => {
    const leader = new TestNode("n1", { maxBatchBytes: 1_000, maxInFlightBytes: 100_000 });
    elect(leader, ["n2"]);
    leader.receive("n2", ok(1, { epoch: 1, position: 16 }, 16));
    leader.receive("n3", ok(1, { epoch: 1, position: 16 }, 16));
    const propose = (i: number) =>
      leader.run(leader.core.propose([{ length: 500, payload: `p${i}` }]).effects);
    propose(0);
    expect(bytesSentTo(leader, "n3")).toBe(500);
    // n3 dropped those records: its disk is full.
    leader.receive("n3", okButFull(1, { epoch: 1, position: 16 }, 16));
    expect(bytesSentTo(leader, "n3")).toBe(0);
    let sent = 0;
    for (let t = 1; t <= 20; t++) {
      propose(t);
      sent += bytesSentTo(leader, "n3");
      leader.receive("n2", ok(1, { epoch: 1, position: 16 + 500 * (t + 1) }, 16 + 500 * (t + 1)));
      leader.tick(2 * MAX_MS + t * 50);
      sent += bytesSentTo(leader, "n3");
      const heartbeat = leader.sentTo("n3") as AppendMessage<string> | undefined;
      if (heartbeat !== undefined) expect(heartbeat.prev.position).toBe(16); // where n3's log ends
      leader.receive("n3", okButFull(1, { epoch: 1, position: 16 }, 16));
      sent += bytesSentTo(leader, "n3");
    }
    expect(sent).toBe(0);
    // Room again: the next reply lacks the flag, and the records flow from where n3's log ends.
    leader.receive("n3", ok(1, { epoch: 1, position: 16 }, 16));
    const resumed = leader.sentTo("n3") as AppendMessage<string>;
    expect(resumed.prev.position).toBe(16);
    expect(bytesSentTo(leader, "n3")).toBe(1_000);
  });
});
