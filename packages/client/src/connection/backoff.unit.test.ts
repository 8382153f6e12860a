import { describe, expect, it } from "vitest";
import { backoffDelayMs } from "./backoff.js";

describe("backoffDelayMs", () => {
  it.each([
    // attempt, base, max, random, expected
    [1, 100, 5000, 0, 50],
    [1, 100, 5000, 1, 100],
    [2, 100, 5000, 0, 100],
    [3, 100, 5000, 1, 400],
    [10, 100, 5000, 1, 5000],
    [10, 100, 5000, 0, 2500],
    [100, 100, 5000, 0.5, 3750],
    [0, 100, 5000, 1, 100],
    [5, 0, 5000, 1, 0],
  ])("attempt %i base %i max %i random %f -> %i", (attempt, base, max, random, expected) => {
    expect(backoffDelayMs(attempt, base, max, () => random)).toBe(expected);
  });
});
