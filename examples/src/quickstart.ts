/**
 * Quick start: append events with optimistic concurrency, read them back, and
 * follow a stream with a catch-up subscription.
 *
 *   npm start                          # in one terminal: a local node
 *   node examples/dist/quickstart.js   # in another
 *
 * CHORUS_URL overrides the connection string.
 */
import { ChorusClient, WrongExpectedVersionError, jsonEvent } from "@chorus/client";
import { pathToFileURL } from "node:url";

interface OrderPlaced {
  orderId: string;
  amount: number;
}

export async function run(connectionString: string, log: (line: string) => void): Promise<void> {
  const client = new ChorusClient(connectionString);
  try {
    const stream = `order-${Date.now()}`;

    // 1. Create the stream: "no_stream" fails if someone else created it first.
    const first = await client.appendToStream(
      stream,
      jsonEvent({
        type: "OrderPlaced",
        data: { orderId: stream, amount: 42 } satisfies OrderPlaced,
      }),
      { expectedVersion: "no_stream" },
    );
    log(`appended revision ${first.nextExpectedVersion} at position ${first.position}`);

    // 2. Append more, expecting the revision we know.
    await client.appendToStream(
      stream,
      [jsonEvent({ type: "OrderPaid", data: { orderId: stream } })],
      {
        expectedVersion: first.nextExpectedVersion,
      },
    );

    // 3. A stale writer loses cleanly.
    try {
      await client.appendToStream(stream, jsonEvent({ type: "OrderCancelled", data: {} }), {
        expectedVersion: first.nextExpectedVersion,
      });
    } catch (err) {
      if (!(err instanceof WrongExpectedVersionError)) throw err;
      log(`stale write rejected: expected ${err.expectedVersion}, actual ${err.actualVersion}`);
    }

    // 4. Read the stream back.
    for await (const { event } of client.readStream(stream, {
      direction: "forwards",
      fromRevision: "start",
    })) {
      log(`read ${event.revision}: ${event.type} ${JSON.stringify(event.data)}`);
    }

    // 5. Catch up and go live: the subscription delivers history, then new events.
    const sub = client.subscribeToStream(stream, { fromRevision: "start" });
    sub.on("caughtUp", () => {
      void client.appendToStream(
        stream,
        jsonEvent({ type: "OrderShipped", data: { orderId: stream } }),
      );
    });
    for await (const { event } of sub) {
      log(`subscription ${event.revision}: ${event.type}`);
      if (event.type === "OrderShipped") break; // leaving the loop unsubscribes
    }
  } finally {
    await client.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const url =
    process.env.CHORUS_URL ??
    "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false";
  await run(url, (line) => console.log(line));
}
