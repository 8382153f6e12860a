import { describe, expect, it } from "vitest";
import { ProcessHold } from "./process-hold.js";

describe("ProcessHold", () => {
  it("holds the process from the first claim until the last one is released", () => {
    const hold = new ProcessHold();
    expect(hold.holding).toBe(false);
    const a = hold.acquire();
    const b = hold.acquire();
    expect([hold.holding, hold.claims]).toEqual([true, 2]);
    a();
    expect([hold.holding, hold.claims]).toEqual([true, 1]);
    a(); // a second release of the same claim changes nothing
    expect([hold.holding, hold.claims]).toEqual([true, 1]);
    b();
    expect([hold.holding, hold.claims]).toEqual([false, 0]);
    const c = hold.acquire();
    expect(hold.holding).toBe(true);
    c();
    expect(hold.holding).toBe(false);
    hold.dispose();
  });

  it("holds nothing after dispose(), whatever was claimed before or after", () => {
    const hold = new ProcessHold();
    const before = hold.acquire();
    hold.dispose();
    expect([hold.holding, hold.claims]).toEqual([false, 0]);
    const after = hold.acquire();
    expect([hold.holding, hold.claims]).toEqual([false, 0]);
    before();
    after();
    expect(hold.claims).toBe(0);
    hold.dispose();
  });

  it("is one ref'd handle while held, none once released or disposed", () => {
    const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const baseline = timeouts();
    const hold = new ProcessHold();
    const releases = [hold.acquire(), hold.acquire(), hold.acquire()];
    expect(timeouts()).toBe(baseline + 1);
    for (const release of releases) release();
    expect(timeouts()).toBe(baseline);
    hold.acquire();
    expect(timeouts()).toBe(baseline + 1);
    hold.dispose();
    expect(timeouts()).toBe(baseline);
  });
});
