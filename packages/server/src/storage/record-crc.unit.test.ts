import { crc32c } from "@node-rs/crc32";
import { describe, expect, it } from "vitest";
import { crc32cOf } from "./record.js";

describe("crc32cOf", () => {
  it("equals the native CRC-32C at every offset and length, both sides of the native cutover", () => {
    const buf = Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 131 + 17) & 255));
    for (let start = 0; start < 12; start++)
      for (let end = start; end <= buf.length; end += end < 600 ? 1 : 97)
        expect(crc32cOf(buf, start, end)).toBe(crc32c(buf.subarray(start, end)));
  });
});
