/**
 * A projection over part of `$all`, filtered on the server: only the order streams' placed and
 * shipped events travel, however much else the store holds. The projection keeps its resume
 * point (the last event it applied, or a later checkpoint the server sent while nothing
 * matched) and, started again, goes on from there with no repeat and no gap.
 *
 *   npm start                                    # in one terminal: a local node
 *   node examples/dist/filtered-projection.js    # in another
 *
 * CHORUS_URL overrides the connection string.
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { pathToFileURL } from "node:url";

/** What the projection keeps between runs (here in memory; a real one stores it with its state). */
export interface ProjectionState {
  placed: number;
  shipped: number;
  /** Resume after this position; undefined: from the start. */
  resumeAfter: bigint | undefined;
}

const FILTER = {
  streamNameRegex: "^order-\\d+$", // order-1, order-2, ... but not order-archive
  eventTypeRegex: "^Order(Placed|Shipped)$",
  checkpointInterval: 1_000, // a resume point after every 1,000 events that did not match
};

/** Applies everything up to the present, then stops. */
export async function project(client: ChorusClient, state: ProjectionState): Promise<number> {
  const sub = client.subscribeToAll({
    fromPosition: state.resumeAfter ?? "start",
    filter: FILTER,
  });
  let applied = 0;
  sub.on("checkpoint", (position) => (state.resumeAfter = position));
  sub.once("caughtUp", () => void sub.unsubscribe());
  for await (const { event } of sub) {
    if (event.type === "OrderPlaced") state.placed++;
    else state.shipped++;
    state.resumeAfter = event.position;
    applied++;
  }
  return applied;
}

async function writeSome(client: ChorusClient, from: number, orders: number): Promise<void> {
  for (let i = from; i < from + orders; i++) {
    await client.appendToStream(`order-${i}`, [
      jsonEvent({ type: "OrderPlaced", data: { id: i } }),
      jsonEvent({ type: "OrderNoteAdded", data: { id: i } }), // not projected
      jsonEvent({ type: "OrderShipped", data: { id: i } }),
    ]);
    // Traffic the projection never sees: other streams.
    await client.appendToStream(
      `clicks-${i % 3}`,
      Array.from({ length: 500 }, (_, k) => jsonEvent({ type: "Clicked", data: { k } })),
    );
  }
  await client.appendToStream("order-archive", jsonEvent({ type: "OrderPlaced", data: {} }));
}

export async function run(connection: string, log: (line: string) => void): Promise<void> {
  const client = new ChorusClient(connection);
  try {
    const state: ProjectionState = { placed: 0, shipped: 0, resumeAfter: undefined };
    await writeSome(client, 1, 4);
    log(`first run applied ${await project(client, state)} events`);
    await writeSome(client, 5, 2);
    log(`second run applied ${await project(client, state)} events`);
    log(`placed ${state.placed}, shipped ${state.shipped}`);
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
