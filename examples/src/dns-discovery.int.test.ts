import { startDnsServer, startNode, type TestDnsServer, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "./dns-discovery.js";

let node: TestNode;
let dns: TestDnsServer;
beforeAll(async () => {
  node = await startNode({ memDb: true });
  dns = await startDnsServer({ addresses: { "cluster.example.test": ["127.0.0.1"] } });
});
afterAll(async () => {
  await dns?.stop();
  await node?.stop();
});

it("the DNS discovery example finds the node through a real DNS server", async () => {
  const lines: string[] = [];
  await run(
    `chorus+discover://cluster.example.test:${node.extHttp.port}?dnsServer=${dns.address}`,
    (line) => lines.push(line),
  );
  expect(lines[0]).toBe(`cluster members: Leader@127.0.0.1:${node.extHttp.port}`);
  expect(lines).toContain("appended at revision 0");
});

it("the DNS discovery example reports an unknown name as such", async () => {
  const lines: string[] = [];
  await expect(
    run(
      `chorus+discover://nowhere.example.test:${node.extHttp.port}?dnsServer=${dns.address}&maxDiscoverAttempts=1`,
      (line) => lines.push(line),
    ),
  ).rejects.toThrow();
  expect(lines.join("\n")).toMatch(/unknown name nowhere\.example\.test/);
});
