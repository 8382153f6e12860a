import diagnostics_channel from "node:diagnostics_channel";
import { afterEach, describe, expect, it } from "vitest";
import {
  ACK_CHANNEL_PREFIX,
  APPEND_CHANNEL_PREFIX,
  DELIVER_CHANNEL,
  LEADER_CHANGED_CHANNEL,
  READ_CHANNEL_PREFIX,
  RECONNECT_CHANNEL,
  TRACING_EVENTS,
  deliverMessage,
  publishDeliver,
  publishLeaderChanged,
  publishReconnect,
  traceAck,
  traceAppend,
  traceRead,
  withMetadataFields,
  type AppendMessage,
} from "./diagnostics.js";
import { binaryEvent, jsonEvent, type EventData } from "./operations/events.js";
import type { MemberInfo, ResolvedEvent } from "./types.js";

const decoder = new TextDecoder();
const metadataOf = (e: EventData): unknown =>
  e.metadata === undefined ? undefined : JSON.parse(decoder.decode(e.metadata));

/** Subscribes to channels for one test; every subscription is removed after it. */
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});
function listen(name: string, fn: (message: unknown, name: string | symbol) => void): void {
  diagnostics_channel.subscribe(name, fn);
  cleanups.push(() => diagnostics_channel.unsubscribe(name, fn));
}
/** Records every event of a tracing channel: [event, message]. */
function record(prefix: string): Array<[string, Record<string, unknown>]> {
  const seen: Array<[string, Record<string, unknown>]> = [];
  for (const event of TRACING_EVENTS)
    listen(`${prefix}:${event}`, (m) => seen.push([event, m as Record<string, unknown>]));
  return seen;
}

const RESULT = Object.freeze({ nextExpectedVersion: 3n, position: 40n });

describe("withMetadataFields", () => {
  const fields = { $traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };

  it("adds the fields to a JSON event's object metadata and keeps its id, type and data", () => {
    const e = jsonEvent({ type: "Placed", data: { a: 1 }, metadata: { user: "u1" } });
    const [out] = withMetadataFields([e], fields);
    expect(metadataOf(out!)).toEqual({ user: "u1", ...fields });
    expect(out!.id).toBe(e.id);
    expect(out!.type).toBe("Placed");
    expect(out!.data).toBe(e.data);
    expect(Object.isFrozen(out)).toBe(true);
    // The given event is not changed.
    expect(metadataOf(e)).toEqual({ user: "u1" });
  });

  it("gives a JSON event without metadata an object holding the fields", () => {
    const [out] = withMetadataFields([jsonEvent({ type: "T", data: 1 })], fields);
    expect(metadataOf(out!)).toEqual(fields);
  });

  it("keeps a value the event's metadata already has", () => {
    const e = jsonEvent({ type: "T", data: 1, metadata: { $traceparent: "mine" } });
    const [out] = withMetadataFields([e], fields);
    expect(out).toBe(e);
  });

  it("leaves binary events and JSON metadata that is not an object untouched", () => {
    const binary = binaryEvent({
      type: "B",
      data: new Uint8Array([1]),
      metadata: new TextEncoder().encode("{}"),
    });
    const array = jsonEvent({ type: "T", data: 1, metadata: [1, 2] });
    const text = jsonEvent({ type: "T", data: 1, metadata: "note" });
    const nul = jsonEvent({ type: "T", data: 1, metadata: null });
    const events = [binary, array, text, nul];
    const out = withMetadataFields(events, fields);
    expect(out).toEqual(events);
    out.forEach((e, i) => expect(e).toBe(events[i]));
  });

  it("returns the very list when there are no fields", () => {
    const events = [jsonEvent({ type: "T", data: 1 })];
    expect(withMetadataFields(events, {})).toBe(events);
  });
});

describe("the append channels", () => {
  it("with no subscriber: runs with the very events and publishes nothing", async () => {
    const events = [jsonEvent({ type: "T", data: 1 })];
    let given: readonly EventData[] | undefined;
    const result = await traceAppend("s-1", events, "any", async (e) => {
      given = e;
      return RESULT;
    });
    expect(result).toBe(RESULT);
    expect(given).toBe(events);
  });

  it("publishes start, end, asyncStart, asyncEnd with one message; start may add metadata", async () => {
    const seen = record(APPEND_CHANNEL_PREFIX);
    listen(`${APPEND_CHANNEL_PREFIX}:start`, (m) => {
      (m as AppendMessage).metadata["$traceparent"] = "tp";
    });
    const events = [jsonEvent({ type: "T", data: 1, metadata: { k: "v" } })];
    let given: readonly EventData[] = [];
    await traceAppend("s-1", events, 2n, async (e) => {
      given = e;
      return RESULT;
    });
    expect(seen.map(([event]) => event)).toEqual(["start", "end", "asyncStart", "asyncEnd"]);
    const message = seen[0]![1];
    for (const [, m] of seen) expect(m).toBe(message);
    expect(message).toMatchObject({
      streamId: "s-1",
      events,
      expectedVersion: 2n,
      metadata: { $traceparent: "tp" },
      result: RESULT,
    });
    expect(metadataOf(given[0]!)).toEqual({ k: "v", $traceparent: "tp" });
  });

  it("publishes error with the failure, then asyncStart and asyncEnd, and rejects with it", async () => {
    const seen = record(APPEND_CHANNEL_PREFIX);
    const failure = new Error("conflict");
    await expect(
      traceAppend("s-1", [jsonEvent({ type: "T", data: 1 })], "no_stream", () =>
        Promise.reject(failure),
      ),
    ).rejects.toBe(failure);
    expect(seen.map(([event]) => event)).toEqual([
      "start",
      "end",
      "error",
      "asyncStart",
      "asyncEnd",
    ]);
    expect(seen[2]![1]["error"]).toBe(failure);
    expect(seen[2]![1]["result"]).toBeUndefined();
  });
});

