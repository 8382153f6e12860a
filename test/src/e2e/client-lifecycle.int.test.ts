/**
 * Deadlines and clean shutdown of the client against real processes.
 */
import { ChorusClient, ClientClosedError, TimeoutError, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

function activeHandles(): string[] {
  // The active resources the runtime reports, minus the ones the test runner itself keeps.
  return process.getActiveResourcesInfo().filter((r) => r !== "TTYWrap" && r !== "PipeWrap");
}

let node: TestNode | undefined;
afterEach(async () => {
  await node?.stop();
  node = undefined;
});

describe("client deadlines", () => {
  it("fails with TimeoutError within operationTimeout + 10% when no node is reachable", async () => {
    const port = await closedPort();
    const operationTimeoutMs = 1_500;
    const client = new ChorusClient(
      `chorus://127.0.0.1:${port}?tls=false&operationTimeout=${operationTimeoutMs}&reconnectionDelay=50&maxReconnections=1000&queueTimeout=60000`,
    );
    const start = performance.now();
    const error = await client.appendToStream("s", jsonEvent({ type: "T", data: {} })).then(
      () => undefined,
      (err: unknown) => err,
    );
    const elapsed = performance.now() - start;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(elapsed).toBeGreaterThanOrEqual(operationTimeoutMs * 0.9);
    expect(elapsed).toBeLessThanOrEqual(operationTimeoutMs * 1.1);
    await client.close();
  });

  it("rejects with the signal's reason when aborted", async () => {
    const port = await closedPort();
    const client = new ChorusClient(`chorus://127.0.0.1:${port}?tls=false&operationTimeout=60000`);
    const controller = new AbortController();
    const reason = new Error("user gave up");
    const pending = client.appendToStream("s", jsonEvent({ type: "T", data: {} }), {
      signal: controller.signal,
    });
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    await client.close();
  });
});

describe("client close", () => {
  it("fails requests still waiting for a node with ClientClosedError instead of waiting for them", async () => {
    const port = await closedPort();
    const client = new ChorusClient(
      `chorus+discover://127.0.0.1:${port}?tls=false&maxDiscoverAttempts=1000&discoverDelay=20&operationTimeout=60000`,
    );
    const connecting = client.connect().then(
      () => undefined,
      (err: unknown) => err,
    );
    const appending = client.appendToStream("s", jsonEvent({ type: "T", data: {} })).then(
      () => undefined,
      (err: unknown) => err,
    );
    const start = performance.now();
    await client.close();
    expect(performance.now() - start).toBeLessThan(5_000);
    expect(await connecting).toBeInstanceOf(ClientClosedError);
    expect(await appending).toBeInstanceOf(ClientClosedError);
  });

  it("leaves no open socket or timer behind after close()", async () => {
    node = await startNode({ memDb: true });
    const before = activeHandles();
    const client = new ChorusClient(node.connectionString);
    await client.appendToStream("close-test", jsonEvent({ type: "T", data: {} }));
    const sub = client.subscribeToStream("close-test", { fromRevision: "start" });
    const iterator = sub[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    expect(activeHandles().length).toBeGreaterThan(before.length);
    await client.close();
    // Sockets close asynchronously; give the event loop one turn per pending close.
    for (let i = 0; i < 10 && activeHandles().length > before.length; i++)
      await new Promise((r) => setImmediate(r));
    expect(activeHandles()).toEqual(before);
  });
});
