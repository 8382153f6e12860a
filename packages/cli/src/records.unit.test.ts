import type { ResolvedEvent } from "@chorus/client";
import { describe, expect, it } from "vitest";
import { fromRecord, jsonLine, metadataForCopy, table, toRecord, toTextLine } from "./records.js";

const ID = "0b0c9f2a-6a8e-4c1e-9d59-2f5d1f1f0a01";

function resolved(over: Partial<ResolvedEvent["event"]>): ResolvedEvent {
  return {
    event: {
      streamId: "s-1",
      revision: 7n,
      position: 2n ** 60n,
      id: ID,
      type: "T",
      isJson: true,
      data: { a: 1 },
      metadata: undefined,
      created: new Date("2026-01-02T03:04:05.678Z"),
      ...over,
    },
  };
}

describe("toRecord / fromRecord", () => {
  it("writes numbers as decimal strings and JSON bodies as JSON", () => {
    expect(toRecord(resolved({ metadata: { m: true } }))).toEqual({
      eventId: ID,
      eventType: "T",
      streamId: "s-1",
      revision: "7",
      position: "1152921504606846976",
      isJson: true,
      data: { a: 1 },
      metadata: { m: true },
      created: "2026-01-02T03:04:05.678Z",
    });
  });

  it("keeps a JSON event's stored text exactly, on one line, and reads it back exactly", () => {
    const text = '{"id": 1234567890123456789,\n "p": 1.10}';
    const bytes = new TextEncoder().encode(text);
    const line = jsonLine(toRecord(resolved({ data: bytes, metadata: new Uint8Array([0xff]) })));
    expect(line).not.toContain("\n");
    expect(line).toContain('"data":{"id": 1234567890123456789,  "p": 1.10}');
    // bytes that are not JSON, though marked so, stay base64
    expect(line).toContain('"metadataBase64":"/w=="');
    const back = fromRecord(JSON.parse(line), line);
    expect(new TextDecoder().decode(back.event.data)).toBe(
      '{"id": 1234567890123456789,  "p": 1.10}',
    );
  });

  it.each([
    ["a JSON event", { isJson: true, data: { a: [1, "x"] }, metadata: { m: 1 } }],
    ["JSON null data", { isJson: true, data: null, metadata: undefined }],
    [
      "a binary event",
      { isJson: false, data: new Uint8Array([0, 255, 7]), metadata: new Uint8Array([1]) },
    ],
    ["empty binary data", { isJson: false, data: new Uint8Array(0), metadata: undefined }],
    [
      "a JSON event whose bytes are not JSON",
      { isJson: true, data: new Uint8Array([0xc3]), metadata: undefined },
    ],
  ])("round-trips %s through a JSON line", (_name, body) => {
    const line = jsonLine(toRecord(resolved(body)));
    const back = fromRecord(JSON.parse(line));
    expect(back.streamId).toBe("s-1");
    expect(back.event.id).toBe(ID);
    expect(back.event.type).toBe("T");
    expect(back.event.isJson).toBe(body.isJson);
    const bytes = (v: unknown) =>
      v === undefined
        ? undefined
        : v instanceof Uint8Array
          ? [...v]
          : [...Buffer.from(JSON.stringify(v))];
    expect([...back.event.data]).toEqual(bytes(body.data) ?? []);
    expect(back.event.metadata && [...back.event.metadata]).toEqual(bytes(body.metadata));
  });

  it.each([
    ["not an object", [1], /JSON object/],
    ["a bad id", { eventId: "x", eventType: "T", streamId: "s" }, /eventId/],
    ["no type", { eventId: ID, eventType: "", streamId: "s" }, /eventType/],
    ["no stream", { eventId: ID, eventType: "T" }, /streamId/],
    [
      "both bodies",
      { eventId: ID, eventType: "T", streamId: "s", data: 1, dataBase64: "AA==" },
      /exclude/,
    ],
    ["bad base64", { eventId: ID, eventType: "T", streamId: "s", dataBase64: "**" }, /base64/],
    ["bad isJson", { eventId: ID, eventType: "T", streamId: "s", isJson: "yes" }, /isJson/],
  ])("refuses %s, naming the field", (_name, value, message) => {
    expect(() => fromRecord(value)).toThrow(message);
  });
});

describe("text output", () => {
  it("prints stream@revision, type and data", () => {
    expect(toTextLine(resolved({}))).toBe('s-1@7  T  {"a":1}');
    expect(toTextLine(resolved({ isJson: false, data: new Uint8Array(3) }))).toBe(
      "s-1@7  T  <3 bytes>",
    );
  });

  it("aligns table columns", () => {
    expect(
      table(
        ["A", "BB"],
        [
          ["xyz", "1"],
          ["q", "22"],
        ],
      ),
    ).toEqual(["A    BB", "xyz  1", "q    22"]);
  });
});

describe("metadataForCopy", () => {
  it.each([
    // The keys that name the source's revisions go; every other value stays as written.
    [
      '{"maxCount":3,"truncateBefore":7,"owner":1234567890123456789}',
      '{"maxCount":3,"owner":1234567890123456789}',
    ],
    ['{"truncateBefore":2,"$softDeleted":true}', "{}"],
    ['{ "acl" : {"r":["a"]}, "truncateBefore" : 1 , "x":1.10 }', '{"acl":{"r":["a"]},"x":1.10}'],
    // Nothing to take out, or not an object: the text as it is.
    ['{ "maxCount" : 3 }', '{ "maxCount" : 3 }'],
    ["[1,2]", "[1,2]"],
    ["not json", "not json"],
  ])("%s -> %s", (text, copied) => {
    expect(metadataForCopy(text)).toBe(copied);
  });
});
