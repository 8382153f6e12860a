import { describe, expect, it } from "vitest";
import { gossipTargets } from "./targets.js";
import { record, wireMember } from "./test-support/fixtures.js";
import {
  endpointKey,
  parseEndpoint,
  parseGossipDocument,
  parseGossipText,
  recordToWire,
} from "./wire.js";
import type { MemberEntry } from "./membership.js";

describe("parseGossipDocument", () => {
  it("accepts api.md's document and turns positions into numbers", () => {
    const r = parseGossipDocument({ members: [wireMember()], sender: "a", clusterId: "c1" });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.doc.sender).toBe("a");
    expect(r.doc.clusterId).toBe("c1");
    expect(r.doc.members[0]?.record).toMatchObject({
      lastCommitPosition: 9007199254740991,
      writerCheckpoint: 5,
      timestampMs: Date.parse("2025-01-01T00:00:00.000Z"),
      state: "Leader",
    });
  });

  it("round-trips through recordToWire", () => {
    const r = parseGossipDocument({ members: [wireMember()] });
    if (!r.ok) throw new Error(r.reason);
    const m = r.doc.members[0]!;
    expect(recordToWire(m.record, m.isAlive)).toEqual(wireMember());
  });

  const bad: [string, unknown, RegExp][] = [
    ["not an object", [1], /JSON object/],
    ["null", null, /JSON object/],
    ["no members", {}, /members must be an array/],
    ["member not an object", { members: [3] }, /must be an object/],
    ["missing instanceId", { members: [wireMember({ instanceId: undefined })] }, /instanceId/],
    ["unknown state", { members: [wireMember({ state: "Boss" })] }, /state "Boss" is unknown/],
    ["bad timestamp", { members: [wireMember({ timestamp: "yesterday" })] }, /timestamp/],
    [
      "numeric position",
      { members: [wireMember({ writerCheckpoint: 5 })] },
      /writerCheckpoint must be a decimal string/,
    ],
    [
      "position beyond 2^53",
      { members: [wireMember({ writerCheckpoint: "9007199254740993" })] },
      /out of range/,
    ],
    [
      "port out of range",
      { members: [wireMember({ internalHttp: { host: "h", port: 70000 } })] },
      /internalHttp.port/,
    ],
    [
      "endpoint not an object",
      { members: [wireMember({ externalTcp: "h:1" })] },
      /externalTcp must be/,
    ],
    ["epochNumber not integer", { members: [wireMember({ epochNumber: 1.5 })] }, /epochNumber/],
    ["isAlive not boolean", { members: [wireMember({ isAlive: "yes" })] }, /isAlive/],
    [
      "isReadOnlyReplica missing",
      { members: [wireMember({ isReadOnlyReplica: undefined })] },
      /isReadOnlyReplica/,
    ],
    ["duplicate member", { members: [wireMember(), wireMember()] }, /appears twice/],
    ["clusterId not a string", { members: [], clusterId: 3 }, /clusterId/],
    ["too many members", { members: new Array(1001).fill(0) }, /more than 1000/],
  ];
  it.each(bad)("rejects %s", (_name, body, reason) => {
    const r = parseGossipDocument(body);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it("rejects text that is not JSON", () => {
    expect(parseGossipText("{members:")).toEqual({
      ok: false,
      reason: "the body is not valid JSON",
    });
  });
});

describe("endpoints", () => {
  it.each([
    ["10.0.0.1:2112", { host: "10.0.0.1", port: 2112 }],
    ["node-1.example:1", { host: "node-1.example", port: 1 }],
    ["[::1]:2112", { host: "::1", port: 2112 }],
    ["nohostport", undefined],
    ["h:0", undefined],
    ["h:65536", undefined],
    [":80", undefined],
  ])("parseEndpoint(%s)", (text, want) => {
    expect(parseEndpoint(text)).toEqual(want);
  });

  it("keys IPv6 hosts in brackets", () => {
    expect(endpointKey({ host: "::1", port: 5 })).toBe("[::1]:5");
    expect(endpointKey({ host: "a", port: 5 })).toBe("a:5");
  });
});

describe("gossipTargets", () => {
  const entry = (id: string, port: number, isAlive: boolean): MemberEntry => ({
    record: record(id, 1, { internalHttp: { host: "127.0.0.1", port } }),
    isAlive,
    lastHeardMs: 0,
    lastDirectMs: undefined,
  });
  const seed = (port: number) => ({ host: "127.0.0.1", port });

  it("alive members, then seeds, then dead members; deduplicated; self skipped", () => {
    const targets = gossipTargets({
      members: [entry("a", 1, true), entry("b", 2, false), entry("c", 3, true)],
      seeds: [seed(3), seed(4), seed(9)],
      selfKeys: new Set(["127.0.0.1:9"]),
      fanout: Infinity,
      random: () => 0,
    });
    expect(targets.map((t) => t.port)).toEqual([1, 3, 4, 2]);
  });

  it("seeds stay targets when no member is known any more", () => {
    const targets = gossipTargets({
      members: [],
      seeds: [seed(4), seed(5)],
      selfKeys: new Set(),
      fanout: Infinity,
      random: () => 0,
    });
    expect(targets.map((t) => t.port)).toEqual([4, 5]);
  });

  it("skips members whose endpoint is not bound yet (port 0)", () => {
    const targets = gossipTargets({
      members: [entry("a", 0, true)],
      seeds: [],
      selfKeys: new Set(),
      fanout: Infinity,
      random: () => 0,
    });
    expect(targets).toEqual([]);
  });

  it("takes a random subset of size fanout with the injected random source", () => {
    const input = {
      members: [1, 2, 3, 4, 5].map((p) => entry(`m${p}`, p, true)),
      seeds: [],
      selfKeys: new Set<string>(),
      fanout: 2,
    };
    const first = gossipTargets({ ...input, random: () => 0 });
    expect(first.map((t) => t.port)).toEqual([1, 2]);
    const last = gossipTargets({ ...input, random: () => 0.999 });
    expect(last.map((t) => t.port)).toEqual([5, 1]);
  });
});
