import { describe, expect, it } from "vitest";
import { boolArray, byteaArray, intArray, textArray, uuidArray } from "./arrays.js";

describe("PostgreSQL array literals", () => {
  it("integers, UUIDs and booleans go unquoted", () => {
    expect(intArray([])).toBe("{}");
    expect(intArray([0, -1, 2 ** 53 - 1])).toBe("{0,-1,9007199254740991}");
    expect(
      uuidArray(["0b7e6f3c-2c1a-4d5e-9f00-1234567890ab", "00000000-0000-0000-0000-000000000000"]),
    ).toBe("{0b7e6f3c-2c1a-4d5e-9f00-1234567890ab,00000000-0000-0000-0000-000000000000}");
    expect(boolArray([true, false, true])).toBe("{t,f,t}");
    expect(boolArray([])).toBe("{}");
  });

  it("text is always quoted, with backslashes and double quotes escaped", () => {
    expect(textArray([])).toBe("{}");
    expect(textArray(["", "NULL", "a,b", "{x}", " sp ", "é🙂"])).toBe(
      '{"","NULL","a,b","{x}"," sp ","é🙂"}',
    );
    expect(textArray(['say "hi"', "back\\slash", '\\"'])).toBe(
      '{"say \\"hi\\"","back\\\\slash","\\\\\\""}',
    );
  });

  it("bytea is hex input with its backslash escaped, from any view of a buffer", () => {
    const whole = Buffer.from([0, 1, 0xfe, 0xff]);
    const view = new Uint8Array(whole.buffer, whole.byteOffset + 1, 2);
    expect(byteaArray([whole, view, new Uint8Array(0)])).toBe(
      '{"\\\\x0001feff","\\\\x01fe","\\\\x"}',
    );
  });
});
