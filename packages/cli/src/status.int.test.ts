import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runChorus as chorus } from "./test-support/run.js";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ size: 3, memDb: true });
  await cluster.leader({ timeoutMs: 30_000 });
});

afterAll(async () => {
  await cluster?.stop();
});

describe("chorus status", () => {
  it("lists the three members with exactly one leader, their epochs, positions and lag", async () => {
    const conn = ["--connection", cluster.connectionString];
    // gossip settles a moment after the election: until every member is alive and one leads
    const members = await waitFor(
      async () => {
        const r = await chorus([...conn, "status", "--json"]);
        if (r.code !== 0) throw new Error(r.stderr);
        const rows = r.stdout
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        const ready =
          rows.length === 3 &&
          rows.every((m) => m["isAlive"] === true) &&
          rows.filter((m) => m["state"] === "Leader").length === 1;
        return ready ? rows : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: "three live members, one leader" },
    );
    const endpoints = cluster.nodes.map((n) => n.httpEndpoint).sort();
    expect(members.map((m) => m["externalHttp"]).sort()).toEqual(endpoints);
    const leader = members.find((m) => m["state"] === "Leader")!;
    expect(leader["lag"]).toBe("0");
    for (const m of members) {
      expect(m["writerCheckpoint"]).toMatch(/^\d+$/);
      expect(m["lag"]).toBe(
        (
          BigInt(leader["writerCheckpoint"] as string) - BigInt(m["writerCheckpoint"] as string)
        ).toString(),
      );
      expect(typeof m["epochNumber"]).toBe("number");
    }

    const text = await chorus([...conn, "status"]);
    expect(text.code).toBe(0);
    const [headline, header, ...rows] = text.stdout.trimEnd().split("\n");
    expect(headline).toMatch(/: 3 members, leader 127\.0\.0\.1:\d+ \(epoch \d+\)$/);
    expect(header).toMatch(/^ENDPOINT\s+STATE\s+ALIVE\s+EPOCH\s+WRITER\s+CHASER\s+COMMIT\s+LAG/);
    expect(rows).toHaveLength(3);
    expect(rows.filter((r) => /\sLeader\s/.test(r))).toHaveLength(1);
  });
});
