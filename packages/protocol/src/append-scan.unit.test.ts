import protobuf from "protobufjs/minimal.js";
import { describe, expect, it } from "vitest";
import { scanAppendFrame } from "./append-scan.js";
import { decodeFrame, encodeFrame, type FrameInit } from "./frame.js";
import { chorus } from "./gen/chorus.js";

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function event(i: number, type = "Tick", metadata = ""): chorus.IEventData {
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    type,
    isJson: true,
    data: utf8(JSON.stringify({ i })),
    metadata: utf8(metadata),
  };
}

describe("scanAppendFrame", () => {
  it("counts the events and their payload bytes, and decodes everything else", () => {
    const events = [event(1), event(22, "Ünïcode-type", '{"m":1}'), event(333)];
    const frame: FrameInit = {
      correlationId: 77,
      credentials: { username: "ops", password: "secret" },
      append: { streamId: "orders-1", expected: { revision: 4 }, events },
    };
    const scan = scanAppendFrame(encodeFrame(frame));
    expect(scan).toBeDefined();
    expect(scan!.events).toBe(3);
    const payload = events.reduce(
      (n, e) => n + utf8(e.type!).length + e.data!.length + e.metadata!.length,
      0,
    );
    expect(scan!.payloadBytes).toBe(payload);
    expect(Number(scan!.frame.correlationId)).toBe(77);
    expect(scan!.frame.credentials).toMatchObject({ username: "ops", password: "secret" });
    expect(scan!.frame.body).toBe("append");
    expect(scan!.frame.append?.streamId).toBe("orders-1");
    expect(Number(scan!.frame.append?.expected?.revision)).toBe(4);
    expect(scan!.frame.append?.events).toEqual([]);
  });

  it("reads what the full decode reads, for encodings the hand encoder and protobufjs make", () => {
    const many = Array.from({ length: 500 }, (_, i) => event(i, `T${i % 7}`, i % 3 ? "" : "{}"));
    const init: FrameInit = { correlationId: 5, append: { streamId: "s", events: many } };
    for (const bytes of [encodeFrame(init), chorus.Frame.encode(init).finish()]) {
      const scan = scanAppendFrame(bytes)!;
      const decoded = decodeFrame(bytes);
      const events = decoded.append!.events!;
      expect(scan.events).toBe(events.length);
      expect(scan.payloadBytes).toBe(
        events.reduce(
          (n, e) =>
            n + utf8(e.type ?? "").length + (e.data?.length ?? 0) + (e.metadata?.length ?? 0),
          0,
        ),
      );
      expect(scan.frame.append?.expected ?? null).toBe(decoded.append!.expected ?? null);
    }
  });

  it("a field repeated within an event counts once, as decoding keeps the last", () => {
    const event = chorus.EventData.encode({ type: "AAAAAAAA", data: utf8("x") });
    event.uint32((2 << 3) | 2).string("B"); // the type again
    const append = protobuf.Writer.create();
    append.uint32((1 << 3) | 2).string("s");
    append.uint32((3 << 3) | 2).bytes(event.finish());
    const frame = protobuf.Writer.create();
    frame.uint32(1 << 3).uint64(9);
    frame.uint32((10 << 3) | 2).bytes(append.finish());
    const bytes = frame.finish();
    expect(decodeFrame(bytes).append?.events?.[0]?.type).toBe("B");
    expect(scanAppendFrame(bytes)).toMatchObject({ events: 1, payloadBytes: 2 });
  });

  it("is undefined for other bodies, two bodies and bytes that do not parse", () => {
    expect(scanAppendFrame(encodeFrame({ correlationId: 1, ping: {} }))).toBeUndefined();
    const append = encodeFrame({ correlationId: 1, append: { streamId: "s", events: [event(1)] } });
    const ping = encodeFrame({ ping: {} });
    expect(scanAppendFrame(Buffer.concat([append, ping]))).toBeUndefined();
    expect(scanAppendFrame(append.subarray(0, append.length - 3))).toBeUndefined();
    expect(scanAppendFrame(new Uint8Array([0xff, 0xff, 0xff]))).toBeUndefined();
    expect(scanAppendFrame(new Uint8Array(0))).toBeUndefined();
  });
});
