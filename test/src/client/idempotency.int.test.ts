// Appends whose reply is lost: the request reaches the node and is executed, the client
// never hears back, the connection breaks, and the client retries with the same event ids.
// The node's idempotency must turn the retry into the original result: one event, not two.
import { ChorusClient, jsonEvent } from "@chorus/client";
import {
  startFaultProxy,
  startNode,
  waitFor,
  type FaultProxy,
  type TestNode,
} from "@chorus/testing";
import { createServer } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

let node: TestNode;
let proxy: FaultProxy;
let client: ChorusClient;

beforeEach(async () => {
  // The node advertises the proxy as its native endpoint, so the client's WebSocket goes
  // through the proxy while gossip (HTTP) goes straight to the node.
  const nativePort = await freePort();
  proxy = await startFaultProxy({ target: { host: "127.0.0.1", port: nativePort } });
  node = await startNode({
    memDb: true,
    ports: { extTcp: nativePort },
    args: ["--ext-tcp-port-advertise-as", String(proxy.endpoint.port)],
  });
  client = new ChorusClient(
    `${node.connectionString}&operationTimeout=20000&reconnectionDelay=20&heartbeatInterval=200&heartbeatTimeout=400`,
  );
});

afterEach(async () => {
  await client?.close();
  await proxy?.close();
  await node?.stop();
});

async function storedCount(stream: string): Promise<number> {
  const res = await fetch(`http://${node.httpEndpoint}/streams/${stream}?from=0&count=100`);
  if (res.status === 404) return 0;
  const body = (await res.json()) as { events: unknown[] };
  return body.events.length;
}

describe.each([
  ["no_stream", "no_stream" as const],
  ["any", "any" as const],
  ["an exact revision", 0n],
])("an append with expected version %s whose reply is lost", (_name, expectedVersion) => {
  it("is retried with the same ids and answered with the original result", async () => {
    const stream = `idem-${String(expectedVersion)}`;
    if (expectedVersion === 0n)
      await client.appendToStream(stream, jsonEvent({ type: "First", data: {} }));
    else await client.appendToStream("warm-up", jsonEvent({ type: "T", data: {} }));
    const before = await storedCount(stream);

    proxy.dropRepliesAfterForwarding();
    const pending = client.appendToStream(stream, [jsonEvent({ type: "Once", data: { n: 1 } })], {
      expectedVersion,
    });
    // The node has executed it; the client has not heard.
    await waitFor(async () => (await storedCount(stream)) === before + 1, {
      message: "the append stored on the node",
    });
    proxy.resetAll();
    proxy.heal();

    const result = await pending;
    expect(result.nextExpectedVersion).toBe(BigInt(before));
    expect(await storedCount(stream)).toBe(before + 1);
  });
});
