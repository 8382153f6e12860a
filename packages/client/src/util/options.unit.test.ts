import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../errors.js";
import { checkOptions, closestKey, editDistance, optionKeys } from "./options.js";

const KNOWN = optionKeys<{ direction?: string; fromPosition?: number; maxCount?: number }>({
  direction: true,
  fromPosition: true,
  maxCount: true,
});

describe("checkOptions", () => {
  it.each<[string, unknown]>([
    ["undefined", undefined],
    ["an empty object", {}],
    ["known keys", { direction: "forwards", fromPosition: 1 }],
    ["a known key set to undefined", { maxCount: undefined }],
    [
      "an object without a prototype",
      Object.assign(Object.create(null) as object, { maxCount: 1 }),
    ],
  ])("accepts %s", (_what, options) => {
    expect(() => checkOptions("readAll", options, KNOWN)).not.toThrow();
  });

  it.each<[string, unknown, Parameters<typeof checkOptions>[3], string]>([
    [
      "a misspelt key, with a suggestion",
      { fromPositon: 1 },
      {},
      'readAll: unknown option "fromPositon" (known: direction, fromPosition, maxCount); did you mean "fromPosition"?',
    ],
    [
      "a key in the wrong case, with a suggestion",
      { MaxCount: 1 },
      {},
      'readAll: unknown option "MaxCount" (known: direction, fromPosition, maxCount); did you mean "maxCount"?',
    ],
    [
      "an unrelated key, without a suggestion",
      { color: "red" },
      {},
      'readAll: unknown option "color" (known: direction, fromPosition, maxCount)',
    ],
    [
      "an unknown key set to undefined",
      { colour: undefined },
      {},
      'readAll: unknown option "colour" (known: direction, fromPosition, maxCount)',
    ],
    [
      "a nested key, named with its path",
      { diretcion: "forwards" },
      { path: "filter" },
      'readAll: unknown option "filter.diretcion" (known: direction, fromPosition, maxCount); did you mean "filter.direction"?',
    ],
    [
      "an unsupported key, with its reason",
      { regex: "x" },
      { path: "filter", unsupported: { regex: "not on this server" } },
      'readAll: option "filter.regex" is not supported yet: not on this server',
    ],
    [
      "a setting (another noun)",
      { maxcont: 1 },
      { noun: "setting" },
      'readAll: unknown setting "maxcont" (known: direction, fromPosition, maxCount); did you mean "maxCount"?',
    ],
    ["null", null, {}, "readAll: options must be an object, got null"],
    ["a string", "forwards", {}, 'readAll: options must be an object, got "forwards"'],
    ["a number", 5, {}, "readAll: options must be an object, got 5"],
    ["an array", [], {}, "readAll: options must be an object, got an array"],
    [
      "a nested non-object",
      true,
      { path: "filter" },
      'readAll: option "filter" must be an object, got true',
    ],
  ])("refuses %s", (_what, options, extra, message) => {
    let caught: unknown;
    try {
      checkOptions("readAll", options, KNOWN, extra);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as Error).message).toBe(message);
  });

  it("says so when the call takes no option at all", () => {
    expect(() => checkOptions("ack", { x: 1 }, [])).toThrow(
      'ack: unknown option "x" (known: none)',
    );
  });
});

describe("editDistance and closestKey", () => {
  it.each<[string, string, number]>([
    ["", "", 0],
    ["abc", "", 3],
    ["", "abc", 3],
    ["timeout", "timeoutMs", 2],
    ["fromPositon", "fromPosition", 1],
    ["fromPosiiton", "fromPosition", 1], // adjacent swap
    ["kitten", "sitting", 3],
  ])("editDistance(%j, %j) = %d", (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });

  it.each<[string, string | undefined]>([
    ["fromPositon", "fromPosition"],
    ["FROMPOSITION", "fromPosition"],
    ["maxcont", "maxCount"],
    ["dir", undefined],
    ["streamNameRegex", undefined],
    ["colour", undefined],
  ])("closestKey(%j) = %j", (key, expected) => {
    expect(closestKey(key, KNOWN)).toBe(expected);
  });
});
