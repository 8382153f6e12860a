import { chorus } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import type { StoredEvent } from "../streams/types.js";
import { encodeEventsFrame } from "./event-frames.js";

function event(over: Partial<StoredEvent> = {}): StoredEvent {
  return {
    streamId: "orders-1",
    revision: 3,
    position: 4096,
    id: "0b7e2c1a-5d4f-4e3a-9c8b-7a6f5e4d3c2b",
    type: "OrderPlaced",
    isJson: true,
    data: Buffer.from('{"total":12}'),
    metadata: new Uint8Array(0),
    createdMs: 1_795_000_000_000,
    ...over,
  };
}

const events: StoredEvent[] = [
  event(),
  event({ streamId: "ünïcødé-stream-✓", type: "Typ€", isJson: false, revision: 0, position: 0 }),
  event({ data: new Uint8Array(300).fill(7), metadata: Buffer.from("{}"), createdMs: 0 }),
  event({ revision: Number.MAX_SAFE_INTEGER, position: 2 ** 40 + 5, streamId: "s".repeat(200) }),
];

function protobufjs(frame: chorus.IFrame): Uint8Array {
  return chorus.Frame.encode(frame).finish();
}

describe("encodeEventsFrame", () => {
  it("writes a read reply as protobufjs does", () => {
    const rest = { endOfStream: false, nextPosition: 123_456, nextRevision: 0, lastRevision: 9 };
    const bytes = encodeEventsFrame(77, { readResult: rest }, events);
    const wire = events.map((e) => ({ event: { ...e } }));
    expect(Buffer.from(bytes)).toEqual(
      Buffer.from(protobufjs({ correlationId: 77, readResult: { events: wire, ...rest } })),
    );
    const back = chorus.Frame.decode(bytes);
    expect(back.readResult?.events?.[1]?.event?.streamId).toBe("ünïcødé-stream-✓");
    expect(back.readResult?.events?.[3]?.event?.revision).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("writes pushed subscription events as protobufjs does", () => {
    for (const body of [{}, { checkpointPosition: 2 ** 33 }]) {
      const bytes = encodeEventsFrame(2 ** 31, { subscriptionEvents: body }, events);
      const wire = events.map((e) => ({ event: { ...e } }));
      expect(Buffer.from(bytes)).toEqual(
        Buffer.from(
          protobufjs({ correlationId: 2 ** 31, subscriptionEvents: { events: wire, ...body } }),
        ),
      );
    }
  });

  it("writes an empty page and falls back to protobufjs for numbers out of range", () => {
    expect(Buffer.from(encodeEventsFrame(1, { readResult: { endOfStream: true } }, []))).toEqual(
      Buffer.from(protobufjs({ correlationId: 1, readResult: { events: [], endOfStream: true } })),
    );
    expect(Buffer.from(encodeEventsFrame(2 ** 60, { readResult: {} }, events))).toEqual(
      Buffer.from(
        protobufjs({
          correlationId: 2 ** 60,
          readResult: { events: events.map((e) => ({ event: e })) },
        }),
      ),
    );
    const odd = [event({ revision: -1 })];
    expect(Buffer.from(encodeEventsFrame(5, { readResult: {} }, odd))).toEqual(
      Buffer.from(protobufjs({ correlationId: 5, readResult: { events: [{ event: odd[0] }] } })),
    );
  });
});
