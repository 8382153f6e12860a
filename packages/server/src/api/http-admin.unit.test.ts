import { describe, expect, it } from "vitest";
import { bucketQuantile, isAdminPath } from "./http-admin.js";

describe("bucketQuantile", () => {
  it("interpolates within a bucket of a cumulative histogram", () => {
    expect(bucketQuantile([1, 2, 5], [4, 8, 10], 0.5)).toBeCloseTo(1.25);
    expect(bucketQuantile([1, 2, 5], [4, 8, 10], 0.9)).toBeCloseTo(3.5);
  });

  it("is null for an empty histogram", () => {
    expect(bucketQuantile([1, 2], [0, 0], 0.5)).toBeNull();
  });
});

describe("isAdminPath", () => {
  it("owns the admin endpoints and $all, not other streams", () => {
    for (const p of [
      "/streams",
      "/stats",
      "/subscriptions",
      "/subscriptions/a/b",
      "/streams/%24all",
    ])
      expect(isAdminPath(p)).toBe(true);
    for (const p of ["/streams/orders", "/streams/", "/info", "/statsx", "/subscriptionsx"])
      expect(isAdminPath(p)).toBe(false);
  });
});
