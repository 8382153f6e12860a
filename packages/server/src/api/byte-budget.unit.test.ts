import pino from "pino";
import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ByteBudget, RECEIVE_BUDGET } from "./byte-budget.js";

function budget(limit: number): { budget: ByteBudget; evictions: Counter } {
  const evictions = new Counter({ name: "e", help: "e", registers: [new Registry()] });
  return {
    budget: new ByteBudget(limit, RECEIVE_BUDGET, evictions, pino({ level: "silent" })),
    evictions,
  };
}

describe("ByteBudget", () => {
  it("evicts the holder of the most until the total fits, and forgets what it held", () => {
    const { budget: b } = budget(100);
    const evicted: string[] = [];
    const a = b.holder(() => evicted.push("a"));
    const c = b.holder(() => evicted.push("c"));
    const d = b.holder(() => evicted.push("d"));
    a.received(40);
    c.received(30);
    d.received(20);
    expect(evicted).toEqual([]);
    d.received(25); // 115: d holds the most (45)
    expect(evicted).toEqual(["d"]);
    expect(b.used).toBe(70);
    d.received(1_000); // an evicted connection's late bytes do not count
    expect(b.used).toBe(70);
    c.received(80); // 150: c (110) goes, then 40 fit
    expect(evicted).toEqual(["d", "c"]);
    expect(b.used).toBe(40);
  });

  it("a whole message releases what its connection held", () => {
    const { budget: b, evictions } = budget(100);
    const a = b.holder(() => {
      throw new Error("not evicted");
    });
    for (let i = 0; i < 1_000; i++) {
      a.received(60);
      a.release();
    }
    expect(b.used).toBe(0);
    return evictions.get().then((m) => expect(m.values[0]?.value ?? 0).toBe(0));
  });

  it("holds() sets what a connection holds now: it grows and shrinks, and evicts past the limit", () => {
    const { budget: b } = budget(100);
    const evicted: string[] = [];
    const a = b.holder(() => evicted.push("a"));
    const c = b.holder(() => evicted.push("c"));
    a.holds(50);
    c.holds(40);
    a.holds(10); // drained
    expect(b.used).toBe(50);
    c.holds(95); // 105: c holds the most
    expect(evicted).toEqual(["c"]);
    expect(b.used).toBe(10);
    c.holds(0); // late news of an evicted connection does not count
    a.holds(0);
    expect(b.used).toBe(0);
  });
});
