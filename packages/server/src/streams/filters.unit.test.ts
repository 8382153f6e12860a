import { describe, expect, it } from "vitest";
import { eventFilter, FilterError, type EventFilter } from "./filters.js";

describe("eventFilter", () => {
  const e = (streamId: string, type: string) => ({ streamId, type });
  it.each<[string, EventFilter, ReturnType<typeof e>, boolean]>([
    ["user stream, no filter", {}, e("orders-1", "Placed"), true],
    ["system stream left out", {}, e("$persistent-x", "Acked"), false],
    ["metadata stream left out", {}, e("$$orders-1", "$metadata"), false],
    ["system stream asked for", { includeSystem: true }, e("$$orders-1", "$metadata"), true],
    ["stream prefix match", { streamNamePrefixes: ["ord", "inv"] }, e("invoices", "X"), true],
    ["stream prefix miss", { streamNamePrefixes: ["ord"] }, e("invoices", "X"), false],
    ["type prefix match", { eventTypePrefixes: ["Pla"] }, e("orders-1", "Placed"), true],
    ["type prefix miss", { eventTypePrefixes: ["Pla"] }, e("orders-1", "Shipped"), false],
    [
      "both must match",
      { streamNamePrefixes: ["ord"], eventTypePrefixes: ["Sh"] },
      e("orders-1", "Placed"),
      false,
    ],
    ["a $ prefix still needs includeSystem", { streamNamePrefixes: ["$"] }, e("$x", "X"), false],
    [
      "empty lists keep everything",
      { streamNamePrefixes: [], eventTypePrefixes: [] },
      e("a", "b"),
      true,
    ],
    ["stream regex match", { streamNameRegex: "^order-\\d+$" }, e("order-17", "X"), true],
    ["stream regex miss", { streamNameRegex: "^order-\\d+$" }, e("order-x", "X"), false],
    ["stream regex matches anywhere", { streamNameRegex: "der" }, e("order-1", "X"), true],
    ["stream regex, system left out", { streamNameRegex: "^\\$" }, e("$x", "X"), false],
    [
      "stream regex, system asked for",
      { streamNameRegex: "^\\$", includeSystem: true },
      e("$x", "X"),
      true,
    ],
    ["type regex match", { eventTypeRegex: "^(Placed|Shipped)$" }, e("o", "Shipped"), true],
    ["type regex miss", { eventTypeRegex: "^(Placed|Shipped)$" }, e("o", "Placed2"), false],
    ["unicode pattern", { streamNameRegex: "^caf\\u{e9}-" }, e("caf\u00e9-1", "X"), true],
    [
      "stream regex and type prefix both hold",
      { streamNameRegex: "^o", eventTypePrefixes: ["P"] },
      e("orders-1", "Shipped"),
      false,
    ],
    [
      "stream prefix and type regex both hold",
      { streamNamePrefixes: ["o"], eventTypeRegex: "^S" },
      e("orders-1", "Shipped"),
      true,
    ],
    ["empty regex is no condition", { streamNameRegex: "" }, e("a", "b"), true],
  ])("%s", (_name, filter, event, keep) => {
    expect(eventFilter(filter)(event)).toBe(keep);
  });

  it("keeps no state between events (the same event twice matches twice)", () => {
    const keep = eventFilter({ streamNameRegex: "o" });
    expect([keep(e("o", "T")), keep(e("o", "T"))]).toEqual([true, true]);
  });

  it.each<[string, EventFilter, RegExp]>([
    [
      "stream prefixes with a stream regex",
      { streamNamePrefixes: ["o"], streamNameRegex: "^o" },
      /streamNamePrefix or streamNameRegex, not both/,
    ],
    [
      "type prefixes with a type regex",
      { eventTypePrefixes: ["P"], eventTypeRegex: "^P" },
      /eventTypePrefix or eventTypeRegex, not both/,
    ],
    [
      "a pattern that does not compile",
      { streamNameRegex: "(" },
      /^streamNameRegex is not a valid regular expression: /,
    ],
    [
      "an escape the u flag refuses",
      { eventTypeRegex: "\\-" },
      /^eventTypeRegex is not a valid regular expression: /,
    ],
    [
      "a pattern too long",
      { streamNameRegex: "a".repeat(1_001) },
      /^streamNameRegex is 1001 characters long; at most 1000 are accepted$/,
    ],
    [
      "lookahead in a pattern with alternatives",
      { streamNameRegex: "(?=order)o|i" },
      /runs on a linear-time engine .*which cannot run it: invalid or unsupported Perl syntax/,
    ],
    [
      "a backreference in a pattern with two quantifiers",
      { eventTypeRegex: "(a+)b*\\1" },
      /eventTypeRegex runs on a linear-time engine/,
    ],
    [
      "too many prefixes",
      { streamNamePrefixes: Array.from({ length: 1_001 }, (_, i) => `p${i}`) },
      /at most 1000 prefixes/,
    ],
  ])("refuses %s", (_name, filter, message) => {
    expect(() => eventFilter(filter)).toThrow(FilterError);
    expect(() => eventFilter(filter)).toThrow(message);
  });

  it("accepts a pattern of exactly the longest length", () => {
    expect(eventFilter({ streamNameRegex: "a".repeat(1_000) })(e("a".repeat(1_000), "T"))).toBe(
      true,
    );
  });
});
