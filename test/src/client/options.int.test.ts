// Unknown and not-yet-supported option keys against a real chorus-server process: refused by
// the client before anything is sent, never dropped (which would widen a filtered read).
import {
  ChorusClient,
  ConnectionSettings,
  InvalidArgumentError,
  jsonEvent,
  type ResolvedEvent,
} from "@chorus/client";
import { createNode } from "@chorus/server";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

async function collect(iterable: AsyncIterable<ResolvedEvent>): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

describe("option keys against a real node", () => {
  let node: TestNode;
  let client: ChorusClient;

  beforeAll(async () => {
    node = await startNode({ memDb: true });
    client = new ChorusClient(
      ConnectionSettings.create().withSingleNode(node.httpEndpoint).build(),
    );
  });

  afterAll(async () => {
    await client?.close();
    await node?.stop();
  });

  it("readAll with a misspelt filter key is refused, not read unfiltered", async () => {
    await client.appendToStream("order-1", jsonEvent({ type: "Placed", data: {} }));
    await client.appendToStream("cart-1", jsonEvent({ type: "Added", data: {} }));
    const refused = () =>
      client.readAll({ filter: { streamNameRegexp: "^order-" } } as unknown as Parameters<
        typeof client.readAll
      >[0]);
    expect(refused).toThrow(InvalidArgumentError);
    expect(refused).toThrow(/streamNameRegexp/);
    // the filters that exist narrow the read
    const byPrefix = await collect(client.readAll({ filter: { streamNamePrefix: ["order-"] } }));
    expect(byPrefix.map((e) => e.event.streamId)).toEqual(["order-1"]);
    const byRegex = await collect(client.readAll({ filter: { streamNameRegex: "^cart-" } }));
    expect(byRegex.map((e) => e.event.streamId)).toEqual(["cart-1"]);
  });

  it("createNode refuses a misspelt option", async () => {
    await expect(createNode({ memdb: true } as Parameters<typeof createNode>[0])).rejects.toThrow(
      /unknown node option "memdb"/,
    );
  });
});
