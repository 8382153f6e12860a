// @chorus/client across a crash and restart of a real node.
import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { startNode } from "@chorus/testing";
import { expect, it } from "vitest";

it("reconnects after a SIGKILL + restart; the subscription resumes with no gap and no repeat", async () => {
  const node = await startNode();
  const client = new ChorusClient(
    ConnectionSettings.create()
      .withSingleNode(node.httpEndpoint)
      .keepReconnecting()
      .withReconnectionDelay(50)
      .withDiscoverDelay(50)
      .withOperationTimeout(30_000)
      .withHeartbeat({ intervalMs: 200, timeoutMs: 1_000 })
      .build(),
  );
  try {
    for (let i = 0; i < 2; i++)
      await client.appendToStream("crash", jsonEvent({ type: "E", data: i }));
    const sub = client.subscribeToStream("crash");
    const it = sub[Symbol.asyncIterator]();
    const seen: unknown[] = [];
    for (let i = 0; i < 2; i++) seen.push((await it.next()).value?.event.data);
    const disconnected = new Promise<Error>((r) => client.once("disconnected", r));
    await node.kill();
    await disconnected;
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
});
