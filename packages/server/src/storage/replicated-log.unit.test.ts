import { describe, expect, it } from "vitest";
import { createMemoryStore, TruncatedError } from "./index.js";
import { events, okResult } from "./test-helpers.js";
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

  it("appendRaw checks CRCs unless the caller verified them; framing and payloads always", async () => {
    const leader = createMemoryStore();
    const follower = createMemoryStore({ autoCommit: false });
    await leader.open();
    await follower.open();
    try {
      okResult(await leader.append("a", { kind: "any" }, events(2)));
      const { bytes } = leader.readRaw(0, 1 << 20);
      const flipped = Buffer.from(bytes);
      flipped[bytes.length - 6] = (flipped[bytes.length - 6] ?? 0) ^ 0x01; // in the payload
      expect(() => follower.appendRaw(0, flipped)).toThrow(/damaged \(bad_crc\)/);
      expect(() => follower.appendRaw(0, bytes.subarray(0, bytes.length - 1), true)).toThrow(
        /torn input/,
      );
      expect(follower.endPosition).toBe(0);
      void follower.appendRaw(0, bytes, true).catch(() => undefined);
      expect(follower.endPosition).toBe(bytes.length);
    } finally {
      await leader.close();
      await follower.close();
    }
  });
});
