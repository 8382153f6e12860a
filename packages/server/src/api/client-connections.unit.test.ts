import { describe, expect, it } from "vitest";
import {
  effectiveConnectionLimit,
  FILE_DESCRIPTOR_RESERVE,
  openFilesLimit,
  REFUSAL_MARGIN,
} from "./client-connections.js";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe("openFilesLimit", () => {
  it("reads the soft limit of open files", () => {
    expect(openFilesLimit(LIMITS)).toBe(1024);
  });
  it("is unknown when unlimited or missing", () => {
    expect(openFilesLimit(LIMITS.replace("1024 ", "unlimited "))).toBeUndefined();
    expect(openFilesLimit("Max cpu time unlimited unlimited seconds\n")).toBeUndefined();
  });
  it("reads this process's own limit on Linux", () => {
    if (process.platform === "linux") expect(openFilesLimit()).toBeGreaterThan(0);
  });
});

describe("effectiveConnectionLimit", () => {
  it("keeps the configured limit when the open-files limit leaves room for it", () => {
    expect(effectiveConnectionLimit(10_000, 20_000)).toEqual({ limit: 10_000, lowered: false });
    expect(effectiveConnectionLimit(10_000, undefined)).toEqual({ limit: 10_000, lowered: false });
  });
  it("lowers it to what the open-files limit leaves after the node's own and the margin", () => {
    expect(effectiveConnectionLimit(10_000, 1024)).toEqual({
      limit: 1024 - FILE_DESCRIPTOR_RESERVE - REFUSAL_MARGIN,
      lowered: true,
    });
    expect(effectiveConnectionLimit(10, 100).limit).toBe(1);
  });
});
