import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeEvent, uuidToKey } from "../storage/record.js";
import { checkAppendSize, checkEvents, storedEventBytes } from "./convert.js";
import { RequestError } from "./errors.js";

const event = (type: string, data: number, metadata: number) => ({
  id: randomUUID(),
  type,
  isJson: true,
  data: new Uint8Array(data),
  metadata: new Uint8Array(metadata),
});

describe("storedEventBytes", () => {
  it.each([
    ["s", "T", 0, 0],
    ["order-1", "OrderPlaced", 100, 20],
    ["ström-ü", "Типы", 70_000, 3],
    ["x".repeat(200), "Small", 9, 0],
  ])("is the size of the log record of %s / %s", (streamId, type, data, metadata) => {
    const e = event(type, data, metadata);
    const record = encodeEvent({
      batchEnd: true,
      streamId,
      revision: 12,
      prevPosition: 1234,
      idKey: uuidToKey(e.id),
      type,
      isJson: true,
      createdMs: Date.now(),
      data: e.data,
      metadata: e.metadata,
    });
    expect(storedEventBytes(streamId, e)).toBe(record.length);
  });
});

describe("checkAppendSize", () => {
  it("passes an append up to the limit and refuses one byte more, naming the sizes", () => {
    const events = [event("T", 1000, 0), event("T", 1000, 0)];
    const bytes = events.reduce((n, e) => n + storedEventBytes("s", e), 0);
    expect(() => checkAppendSize(events, "s", bytes)).not.toThrow();
    let caught: unknown;
    try {
      checkAppendSize(events, "s", bytes - 1);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RequestError);
    expect((caught as Error).message).toBe(
      `append of 2 events (${bytes} bytes as stored) exceeds the largest append, ${bytes - 1} bytes (--max-append-bytes); split it into smaller appends`,
    );
  });
});

describe("checkEvents and stream metadata", () => {
  const meta = (value: unknown) => ({
    id: randomUUID(),
    type: "$metadata",
    isJson: true,
    data: Buffer.from(JSON.stringify(value)),
    metadata: new Uint8Array(0),
  });
  it("refuses acl and $acl in metadata, and only there", () => {
    expect(() => checkEvents([meta({ acl: {} })], "$$s")).toThrow(
      /stream ACLs are not supported yet/,
    );
    expect(() => checkEvents([meta({ $acl: null })], "$$s")).toThrow(
      /stream ACLs are not supported yet/,
    );
    expect(() => checkEvents([meta({ maxCount: 3 })], "$$s")).not.toThrow();
    // A user event that happens to carry the key is not metadata.
    expect(() => checkEvents([meta({ acl: {} })], "s")).not.toThrow();
  });
});
