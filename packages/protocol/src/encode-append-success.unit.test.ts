import { describe, expect, it } from "vitest";
import { encodeAppendSuccess, encodeFrame } from "./frame.js";

describe("encodeAppendSuccess", () => {
  it("writes the bytes encodeFrame writes for the same reply", () => {
    const numbers = [
      0,
      1,
      127,
      128,
      300,
      16_383,
      16_384,
      2 ** 31,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 53 - 1,
    ];
    for (const correlationId of [1, 127, 128, 2 ** 32 + 5])
      for (const nextExpectedVersion of numbers)
        for (const position of numbers) {
          const expected = encodeFrame({
            correlationId,
            appendResult: { success: { nextExpectedVersion, position } },
          });
          expect(
            Buffer.from(encodeAppendSuccess(correlationId, nextExpectedVersion, position)),
          ).toEqual(Buffer.from(expected));
        }
  });
});
