import { describe, expect, it } from "vitest";
import { RetryBudget, UNLIMITED_RETRY_BUDGET } from "./retry-budget.js";

function budget(ratio: number, minRetriesPerSecond: number, windowMs = 10_000) {
  const clock = { ms: 1_000_000 };
  const b = new RetryBudget({ ratio, minRetriesPerSecond, windowMs }, () => clock.ms);
  return { b, clock };
}

/** How many retries in a row the budget allows now (withdrawing them). */
function drain(b: RetryBudget): number {
  let n = 0;
  while (b.tryWithdraw()) n++;
  return n;
}

describe("RetryBudget", () => {
  it.each([
    // ratio, min/s, window, operations, retries allowed
    [0.2, 0, 10_000, 0, 0],
    [0.2, 0, 10_000, 4, 0],
    [0.2, 0, 10_000, 5, 1],
    [0.2, 0, 10_000, 100, 20],
    [0.1, 0, 10_000, 30, 3],
    [0, 10, 10_000, 0, 100],
    [0.2, 10, 10_000, 1000, 300],
    [0.2, 10, 1_000, 0, 10],
    [1, 0, 10_000, 7, 7],
  ])(
    "ratio %s, %s/s over %s ms, after %s operations: %s retries",
    (ratio, min, windowMs, operations, allowed) => {
      const { b } = budget(ratio, min, windowMs);
      for (let i = 0; i < operations; i++) b.deposit();
      expect(drain(b)).toBe(allowed);
      expect(b.balance).toBeLessThan(1);
    },
  );

  it("a leader change that fails every request in flight: each is retried once, no more", () => {
    const { b } = budget(0.2, 10, 10_000);
    // 2,000 operations in the last window, 256 in flight when the leader dies
    for (let i = 0; i < 2_000; i++) b.deposit();
    let retried = 0;
    for (let i = 0; i < 256; i++) if (b.tryWithdraw()) retried++;
    expect(retried).toBe(256);
    // the new leader is not ready: every retry fails again, and again
    let second = 0;
    for (let round = 0; round < 10; round++)
      for (let i = 0; i < 256; i++) if (b.tryWithdraw()) second++;
    expect(second).toBe(400 + 100 - 256); // ratio of the operations + reserve, minus the first round
    expect(b.refusalsInARow).toBe(10 * 256 - second);
  });

  it("deposits and withdrawals expire with the window; the reserve stays", () => {
    const { b, clock } = budget(0.5, 1, 10_000);
    for (let i = 0; i < 10; i++) b.deposit();
    expect(b.balance).toBe(10 + 5);
    expect(drain(b)).toBe(15);
    clock.ms += 5_000;
    expect(b.tryWithdraw()).toBe(false);
    clock.ms += 5_000; // the slot of the deposits and withdrawals has left the window
    expect(b.balance).toBe(10);
    expect(drain(b)).toBe(10);
    clock.ms += 10_000;
    expect(b.balance).toBe(10);
  });

  it("counts each slot once however long the client was idle (the ring wraps)", () => {
    const { b, clock } = budget(1, 0, 1_000);
    b.deposit();
    clock.ms += 1_000 * 7 + 300; // same slot index, seven windows later
    expect(b.balance).toBe(0);
    b.deposit();
    b.deposit();
    expect(b.balance).toBe(2);
  });

  it("refusalsInARow counts refusals since the last retry allowed", () => {
    const { b } = budget(1, 0);
    expect(b.tryWithdraw()).toBe(false);
    expect(b.tryWithdraw()).toBe(false);
    expect(b.refusalsInARow).toBe(2);
    b.deposit();
    expect(b.tryWithdraw()).toBe(true);
    expect(b.refusalsInARow).toBe(0);
  });

  it("the unlimited budget never refuses", () => {
    const b = new RetryBudget(UNLIMITED_RETRY_BUDGET, () => 0);
    for (let i = 0; i < 10_000; i++) expect(b.tryWithdraw()).toBe(true);
  });
});
