import { describe, expect, it } from "vitest";
import { jsonEvent } from "../operations/events.js";
import { fast, inTestNodes, waitFor } from "../test-support/fixtures.js";

const { node, client } = inTestNodes();

describe("a catch-up subscription across reconnections", () => {
  it("resubscribes after each of many reconnections without piling up listeners", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const n = await node();
      const c = client(fast().withSingleNode(n.httpEndpoint).keepReconnecting().build());
      const sub = c.subscribeToStream("many");
      const it = sub[Symbol.asyncIterator]();
      const subscribes = () => n.received.filter((f) => f.subscribe).length;
      for (let i = 0; i < 15; i++) {
        await c.appendToStream("many", jsonEvent({ type: "E", data: i }));
        expect((await it.next()).value?.event.data).toBe(i);
        n.dropConnections();
        await waitFor(() => subscribes() === i + 2);
      }
      await sub.unsubscribe();
      await new Promise((r) => setImmediate(r)); // a warning is emitted on the next tick
      expect(warnings.map((w) => w.message)).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("unsubscribe() as the connection comes back settles, and no subscription is left on the node", async () => {
    const n = await node();
    const c = client(fast().withSingleNode(n.httpEndpoint).keepReconnecting().build());
    const sub = c.subscribeToStream("race");
    await waitFor(() => n.received.some((f) => f.subscribe));
    const unsubscribed = new Promise<void>((resolve, reject) => {
      // Right after "connected" the subscription has its new session but has not
      // subscribed on it yet.
      c.once("connected", () => queueMicrotask(() => void sub.unsubscribe().then(resolve, reject)));
    });
    n.dropConnections();
    await unsubscribed;
    expect(sub.isEnded).toBe(true);
    await c.close();
    expect(n.received.filter((f) => f.subscribe)).toHaveLength(1);
  });
});
