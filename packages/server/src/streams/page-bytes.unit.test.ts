import { describe, expect, it } from "vitest";
import { eventBytes, PageBytes } from "./page-bytes.js";

const event = (dataBytes: number) => ({
  data: new Uint8Array(dataBytes),
  metadata: new Uint8Array(4),
  streamId: "s-1",
  type: "T",
});

describe("PageBytes", () => {
  it("counts data, metadata and names, and a fixed part", () => {
    expect(eventBytes(event(10))).toBe(10 + 4 + 3 + 1 + 96);
  });

  it("takes events while the page stays within its bytes, and nothing after the first that does not fit", () => {
    const size = eventBytes(event(100));
    const page = new PageBytes(3 * size);
    expect([1, 2, 3, 4].map(() => page.fits(event(100)))).toEqual([true, true, true, false]);
    // The page is full: even a smaller event would take it past its bytes.
    expect(page.fits(event(0))).toBe(false);
  });

  it("always takes the first event, however large", () => {
    const page = new PageBytes(10);
    expect(page.fits(event(1_000_000))).toBe(true);
    expect(page.fits(event(0))).toBe(false);
  });
});
