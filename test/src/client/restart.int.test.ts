// @chorus/client across a crash and restart of a real node.
import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { expect, it } from "vitest";

function clientOf(node: TestNode): ChorusClient {
  return new ChorusClient(
    ConnectionSettings.create()
      .withSingleNode(node.httpEndpoint)
      .keepReconnecting()
      .withReconnectionDelay(50)
      .withDiscoverDelay(50)
      .withOperationTimeout(30_000)
      .withHeartbeat({ intervalMs: 200, timeoutMs: 1_000 })
      .build(),
  );
}

it.each([
  ["a SIGKILL + restart", false],
  // A node that stalls past the heartbeat timeout (as on a loaded machine) makes the client
  // drop the connection and reconnect; the crash then comes while it is reconnecting, and
  // no second "disconnected" follows. The test must not wait for one.
  ["a stall past the heartbeat timeout, then a SIGKILL + restart", true],
])(
  "reconnects after %s; the subscription resumes with no gap and no repeat",
  async (_name, stall) => {
    const node = await startNode();
    const client = clientOf(node);
    try {
      for (let i = 0; i < 2; i++)
        await client.appendToStream("crash", jsonEvent({ type: "E", data: i }));
      const sub = client.subscribeToStream("crash");
      const it = sub[Symbol.asyncIterator]();
      const seen: unknown[] = [];
      for (let i = 0; i < 2; i++) seen.push((await it.next()).value?.event.data);
      if (stall) {
        const lost = new Promise<Error>((r) => client.once("disconnected", r));
        node.pause();
        expect((await lost).message).toMatch(/heartbeat timeout/);
        node.resume();
      }
      await node.kill();
      await waitFor(() => client.status !== "connected", {
        timeoutMs: 10_000,
        message: "the client to notice the crash",
      });
      await node.restart();
      for (let i = 2; i < 4; i++)
        await client.appendToStream("crash", jsonEvent({ type: "E", data: i }));
      for (let i = 2; i < 4; i++) seen.push((await it.next()).value?.event.data);
      expect(seen).toEqual([0, 1, 2, 3]);
      await sub.unsubscribe();
    } finally {
      await client.close();
      await node.stop();
    }
  },
);
