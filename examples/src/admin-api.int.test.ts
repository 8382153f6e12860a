import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./admin-api.js";

const PASSWORD = "example password";
let node: TestNode;
let client: ChorusClient;

beforeAll(async () => {
  node = await startNode({ memDb: true, adminPassword: PASSWORD });
  client = new ChorusClient(
    ConnectionSettings.create()
      .withSingleNode(node.httpEndpoint)
      .withDefaultCredentials({ username: "admin", password: PASSWORD })
      .build(),
  );
});
afterAll(async () => {
  await client?.close();
  await node?.stop();
});

it("the admin API example lists streams and groups and replays parked events", async () => {
  await client.appendToStream("order-1", [jsonEvent({ type: "OrderPlaced", data: {} })]);
  await client.appendToStream("order-2", [jsonEvent({ type: "OrderPaid", data: {} })]);
  await client.appendToStream("user-1", [jsonEvent({ type: "Registered", data: {} })]);
  const ps = client.persistentSubscriptions;
  await ps.create("order-1", "billing", { startFrom: "start" });
  const sub = ps.subscribe("order-1", "billing");
  try {
    for await (const e of sub) {
      await sub.nack("park", "example", e);
      break;
    }
  } catch (err) {
    await sub.unsubscribe();
    throw err;
  }
  await waitFor(async () => (await ps.getInfo("order-1", "billing")).parkedCount === 1);

  const lines: string[] = [];
  await run(
    {
      baseUrl: `http://${node.httpEndpoint}`,
      password: PASSWORD,
      prefix: "order-",
      replayParked: true,
    },
    (line) => lines.push(line),
  );
  expect(lines[0]).toBe(`admin UI: http://${node.httpEndpoint}/ui/`);
  expect(lines[1]).toMatch(/^node Leader: \d+ events in \d+ streams/);
  expect(lines.filter((l) => l.startsWith("stream "))).toEqual([
    "stream order-1: last revision 0 (OrderPlaced)",
    "stream order-2: last revision 0 (OrderPaid)",
  ]);
  expect(lines).toContain("group order-1/billing: replaying 1 parked events");
  await expect(
    run({ baseUrl: `http://${node.httpEndpoint}`, prefix: "", replayParked: false }, () => {}),
  ).rejects.toThrow(/401 NOT_AUTHENTICATED/);
});
