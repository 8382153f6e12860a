import { describe, expect, it } from "vitest";
import { classify, errorBodyOf, GossipRequestError, parseGossip } from "./gossip.js";

describe("parseGossip", () => {
  it("parses members with decimal-string positions as bigints", () => {
    const [m] = parseGossip({
      members: [
        {
          instanceId: "a",
          state: "Leader",
          isAlive: true,
          timestamp: "2024-01-01T00:00:00Z",
          externalTcp: { host: "10.0.0.1", port: 1113 },
          externalHttp: { host: "10.0.0.1", port: 2113 },
          lastCommitPosition: "18446744073709551615",
          writerCheckpoint: "12",
          chaserCheckpoint: 11,
          epochNumber: 3,
          epochPosition: "100",
          epochId: "x",
          nodePriority: 2,
          isReadOnlyReplica: false,
        },
      ],
    });
    expect(m).toMatchObject({
      instanceId: "a",
      state: "Leader",
      externalTcp: { host: "10.0.0.1", port: 1113 },
      lastCommitPosition: 18446744073709551615n,
      writerCheckpoint: 12n,
      chaserCheckpoint: 11n,
      epochNumber: 3,
      epochPosition: 100n,
      nodePriority: 2,
    });
  });

  it.each([
    [{}, /expected \{ members/],
    [{ members: [{ state: "Leader", isAlive: true }] }, /instanceId/],
    [{ members: [{ instanceId: "a", state: "Leader", isAlive: "yes" }] }, /isAlive/],
    [
      { members: [{ instanceId: "a", state: "Leader", isAlive: true, writerCheckpoint: "1.5" }] },
      /writerCheckpoint/,
    ],
    [
      { members: [{ instanceId: "a", state: "Leader", isAlive: true, externalTcp: { host: 1 } }] },
      /externalTcp/,
    ],
  ])("rejects %j", (doc, message) => {
    expect(() => parseGossip(doc)).toThrow(GossipRequestError);
    expect(() => parseGossip(doc)).toThrow(message);
  });
});

describe("classify", () => {
  it.each([
    [Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), "refused"],
    [
      Object.assign(new Error("Connect Timeout Error"), { code: "UND_ERR_CONNECT_TIMEOUT" }),
      "timeout",
    ],
    [
      Object.assign(new Error("self-signed certificate"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }),
      "tls",
    ],
    [Object.assign(new Error("fetch failed"), { cause: { code: "ECONNREFUSED" } }), "refused"],
    [new Error("other"), "network"],
  ])("%s -> %s", (err, kind) => {
    expect(classify(err, 1000, { host: "127.0.0.1", tls: true }).kind).toBe(kind);
  });
});

describe("errorBodyOf", () => {
  it.each([
    [
      '{"error":"TOO_MANY_CONNECTIONS","message":"this node holds 20 client connections"}',
      "TOO_MANY_CONNECTIONS: this node holds 20 client connections",
    ],
    ['{"message":"not ready"}', "not ready"],
    ['{"error":"X"}', undefined],
    ["<html>bad gateway</html>", undefined],
    ["null", undefined],
    ["", undefined],
  ])("%j -> %j", (text, detail) => {
    expect(errorBodyOf(text)).toBe(detail);
  });

  it("cuts a long message", () => {
    const detail = errorBodyOf(JSON.stringify({ message: "x".repeat(1000) }));
    expect(detail?.length).toBe(303);
    expect(detail?.endsWith("...")).toBe(true);
  });
});
