import { describe, expect, it } from "vitest";
import type { ExpectedVersion, NewEvent, ReadAllOptions, ReadStreamOptions } from "./types.js";
import {
  validateExpectedVersion,
  validateNewEvents,
  validateReadAllOptions,
  validateReadStreamOptions,
  validateStreamId,
} from "./validate.js";

const ID = "5f0b5a52-4f1a-4d0e-9a3f-1d2c3b4a5e6f";
const event = (over: Partial<Record<keyof NewEvent, unknown>> = {}): NewEvent =>
  ({
    id: ID,
    type: "Placed",
    isJson: true,
    data: new Uint8Array(1),
    metadata: new Uint8Array(0),
    ...over,
  }) as NewEvent;

/** The message of the INVALID_ARGUMENT `f` throws (and that it names `streamId`), or "ok". */
function refusal(f: () => void, streamId?: string): string {
  try {
    f();
    return "ok";
  } catch (err) {
    expect(err).toMatchObject({ name: "StoreError", code: "INVALID_ARGUMENT", streamId });
    return (err as Error).message;
  }
}

describe("validateStreamId", () => {
  it.each<[unknown, string]>([
    ["orders-1", "ok"],
    ["$$orders-1", "ok"],
    ["", "stream name must not be empty"],
    [42, "stream name must be a string"],
    ["a\u0000b", "stream name must not contain control characters"],
    ["x".repeat(1025), "stream name is longer than 1024 bytes"],
    ["$all", "$all is not a stream; use readAll / subscribeToAll"],
    ["$$", "$$ is not a valid metadata stream name"],
  ])("%j", (id, message) => {
    expect(refusal(() => validateStreamId(id as string), id as string)).toBe(message);
  });
});

describe("validateExpectedVersion", () => {
  it.each<[unknown, string]>([
    [{ kind: "any" }, "ok"],
    [{ kind: "no_stream" }, "ok"],
    [{ kind: "stream_exists" }, "ok"],
    [{ kind: "exact", revision: 0 }, "ok"],
    [{ kind: "exact", revision: -1 }, "expected revision must be an integer >= 0"],
    [{ kind: "exact", revision: 1.5 }, "expected revision must be an integer >= 0"],
    [{ kind: "exact", revision: 2 ** 53 }, "expected revision must be an integer >= 0"],
    [{ kind: "exact" }, "expected revision must be an integer >= 0"],
    [{ kind: "latest" }, "unknown expected version"],
    [undefined, "unknown expected version"],
  ])("%j", (expected, message) => {
    expect(refusal(() => validateExpectedVersion(expected as ExpectedVersion, "s"), "s")).toBe(
      message,
    );
  });
});

describe("validateNewEvents", () => {
  it.each<[string, unknown, string]>([
    ["no events", [], "ok"],
    ["valid events", [event(), event()], "ok"],
    ["not an array", "x", "events must be an array"],
    ["an id that is no UUID", [event({ id: "nope" })], "event id nope is not a UUID"],
    ["a missing id", [event({ id: undefined })], "event id undefined is not a UUID"],
    ["an empty type", [event({ type: "" })], "event type must not be empty"],
    ["a type that is no string", [event({ type: 7 })], "event type must be a string"],
    ["a long type", [event({ type: "t".repeat(1025) })], "event type is longer than 1024 bytes"],
    ["data as a string", [event({ data: "x" })], "event data and metadata must be byte arrays"],
    [
      "metadata missing",
      [event({ metadata: undefined })],
      "event data and metadata must be byte arrays",
    ],
    // The first problem, event by event.
    [
      "the first event's problem first",
      [event({ type: "" }), event({ id: "nope" })],
      "event type must not be empty",
    ],
    [
      "an event's id before its type",
      [event({ id: "nope", type: "" })],
      "event id nope is not a UUID",
    ],
  ])("%s", (_name, events, message) => {
    expect(refusal(() => validateNewEvents(events as NewEvent[], "s"), "s")).toBe(message);
  });
});

describe("validateReadStreamOptions", () => {
  const o = (over: Partial<Record<keyof ReadStreamOptions, unknown>>): ReadStreamOptions =>
    ({ direction: "forwards", fromRevision: 0, maxCount: 10, ...over }) as ReadStreamOptions;
  it.each<[string, ReadStreamOptions, string]>([
    ["valid", o({}), "ok"],
    ["from the end, backwards", o({ fromRevision: "end", direction: "backwards" }), "ok"],
    ["maxCount 0", o({ maxCount: 0 }), "maxCount must be a positive integer"],
    ["maxCount a fraction", o({ maxCount: 1.5 }), "maxCount must be a positive integer"],
    [
      "fromRevision negative",
      o({ fromRevision: -1 }),
      'fromRevision must be an integer >= 0 or "end"',
    ],
    [
      "fromRevision a word",
      o({ fromRevision: "start" }),
      'fromRevision must be an integer >= 0 or "end"',
    ],
    ["direction unknown", o({ direction: "up" }), "direction must be forwards or backwards"],
    [
      "maxCount before direction",
      o({ maxCount: 0, direction: "up" }),
      "maxCount must be a positive integer",
    ],
  ])("%s", (_name, options, message) => {
    expect(refusal(() => validateReadStreamOptions(options, "s"), "s")).toBe(message);
  });
});

describe("validateReadAllOptions", () => {
  const o = (over: Partial<Record<keyof ReadAllOptions, unknown>>): ReadAllOptions =>
    ({ direction: "forwards", fromPosition: 0, maxCount: 10, ...over }) as ReadAllOptions;
  const between = 'fromPosition must be an integer between 0 and the commit position 500, or "end"';
  it.each<[string, ReadAllOptions, string]>([
    ["valid", o({}), "ok"],
    ["at the commit position", o({ fromPosition: 500 }), "ok"],
    ["from the end", o({ fromPosition: "end", direction: "backwards" }), "ok"],
    ["maxScan 1", o({ maxScan: 1 }), "ok"],
    ["maxScan null counts as absent", o({ maxScan: null }), "ok"],
    ["maxCount 0", o({ maxCount: 0 }), "maxCount must be a positive integer"],
    ["maxScan 0", o({ maxScan: 0 }), "maxScan must be >= 1"],
    ["maxScan NaN", o({ maxScan: NaN }), "maxScan must be >= 1"],
    ["beyond the commit position", o({ fromPosition: 501 }), between],
    ["negative", o({ fromPosition: -1 }), between],
    ["direction unknown", o({ direction: "up" }), "direction must be forwards or backwards"],
    ["position before direction", o({ fromPosition: -1, direction: "up" }), between],
  ])("%s", (_name, options, message) => {
    expect(refusal(() => validateReadAllOptions(options, 500))).toBe(message);
  });
});
