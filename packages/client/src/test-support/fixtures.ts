/** Helpers shared by the client's own tests against in-test nodes. Not exported. */
import { afterEach } from "vitest";
import { ChorusClient } from "../client.js";
import {
  ConnectionSettings,
  type ConnectionSettingsBuilder,
} from "../settings/connection-settings.js";
import { FakeNode, type FakeNodeOptions } from "./fake-node.js";

/**
 * Fake nodes and clients for the tests of one file: every one made in a test is closed
 * after it (the newest first).
 */
export function inTestNodes(): {
  node: (options?: FakeNodeOptions) => Promise<FakeNode>;
  client: (settings: ConnectionSettings | string) => ChorusClient;
} {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
  return {
    node: async (options = {}) => {
      const n = await FakeNode.start(options);
      cleanups.push(() => n.close());
      return n;
    },
    client: (settings) => {
      const c = new ChorusClient(settings);
      cleanups.push(() => c.close());
      return c;
    },
  };
}

/** Settings that give up and retry quickly, for tests. */
export function fast(builder: ConnectionSettingsBuilder = ConnectionSettings.create()) {
  return builder
    .withReconnectionDelay(10)
    .withDiscoverDelay(10)
    .withMaxDiscoverAttempts(2)
    .withGossipTimeout(500)
    .withOperationTimeout(5_000);
}

/** Polls `predicate` every 10 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("waitFor timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}
