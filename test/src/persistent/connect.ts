import { ChorusClient } from "@chorus/client";
import type { TestNode } from "@chorus/testing";
import { clientSettings, type Backend } from "../backends.js";

/**
 * A client of `node` as the persistent-subscription suites use it: through `backend`'s
 * transport, reconnecting without end and quickly, with a generous operation timeout.
 */
export function connect(node: TestNode, backend: Backend): ChorusClient {
  return new ChorusClient(
    clientSettings(backend, node)
      .keepReconnecting()
      .withReconnectionDelay(50)
      .withDiscoverDelay(50)
      .withOperationTimeout(20_000)
      .build(),
  );
}
