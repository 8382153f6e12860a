import { describe, expect, it } from "vitest";
import { createMemoryStore, TruncatedError } from "./index.js";
import { isReplicatedLog, isTruncatedError } from "./replicated-log.js";

describe("ReplicatedLog", () => {
  it("is what a LogStore is, and what a store missing any of its members is not", () => {
    const store = createMemoryStore({ autoCommit: false });
    expect(isReplicatedLog(store)).toBe(true);
    const without = (name: string): object =>
      new Proxy(store, {
        get: (target, key): unknown =>
          key === name ? undefined : Reflect.get(target, key, target),
      });
    for (const name of ["readRaw", "endPosition", "setSyncOffLoop", "stats"]) {
      expect(isReplicatedLog(without(name)), name).toBe(false);
    }
    expect(isReplicatedLog({ open: () => undefined })).toBe(false);
  });

  it("recognises the rejection of a write that truncate cut off", () => {
    expect(isTruncatedError(new TruncatedError("the log was truncated to 0"))).toBe(true);
    expect(isTruncatedError(new Error("the log was truncated to 0"))).toBe(false);
    expect(isTruncatedError("TruncatedError")).toBe(false);
  });
});
