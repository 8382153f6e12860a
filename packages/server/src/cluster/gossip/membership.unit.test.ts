import { describe, expect, it } from "vitest";
import { Membership } from "./membership.js";
import { incoming, record } from "./test-support/fixtures.js";
import type { IncomingMember } from "./wire.js";

const DEAD = 2_000;
const REMOVE = 60_000;
const make = () => new Membership({ selfId: "self", deadAfterMs: DEAD, removeAfterMs: REMOVE });

interface Step {
  at: number;
  members?: IncomingMember[];
  sender?: string;
  sweep?: boolean;
}
interface Case {
  name: string;
  steps: Step[];
  /** instanceId → [timestampMs of the kept record, isAlive, lastHeardMs] or undefined (absent). */
  expect: Record<string, [number, boolean, number] | undefined>;
  changed?: boolean[];
}

const cases: Case[] = [
  {
    name: "a new member from a relay that says alive is alive, heard now",
    steps: [{ at: 100, members: [incoming(record("a", 5))], sender: "b" }],
    expect: { a: [5, true, 100] },
    changed: [true],
  },
  {
    name: "a new member from a relay that says dead starts dead",
    steps: [{ at: 100, members: [incoming(record("a", 5), false)], sender: "b" }],
    expect: { a: [5, false, 100 - DEAD] },
  },
  {
    name: "a fresher record replaces and refreshes",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 700, members: [incoming(record("a", 6))], sender: "b" },
    ],
    expect: { a: [6, true, 700] },
    changed: [true, false],
  },
  {
    name: "an older or equal record via a relay is ignored (no refresh)",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 700, members: [incoming(record("a", 5, { state: "Leader" }))], sender: "b" },
      { at: 800, members: [incoming(record("a", 4, { state: "Leader" }))], sender: "b" },
    ],
    expect: { a: [5, true, 100] },
    changed: [true, false, false],
  },
  {
    name: "a direct record refreshes liveness even when not fresher, but never goes back in time",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "b" },
      { at: 900, members: [incoming(record("a", 4, { state: "Leader" }))], sender: "a" },
    ],
    expect: { a: [5, true, 900] },
    changed: [true, false],
  },
  {
    name: "a fresher record that its relay thinks dead updates data but not liveness",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 1_000, members: [incoming(record("a", 6, { state: "Leader" }), false)], sender: "b" },
    ],
    expect: { a: [6, true, 100] },
    changed: [true, true],
  },
  {
    name: "the sender's isAlive=false never kills a member we heard from",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 200, members: [incoming(record("a", 5), false)], sender: "b" },
      { at: 300, sweep: true },
    ],
    expect: { a: [5, true, 100] },
  },
  {
    name: "records about this node are ignored",
    steps: [
      { at: 100, members: [incoming(record("self", 1e15, { state: "Leader" }))], sender: "b" },
    ],
    expect: { self: undefined },
    changed: [false],
  },
  {
    name: "dead after deadAfterMs of silence, not before",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + DEAD - 1, sweep: true },
    ],
    expect: { a: [5, true, 100] },
    changed: [true, false],
  },
  {
    name: "dead at deadAfterMs",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + DEAD, sweep: true },
    ],
    expect: { a: [5, false, 100] },
    changed: [true, true],
  },
  {
    name: "a dead member comes back with a fresher record",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + DEAD, sweep: true },
      { at: 5_000, members: [incoming(record("a", 9))], sender: "c" },
    ],
    expect: { a: [9, true, 5_000] },
    changed: [true, true, true],
  },
  {
    name: "removed after removeAfterMs",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + REMOVE, sweep: true },
    ],
    expect: { a: undefined },
    changed: [true, true],
  },
  {
    name: "a removed member is not resurrected by a stale relayed copy",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + REMOVE, sweep: true },
      { at: 200 + REMOVE, members: [incoming(record("a", 5))], sender: "b" },
    ],
    expect: { a: undefined },
    changed: [true, true, false],
  },
  {
    name: "a removed member returns when it speaks directly",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + REMOVE, sweep: true },
      { at: 200 + REMOVE, members: [incoming(record("a", 5))], sender: "a" },
    ],
    expect: { a: [5, true, 200 + REMOVE] },
  },
  {
    name: "the tombstone expires after another removeAfterMs",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 100 + REMOVE, sweep: true },
      { at: 100 + 2 * REMOVE, sweep: true },
      { at: 200 + 2 * REMOVE, members: [incoming(record("a", 5))], sender: "b" },
    ],
    expect: { a: [5, true, 200 + 2 * REMOVE] },
  },
  {
    name: "checkpoint moves alone are not significant changes",
    steps: [
      { at: 100, members: [incoming(record("a", 5))], sender: "a" },
      { at: 600, members: [incoming(record("a", 6, { writerCheckpoint: 99 }))], sender: "a" },
      {
        at: 700,
        members: [incoming(record("a", 7, { externalHttp: { host: "h", port: 1 } }))],
        sender: "a",
      },
    ],
    expect: { a: [7, true, 700] },
    changed: [true, false, true],
  },
];

describe("Membership", () => {
  it.each(cases)("$name", (c) => {
    const m = make();
    const changes: boolean[] = [];
    for (const step of c.steps) {
      if (step.members)
        changes.push(m.merge({ members: step.members, sender: step.sender }, step.at));
      if (step.sweep) changes.push(m.sweep(step.at));
    }
    for (const [id, want] of Object.entries(c.expect)) {
      const got = m.get(id);
      if (want === undefined) expect(got, id).toBeUndefined();
      else expect(got && [got.record.timestampMs, got.isAlive, got.lastHeardMs], id).toEqual(want);
    }
    if (c.changed) expect(changes).toEqual(c.changed);
  });

  it("tracks the last direct contact separately from relayed refreshes", () => {
    const m = make();
    m.merge({ members: [incoming(record("a", 5))], sender: "a" }, 100);
    m.merge({ members: [incoming(record("a", 6))], sender: "b" }, 600);
    expect(m.get("a")).toMatchObject({ lastHeardMs: 600, lastDirectMs: 100 });
  });

  it("lists members by instanceId", () => {
    const m = make();
    m.merge({ members: ["c", "a", "b"].map((id) => incoming(record(id, 1))), sender: "x" }, 0);
    expect(m.members().map((e) => e.record.instanceId)).toEqual(["a", "b", "c"]);
  });

  it("refuses inconsistent timeouts", () => {
    expect(() => new Membership({ selfId: "s", deadAfterMs: 10, removeAfterMs: 10 })).toThrow(
      RangeError,
    );
  });
});
