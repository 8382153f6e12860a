/**
 * The event store inside the service's own process: two subdomains of one service share an
 * embedded, durable node. Ordering appends order events; Shipping keeps a read model of the
 * orders to ship, projected through a catch-up subscription. The node opens no port; each
 * subdomain has its own client, as it would against a cluster.
 *
 *   node examples/dist/embedded.js [DATA_DIR]     # default ./embedded-data; run it twice
 *
 * Moving to a node of its own (or a cluster) later changes only the connection settings:
 * `new ChorusClient("chorus://host:2113")` instead of `withInProcessNode(node)`.
 */
import { ChorusClient, ConnectionSettings, jsonEvent } from "@chorus/client";
import { createNode } from "@chorus/server";
import { pathToFileURL } from "node:url";

interface OrderPlaced {
  orderId: string;
  items: number;
}

/** Ordering: the write side. */
class Ordering {
  constructor(private readonly client: ChorusClient) {}

  async place(orderId: string, items: number): Promise<void> {
    await this.client.appendToStream(
      `order-${orderId}`,
      jsonEvent({ type: "OrderPlaced", data: { orderId, items } satisfies OrderPlaced }),
      { expectedVersion: "no_stream" }, // an order is placed once
    );
  }

  async cancel(orderId: string): Promise<void> {
    await this.client.appendToStream(
      `order-${orderId}`,
      jsonEvent({ type: "OrderCancelled", data: { orderId } }),
      { expectedVersion: "stream_exists" },
    );
  }
}

/** Shipping: a read model of the orders to ship, kept by a subscription to every order. */
class Shipping {
  readonly toShip = new Map<string, number>();
  #seen = 0;
  #waiters: Array<{ count: number; resolve: () => void }> = [];

  constructor(client: ChorusClient) {
    const sub = client.subscribeToAll({
      fromPosition: "start",
      filter: { streamNamePrefix: ["order-"] },
    });
    void (async () => {
      for await (const { event } of sub) {
        const data = event.data as OrderPlaced;
        if (event.type === "OrderPlaced") this.toShip.set(data.orderId, data.items);
        if (event.type === "OrderCancelled") this.toShip.delete(data.orderId);
        this.#seen++;
        for (const w of this.#waiters.filter((w) => this.#seen >= w.count)) w.resolve();
        this.#waiters = this.#waiters.filter((w) => this.#seen < w.count);
      }
    })();
  }

  /** Resolves once the projection has applied `count` events. */
  caughtUpTo(count: number): Promise<void> {
    if (this.#seen >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }
}

export async function run(dataDir: string, log: (line: string) => void): Promise<void> {
  // A durable node in this process: fsync before every acknowledgement, no port opened.
  const node = await createNode({ db: dataDir, listen: false, logLevel: "warn" });
  const settings = ConnectionSettings.create().withInProcessNode(node).build();
  const orderingClient = new ChorusClient(settings);
  const shippingClient = new ChorusClient(settings);
  try {
    const ordering = new Ordering(orderingClient);
    const shipping = new Shipping(shippingClient);
    const run = Date.now().toString(36);
    await ordering.place(`${run}-1`, 3);
    await ordering.place(`${run}-2`, 1);
    await ordering.place(`${run}-3`, 5);
    await ordering.cancel(`${run}-2`);
    try {
      await ordering.place(`${run}-1`, 9);
    } catch (err) {
      log(`placing order ${run}-1 twice is refused: ${(err as Error).name}`);
    }
    // Every order event of this run and of earlier runs (the store is on disk).
    let total = 0;
    for await (const _ of orderingClient.readAll({ filter: { streamNamePrefix: ["order-"] } }))
      total++;
    await shipping.caughtUpTo(total);
    log(`orders to ship: ${shipping.toShip.size} (events projected: ${total})`);
  } finally {
    await orderingClient.close();
    await shippingClient.close();
    await node.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await run(process.argv[2] ?? "./embedded-data", (line) => process.stdout.write(`${line}\n`));
}
