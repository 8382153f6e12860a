// Appends whose reply is lost: the request reaches the node and is executed, the client
// never hears back, the connection breaks, and the client retries with the same event ids.
// The node's idempotency must turn the retry into the original result: one event, not two,
// however many other events were written in between.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startFaultProxy, waitFor, type FaultProxy, type TestNode } from "@chorus/testing";
import { createServer } from "node:net";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { BACKENDS, closeBackends, startBackendNode, type Backend } from "../backends.js";

afterAll(closeBackends);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe.each(BACKENDS)("a lost reply (%s)", (backend) => {
  let node: TestNode;
  let proxy: FaultProxy;
  let client: ChorusClient;

  beforeEach(async () => {
    // The node advertises the proxy as its native endpoint, so the client's WebSocket goes
    // through the proxy while gossip (HTTP) goes straight to the node.
    const nativePort = await freePort();
    proxy = await startFaultProxy({ target: { host: "127.0.0.1", port: nativePort } });
    node = await startBackendNode(backend, {
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
});

/** More events than the bounded idempotency window of earlier versions held (100,000). */
const OTHER_EVENTS = 120_000;

describe.each<Backend>(["disk", ...BACKENDS])("a node on %s", (backend) => {
  let n: TestNode;
  let c: ChorusClient;

  beforeEach(async () => {
    n = await startBackendNode(backend);
    c = new ChorusClient(`${n.connectionString}&operationTimeout=30000`);
  });

  afterEach(async () => {
    await c?.close();
    await n?.stop();
  });

  async function count(stream: string): Promise<number> {
    const res = await fetch(`http://${n.httpEndpoint}/streams/${stream}?from=0&count=100`);
    if (res.status === 404) return 0;
    return ((await res.json()) as { events: unknown[] }).events.length;
  }

  it(`answers any / stream_exists retries after ${OTHER_EVENTS} other events with the original result`, async () => {
    const once = jsonEvent({ type: "Once", data: { n: 1 } });
    const first = await c.appendToStream("retried", once); // expected version "any"
    const twice = [
      jsonEvent({ type: "Twice", data: { n: 2 } }),
      jsonEvent({ type: "Twice", data: { n: 3 } }),
    ];
    const second = await c.appendToStream("retried", twice, { expectedVersion: "stream_exists" });
    for (let done = 0; done < OTHER_EVENTS; done += 1000) {
      const batch = Array.from({ length: 1000 }, (_, i) =>
        jsonEvent({ type: "Other", data: { i: done + i } }),
      );
      await c.appendToStream(`other-${done % 7}`, batch);
    }

    expect(await c.appendToStream("retried", once)).toEqual(first);
    expect(await c.appendToStream("retried", twice, { expectedVersion: "stream_exists" })).toEqual(
      second,
    );
    expect(await c.appendToStream("retried", twice)).toEqual(second);
    expect(await count("retried")).toBe(3);

    if (backend !== "mem-db") {
      // SIGKILL: the on-disk index catches up from the log at the restart; an instance on
      // PostgreSQL finds the ids in the database.
      await c.close();
      await n.kill();
      await n.restart();
      c = new ChorusClient(`${n.connectionString}&operationTimeout=30000`);
      expect(await c.appendToStream("retried", once)).toEqual(first);
      expect(await c.appendToStream("retried", twice)).toEqual(second);
      expect(await count("retried")).toBe(3);
    }
  }, 120_000);
});
