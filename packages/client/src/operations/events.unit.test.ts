import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../errors.js";
import {
  binaryEvent,
  checkEventData,
  eventDataToWire,
  jsonEvent,
  recordedEventFromWire,
} from "./events.js";
import { expectedVersionToWire, normalizeExpectedVersion } from "./expected-version.js";

const ID = "3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f60";

describe("jsonEvent / binaryEvent", () => {
  it("serializes JSON once and generates a uuid", () => {
    const e = jsonEvent({ type: "OrderPlaced", data: { id: 1 }, metadata: { by: "me" } });
    expect(e.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new TextDecoder().decode(e.data)).toBe('{"id":1}');
    expect(new TextDecoder().decode(e.metadata)).toBe('{"by":"me"}');
    expect(e.isJson).toBe(true);
    expect(Object.isFrozen(e)).toBe(true);
    expect(jsonEvent({ type: "x", data: 1 }).id).not.toBe(jsonEvent({ type: "x", data: 1 }).id);
  });

  it("keeps a given id", () => {
    expect(jsonEvent({ type: "x", data: null, id: ID }).id).toBe(ID);
    expect(binaryEvent({ type: "x", data: new Uint8Array([1]), id: ID }).id).toBe(ID);
  });

  it.each([
    ["an empty type", () => jsonEvent({ type: "", data: 1 }), /event type must not be empty/],
    ["a bad id", () => jsonEvent({ type: "x", data: 1, id: "nope" }), /event id must be a UUID/],
    ["a bigint", () => jsonEvent({ type: "x", data: { n: 1n } }), /cannot be serialized as JSON/],
    ["undefined data", () => jsonEvent({ type: "x", data: undefined }), /cannot be serialized/],
    ["non-bytes binary", () => binaryEvent({ type: "x", data: "s" as never }), /Uint8Array/],
    ["a plain object appended", () => checkEventData({ type: "x", data: {} }, 0), /use jsonEvent/],
  ])("rejects %s", (_n, fn, message) => {
    expect(fn).toThrow(InvalidArgumentError);
    expect(fn).toThrow(message);
  });

  it("copies binary data (later changes by the caller do not leak into retries)", () => {
    const data = new Uint8Array([1, 2]);
    const e = binaryEvent({ type: "Blob", data });
    data[0] = 9;
    expect(Array.from(eventDataToWire(e).data as Uint8Array)).toEqual([1, 2]);
  });
});

describe("recordedEventFromWire", () => {
  const base = {
    streamId: "s",
    revision: 4,
    position: 99,
    id: ID,
    type: "T",
    createdMs: 1_700_000_000_000,
  };
  it("parses JSON data and metadata", () => {
    const e = recordedEventFromWire({
      ...base,
      isJson: true,
      data: new TextEncoder().encode('{"a":1}'),
      metadata: new Uint8Array(),
    });
    expect(e).toMatchObject({
      streamId: "s",
      revision: 4n,
      position: 99n,
      isJson: true,
      data: { a: 1 },
      metadata: undefined,
    });
    expect(e.created.getTime()).toBe(1_700_000_000_000);
  });
  it("hands bytes over for binary events", () => {
    const e = recordedEventFromWire({
      ...base,
      isJson: false,
      data: new Uint8Array([1, 2]),
      metadata: new Uint8Array([3]),
    });
    expect(e.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(e.data as Uint8Array)).toEqual([1, 2]);
    expect(Array.from(e.metadata as Uint8Array)).toEqual([3]);
  });
  it("keeps the bytes of a JSON event that is not valid JSON", () => {
    const e = recordedEventFromWire({
      ...base,
      isJson: true,
      data: new TextEncoder().encode("{oops"),
    });
    expect(e.data).toBeInstanceOf(Uint8Array);
  });
  it("keeps the bytes of a JSON event that is not valid UTF-8, even if it would parse", () => {
    // '"\xff"': a JSON string once the invalid byte is replaced; a fatal decoder refuses it.
    const bytes = new Uint8Array([0x22, 0xff, 0x22]);
    const e = recordedEventFromWire({ ...base, isJson: true, data: bytes });
    expect(Array.from(e.data as Uint8Array)).toEqual([0x22, 0xff, 0x22]);
  });
  it("parses JSON behind a byte order mark, from a Buffer or a view into a larger array", () => {
    const json = [0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"a":"é"}')];
    expect(recordedEventFromWire({ ...base, isJson: true, data: Buffer.from(json) }).data).toEqual({
      a: "é",
    });
    const view = new Uint8Array([0, ...json, 0]).subarray(1, json.length + 1);
    expect(recordedEventFromWire({ ...base, isJson: true, data: view }).data).toEqual({ a: "é" });
  });
});

describe("expected version", () => {
  it.each([
    ["any", "any", { kind: 0 }],
    ["no_stream", "no_stream", { kind: 1 }],
    ["stream_exists", "stream_exists", { kind: 2 }],
    [5, 5n, { kind: 3, revision: 5 }],
    [0n, 0n, { kind: 3, revision: 0 }],
  ])("%s", (input, normalized, wire) => {
    const n = normalizeExpectedVersion(input);
    expect(n).toBe(normalized);
    expect(expectedVersionToWire(n)).toEqual(wire);
  });
  it.each([-1, 1.5, -1n, 2n ** 60n, "latest", null])("rejects %s", (input) => {
    expect(() => normalizeExpectedVersion(input)).toThrow(InvalidArgumentError);
  });
});
