import { describe, expect, it } from "vitest";
import {
  EVENT_PREV_POSITION_OFFSET,
  MIN_RECORD_BYTES,
  RecordType,
  checkRecord,
  decodeRecord,
  encodeEpoch,
  encodeEvent,
  encodeRaw,
  encodeTombstone,
  epochNumberAt,
  isBatchEndAt,
  keyToUuid,
  uuidToKey,
  type EventRecordInit,
} from "./record.js";

const ID = "0f8fad5b-d9cb-469f-a165-70867728950e";

function event(overrides: Partial<EventRecordInit> = {}): EventRecordInit {
  return {
    batchEnd: true,
    streamId: "orders-ü",
    revision: 41,
    prevPosition: 12345,
    idKey: uuidToKey(ID),
    type: "OrderPlaced",
    isJson: true,
    createdMs: 1_700_000_000_123,
    data: Buffer.from('{"a":1}'),
    metadata: Buffer.from("m"),
    ...overrides,
  };
}

describe("record codec", () => {
  it("round-trips UUIDs through 16-byte keys", () => {
    expect(uuidToKey(ID).length).toBe(16);
    expect(keyToUuid(uuidToKey(ID.toUpperCase()))).toBe(ID);
  });

  it.each<[string, Partial<EventRecordInit>]>([
    ["a plain event", {}],
    ["the first event of a stream", { revision: 0, prevPosition: -1 }],
    [
      "a mid-batch binary event",
      { batchEnd: false, isJson: false, data: Buffer.from([0, 255, 7]) },
    ],
    ["empty data and metadata", { data: new Uint8Array(0), metadata: new Uint8Array(0) }],
    ["large numbers", { revision: 2 ** 52, prevPosition: 2 ** 50 }],
  ])("round-trips %s", (_name, overrides) => {
    const init = event(overrides);
    const buf = encodeEvent(init);
    expect(buf.readUInt32LE(0)).toBe(buf.length);
    expect(buf.readUInt32LE(buf.length - 4)).toBe(buf.length);
    expect(buf.readDoubleLE(EVENT_PREV_POSITION_OFFSET)).toBe(init.prevPosition);
    const r = decodeRecord(buf);
    expect(r.ok).toBe(true);
    if (!r.ok || r.record.kind !== "event") throw new Error("not an event");
    const { kind, ...rest } = r.record;
    expect(kind).toBe("event");
    expect({ ...rest, data: Buffer.from(rest.data), metadata: Buffer.from(rest.metadata) }).toEqual(
      {
        ...init,
        data: Buffer.from(init.data),
        metadata: Buffer.from(init.metadata),
      },
    );
    expect(r.length).toBe(buf.length);
  });

  it("round-trips tombstones and raw records, and decodes at an offset", () => {
    const t = encodeTombstone({ batchEnd: true, streamId: "gone", createdMs: 5 });
    const raw = encodeRaw(RecordType.EPOCH, Buffer.from([1, 9, 9]));
    const both = Buffer.concat([t, raw]);
    expect(decodeRecord(both, 0)).toEqual({
      ok: true,
      length: t.length,
      record: { kind: "tombstone", batchEnd: true, streamId: "gone", createdMs: 5 },
    });
    const r = decodeRecord(both, t.length);
    expect(r.ok && r.record.kind === "other" && [...r.record.payload]).toEqual([1, 9, 9]);
    expect(r.ok && r.record.batchEnd).toBe(true);
  });

  const good = encodeEvent(event());
  function mutate(f: (b: Buffer) => Buffer): Buffer {
    return f(Buffer.from(good));
  }
  it.each<[string, Buffer, string]>([
    ["an empty buffer", Buffer.alloc(0), "short"],
    ["a cut record", good.subarray(0, good.length - 1), "short"],
    ["a header only", good.subarray(0, 9), "short"],
    ["a zero length", Buffer.alloc(32), "bad_length"],
    ["a huge length", mutate((b) => (b.writeUInt32LE(0xffffffff, 0), b)), "bad_length"],
    ["a tiny length", mutate((b) => (b.writeUInt32LE(MIN_RECORD_BYTES - 1, 0), b)), "bad_length"],
    ["a flipped payload bit", mutate((b) => ((b[30] = (b[30] ?? 0) ^ 0x10), b)), "bad_crc"],
    ["a flipped type", mutate((b) => ((b[8] = 3), b)), "bad_crc"],
    ["a wrong trailer", mutate((b) => (b.writeUInt32LE(7, b.length - 4), b)), "bad_trailer"],
  ])("rejects %s", (_name, buf, problem) => {
    expect(decodeRecord(buf)).toEqual({ ok: false, problem });
  });

  it("reports a payload that does not fit its record", () => {
    // A valid frame whose EVENT payload claims more bytes than it has.
    const bad = encodeRaw(RecordType.EVENT, Buffer.from([1, 2, 3]));
    expect(checkRecord(bad, 0).ok).toBe(true);
    expect(decodeRecord(bad)).toEqual({ ok: false, problem: "bad_payload" });
  });

  const epoch7 = encodeEpoch({ epochNumber: 7, epochId: ID, leaderInstanceId: "n1" });
  it("tells a record's batch end and an EPOCH record's epoch without decoding", () => {
    const mid = encodeEvent(event({ batchEnd: false }));
    const last = encodeEvent(event());
    const gone = encodeTombstone({ batchEnd: true, streamId: "x", createdMs: 1 });
    const log = Buffer.concat([mid, last, epoch7, gone]);
    const at = [0, mid.length, mid.length + last.length, log.length - gone.length];
    expect(at.map((a) => isBatchEndAt(log, a))).toEqual([false, true, true, true]);
    expect(at.map((a) => epochNumberAt(log, a))).toEqual([undefined, undefined, 7, undefined]);
    expect(epochNumberAt(epoch7)).toBe(7);
  });

  it.each<[string, Buffer]>([
    ["an empty buffer", Buffer.alloc(0)],
    ["a header only", epoch7.subarray(0, 9)],
    ["a cut EPOCH record", epoch7.subarray(0, 20)],
    ["an EPOCH record too short for a number", encodeRaw(RecordType.EPOCH, Buffer.from([1, 2]))],
  ])("finds no epoch number in %s", (_name, buf) => {
    expect(epochNumberAt(buf)).toBeUndefined();
  });

  it("refuses to encode oversized fields", () => {
    expect(() => encodeEvent(event({ streamId: "x".repeat(70_000) }))).toThrow(RangeError);
    expect(() => encodeEvent(event({ idKey: "short" }))).toThrow(RangeError);
  });
});
