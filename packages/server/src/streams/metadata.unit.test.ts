import { describe, expect, it } from "vitest";
import {
  metadataInt,
  metadataOfAppend,
  metadataTarget,
  parseMetadata,
  targetOfMetadataStream,
} from "./metadata.js";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const json = (v: unknown): Uint8Array => bytes(JSON.stringify(v));

describe("parseMetadata", () => {
  it.each<[string, Uint8Array, unknown]>([
    ["an object", json({ maxCount: 3 }), { maxCount: 3 }],
    ["an empty object", json({}), {}],
    ["an array", json([1]), null],
    ["null", json(null), null],
    ["a number", json(5), null],
    ["a string", json("x"), null],
    ["not JSON", bytes("{nope"), null],
    ["nothing", new Uint8Array(0), null],
  ])("%s", (_name, data, want) => {
    expect(parseMetadata(data)).toEqual(want);
  });

  it("reads a view into a larger buffer", () => {
    const whole = bytes('xx{"a":1}yy');
    expect(parseMetadata(whole.subarray(2, 9))).toEqual({ a: 1 });
  });
});

describe("metadata streams", () => {
  it.each<[string, string, string | undefined, string | undefined]>([
    ["$$orders", "$metadata", "orders", "orders"],
    ["$$orders", "Other", "orders", undefined],
    ["$$$$orders", "$metadata", "$$orders", "$$orders"],
    ["orders", "$metadata", undefined, undefined],
    ["$orders", "$metadata", undefined, undefined],
  ])("%s / %s", (streamId, type, target, setsMetadataOf) => {
    expect(targetOfMetadataStream(streamId)).toBe(target);
    expect(metadataTarget(streamId, type)).toBe(setsMetadataOf);
  });
});

describe("metadataOfAppend", () => {
  const ev = (type: string, data: Uint8Array) => ({ type, data });
  it("is the last $metadata event's", () => {
    expect(
      metadataOfAppend("$$s", [
        ev("$metadata", json({ maxCount: 1 })),
        ev("Note", bytes("not json")),
        ev("$metadata", json({ maxCount: 2 })),
      ]),
    ).toEqual({ maxCount: 2 });
  });

  it("is undefined without a $metadata event", () => {
    expect(metadataOfAppend("$$s", [ev("Note", bytes("x"))])).toBeUndefined();
    expect(metadataOfAppend("$$s", [])).toBeUndefined();
  });

  it("refuses a $metadata event that is not a JSON object", () => {
    expect(() => metadataOfAppend("$$s", [ev("$metadata", json([1]))])).toThrow(
      expect.objectContaining({
        code: "INVALID_ARGUMENT",
        message: "stream metadata must be a JSON object",
        streamId: "$$s",
      }),
    );
  });
});

describe("metadataInt", () => {
  it.each<[unknown, number, number | undefined]>([
    [3, 1, 3],
    [0, 0, 0],
    [0, 1, undefined],
    [-1, 0, undefined],
    [1.5, 0, undefined],
    ["3", 0, undefined],
    [2 ** 53, 0, undefined],
    [undefined, 0, undefined],
  ])("%j (min %i)", (value, min, want) => {
    expect(metadataInt(value, min)).toBe(want);
  });
});