describe("the read and ack channels", () => {
  it("builds no message while nobody listens", async () => {
    let built = 0;
    const page = { events: [], endOfStream: true };
    await traceRead(
      () => {
        built++;
        return {
          operation: "readAll",
          streamId: "$all",
          direction: "forwards",
          from: 0n,
          maxCount: 1,
        };
      },
      async () => page,
    );
    await traceAck(
      () => {
        built++;
        return { action: "ack", reason: "", streamId: "s", group: "g", events: [] };
      },
      async () => undefined,
    );
    publishDeliver(null as unknown as ResolvedEvent); // would throw if it built a message
    expect(built).toBe(0);
  });

  it("a read page carries its request and result", async () => {
    const seen = record(READ_CHANNEL_PREFIX);
    const page = { events: [], endOfStream: true, next: 7 };
    await traceRead(
      () => ({
        operation: "readStream",
        streamId: "s",
        direction: "backwards",
        from: "end",
        maxCount: 5,
      }),
      async () => page,
    );
    expect(seen.at(-1)).toEqual([
      "asyncEnd",
      {
        operation: "readStream",
        streamId: "s",
        direction: "backwards",
        from: "end",
        maxCount: 5,
        result: page,
      },
    ]);
  });

  it("a failed ack not awaited is no unhandled rejection, and its error is published", async () => {
    const seen = record(ACK_CHANNEL_PREFIX);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    cleanups.push(() => process.off("unhandledRejection", onUnhandled));
    const failure = new Error("ended");
    void traceAck(
      () => ({ action: "park", reason: "bad", streamId: "s", group: "g", events: [] }),
      () => Promise.reject(failure),
    );
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
    expect(seen.find(([e]) => e === "error")?.[1]).toMatchObject({
      action: "park",
      reason: "bad",
      error: failure,
    });
  });
});

describe("deliveries, reconnects and leader changes", () => {
  const event: ResolvedEvent = Object.freeze({
    event: Object.freeze({
      streamId: "order-1",
      revision: 4n,
      position: 99n,
      id: "6f1c2d8e-0b7a-4a53-9a44-3d4f9c1e2b10",
      type: "Placed",
      isJson: true,
      data: {},
      metadata: { $traceparent: "tp" },
      created: new Date(0),
    }),
  });

  it("a delivery message names the event, its metadata and, when persistent, the group", () => {
    expect(deliverMessage(event, { subscription: "catchUp" })).toEqual({
      subscription: "catchUp",
      streamId: "order-1",
      eventId: event.event.id,
      type: "Placed",
      revision: 4n,
      position: 99n,
      metadata: { $traceparent: "tp" },
      event,
    });
    expect(
      deliverMessage(event, {
        subscription: "persistent",
        group: "g",
        source: "$all",
        retryCount: 2,
      }),
    ).toMatchObject({ subscription: "persistent", group: "g", source: "$all", retryCount: 2 });
  });

  it("publishes deliveries, reconnects and leader changes to their channels", () => {
    const got: Array<[string | symbol, unknown]> = [];
    for (const name of [DELIVER_CHANNEL, RECONNECT_CHANNEL, LEADER_CHANGED_CHANNEL])
      listen(name, (m, n) => got.push([n, m]));
    publishDeliver(event);
    publishDeliver({ ...event, retryCount: 1 }, "g", "$all");
    publishReconnect(3);
    const current = { instanceId: "b" } as MemberInfo;
    publishLeaderChanged({ current });
    expect(got.map(([n]) => n)).toEqual([
      DELIVER_CHANNEL,
      DELIVER_CHANNEL,
      RECONNECT_CHANNEL,
      LEADER_CHANGED_CHANNEL,
    ]);
    expect(got[0]![1]).toMatchObject({ subscription: "catchUp", eventId: event.event.id });
    expect(got[0]![1]).not.toHaveProperty("group");
    expect(got[1]![1]).toMatchObject({
      subscription: "persistent",
      group: "g",
      source: "$all",
      retryCount: 1,
      revision: 4n,
    });
    expect(got[2]![1]).toEqual({ attempt: 3 });
    expect(got[3]![1]).toEqual({ current });
  });
});
