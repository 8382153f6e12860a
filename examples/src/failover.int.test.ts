import { startCluster, type TestCluster } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./failover.js";

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startCluster({ size: 3 });
  await cluster.leader({ timeoutMs: 20_000 });
});
afterAll(async () => {
  await cluster?.stop();
});

it("the failover example rides through a leader kill: nothing lost, nothing twice", async () => {
  const lines: string[] = [];
  let killed = -1;
  const summary = await run(cluster.connectionString, (line) => lines.push(line), {
    events: 200,
    intervalMs: 5,
    halfway: async (leader) => {
      killed = cluster.nodes.findIndex((n) => n.extTcp.port === leader?.externalTcp?.port);
      await cluster.kill(killed);
    },
  });
  expect(killed).toBeGreaterThanOrEqual(0);
  expect(summary).toMatchObject({
    written: 200,
    received: 200,
    lost: 0,
    duplicates: 0,
    outOfOrder: 0,
    handled: 200,
    handledTwice: 0,
    leaderChanges: 1,
  });
  const text = lines.join("\n");
  expect(text).toMatch(/connected to Leader/);
  expect(text).toMatch(/disconnected: /);
  expect(text).toMatch(/leader changed from Leader .* to Leader/);
  expect(text).toMatch(/persistent subscription rejoined its group/);
  expect(text).toMatch(/done: written 200, received 200, lost 0, duplicates 0/);
});
