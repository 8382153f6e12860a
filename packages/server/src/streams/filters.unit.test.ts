import { describe, expect, it } from "vitest";
import { eventFilter, type EventFilter } from "./filters.js";

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
  ])("%s", (_name, filter, event, keep) => {
    expect(eventFilter(filter)(event)).toBe(keep);
  });
});
