import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url));

function chorus(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`chorus ${args.join(" ")} did not exit within 20000 ms`));
    }, 20_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

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
