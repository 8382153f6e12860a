// @chorus/client against a real chorus-server process (one node), on each backend.
import {
  ChorusClient,
  jsonEvent,
  StreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  type ResolvedEvent,
} from "@chorus/client";
import type { TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLIENT_BACKENDS, clientSettings, closeBackends, startBackendNode } from "../backends.js";

afterAll(closeBackends);

async function collect(iterable: AsyncIterable<ResolvedEvent>): Promise<ResolvedEvent[]> {
  const out: ResolvedEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

describe.each(CLIENT_BACKENDS)("client against a real node (%s)", (backend) => {
  let node: TestNode;
  let client: ChorusClient;

  beforeAll(async () => {
    node = await startBackendNode(backend);
    client = new ChorusClient(
      clientSettings(backend, node).withReconnectionDelay(20).withDiscoverDelay(50).build(),
    );
  });

  afterAll(async () => {
    await client?.close();
    await node?.stop();
  });

  it("appends, reads back and enforces the expected version", async () => {
    const first = await client.appendToStream(
      "order-1",
      jsonEvent({ type: "Placed", data: { id: 1 } }),
      { expectedVersion: "no_stream" },
    );
    expect(first.nextExpectedVersion).toBe(0n);
    const second = await client.appendToStream(
      "order-1",
      [jsonEvent({ type: "Paid", data: { n: 1 } }), jsonEvent({ type: "Shipped", data: {} })],
      {
        expectedVersion: 0n,
      },
    );
    expect(second.nextExpectedVersion).toBe(2n);
    expect(second.position).toBeGreaterThan(first.position);
    const events = await collect(client.readStream("order-1"));
    expect(events.map((e) => [e.event.revision, e.event.type])).toEqual([
      [0n, "Placed"],
      [1n, "Paid"],
      [2n, "Shipped"],
    ]);
    expect(events[0]!.event.data).toEqual({ id: 1 });
    const err = await client
      .appendToStream("order-1", jsonEvent({ type: "X", data: 1 }), { expectedVersion: 0n })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect((err as WrongExpectedVersionError).actualVersion).toBe(2n);
  });

  it("an append retried with the same event ids is idempotent", async () => {
    const event = jsonEvent({ type: "Once", data: 1 });
    const a = await client.appendToStream("idem-1", event, { expectedVersion: "no_stream" });
    const b = await client.appendToStream("idem-1", event, { expectedVersion: "no_stream" });
    expect(b).toEqual(a);
    expect(await collect(client.readStream("idem-1"))).toHaveLength(1);
  });

  it("pages through a stream and $all", async () => {
    for (let i = 0; i < 7; i++)
      await client.appendToStream("paged", jsonEvent({ type: "E", data: i }));
    expect(
      (await collect(client.readStream("paged", { pageSize: 3 }))).map((e) => e.event.data),
    ).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(
      (
        await collect(
          client.readStream("paged", { direction: "backwards", pageSize: 2, maxCount: 3 }),
        )
      ).map((e) => e.event.data),
    ).toEqual([6, 5, 4]);
    const all = await collect(client.readAll({ pageSize: 4 }));
    const positions = all.map((e) => e.event.position);
    expect([...positions].sort((x, y) => (x < y ? -1 : 1))).toEqual(positions);
    expect(all.filter((e) => e.event.streamId === "paged")).toHaveLength(7);
  });

  it("throws StreamNotFoundError / StreamDeletedError while iterating", async () => {
    await expect(collect(client.readStream("nope-never"))).rejects.toBeInstanceOf(
      StreamNotFoundError,
    );
    await client.appendToStream("doomed", jsonEvent({ type: "E", data: 1 }));
    await client.deleteStream("doomed", { hard: true });
    await expect(collect(client.readStream("doomed"))).rejects.toBeInstanceOf(StreamDeletedError);
  });

  it("stores stream metadata", async () => {
    await client.appendToStream("meta", jsonEvent({ type: "E", data: 1 }));
    await client.setStreamMetadata("meta", { maxCount: 5 });
    const meta = await client.getStreamMetadata("meta");
    expect(meta.metadata).toMatchObject({ maxCount: 5 });
    expect(meta.metaRevision).toBe(0n);
  });

  it("subscribes: catch-up, caughtUp, then live", async () => {
    for (let i = 0; i < 3; i++)
      await client.appendToStream("live", jsonEvent({ type: "E", data: i }));
    const sub = client.subscribeToStream("live", { bufferSize: 2 });
    const caughtUp = new Promise<void>((r) => sub.once("caughtUp", () => r()));
    const seen: unknown[] = [];
    for await (const e of sub) {
      seen.push(e.event.data);
      if (seen.length === 3) {
        await caughtUp;
        await client.appendToStream("live", jsonEvent({ type: "E", data: 3 }));
      }
      if (seen.length === 4) break;
    }
    expect(seen).toEqual([0, 1, 2, 3]);
  });

  it("reports cluster members from gossip", async () => {
    const members = await client.clusterMembers();
    expect(members).toHaveLength(1);
    expect(members[0]!.state).toBe("Leader");
    expect(typeof members[0]!.writerCheckpoint).toBe("bigint");
  });
});
