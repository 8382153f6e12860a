import { describe, expect, it } from "vitest";
import { chorus } from "./gen/chorus.js";
import { wireBigInt, wireNumber } from "./wire-int.js";

/** uint64 positions as the generated code decodes them off the wire (text: beyond 2^53). */
function decoded(positions: Array<number | string>): chorus.PersistentAck["positions"] {
  // The writer takes decimal text for a 64-bit field too; the types say number or Long.
  const bytes = chorus.PersistentAck.encode({ positions: positions as number[] }).finish();
  return chorus.PersistentAck.decode(bytes).positions;
}

describe("wireNumber / wireBigInt", () => {
  it("read decoded 64-bit fields, numbers and absent fields alike", () => {
    const [small, large, safe] = decoded([42, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]);
    expect([small, large, safe].map(wireNumber)).toEqual([
      42,
      2 ** 40 + 3,
      Number.MAX_SAFE_INTEGER,
    ]);
    expect([small, large].map(wireBigInt)).toEqual([42n, 2n ** 40n + 3n]);
    expect(wireNumber(7)).toBe(7);
    expect(wireNumber(undefined)).toBe(0);
    expect(wireNumber(null)).toBe(0);
    expect(wireBigInt(7)).toBe(7n);
    expect(wireBigInt(undefined)).toBe(0n);
  });

  it("keep a bigint exact beyond 2^53", () => {
    const [max, odd] = decoded(["18446744073709551615", "9007199254740993"]);
    expect(wireBigInt(max)).toBe(18446744073709551615n);
    expect(wireBigInt(odd)).toBe(9007199254740993n);
  });
});
