import { describe, expect, it } from "vitest";
import { ReadGate } from "./read-gate.js";

/** A read that ends when told to. */
function pending(): { promise: Promise<string>; end: (v: string) => void; fail: () => void } {
  let end!: (v: string) => void;
  let fail!: () => void;
  const promise = new Promise<string>((resolve, reject) => {
    end = resolve;
    fail = () => reject(new Error("read failed"));
  });
  return { promise, end, fail };
}

/** Lets every settled promise's callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("ReadGate", () => {
  it("runs at most `limit` reads at once; the others start in the order they came", async () => {
    const gate = new ReadGate(2);
    const reads = Array.from({ length: 5 }, () => pending());
    const started: number[] = [];
    const results = reads.map((r, i) =>
      gate.run(() => {
        started.push(i);
        return r.promise;
      }),
    );
    await settle();
    expect(started).toEqual([0, 1]);
    expect(gate.running).toBe(2);
    expect(gate.waiting).toBe(3);

    reads[1]!.end("b");
    await settle();
    expect(started).toEqual([0, 1, 2]);
    expect(gate.running).toBe(2);
    expect(gate.waiting).toBe(2);

    reads[0]!.end("a");
    reads[2]!.end("c");
    await settle();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(gate.waiting).toBe(0);
    reads[3]!.end("d");
    reads[4]!.end("e");
    expect(await Promise.all(results)).toEqual(["a", "b", "c", "d", "e"]);
    expect(gate.running).toBe(0);
  });

  it("hands the turn on when a read fails, and the failure reaches its caller", async () => {
    const gate = new ReadGate(1);
    const first = pending();
    const failed = gate.run(() => first.promise);
    const second = gate.run(() => Promise.resolve("second"));
    await settle();
    expect(gate.waiting).toBe(1);
    first.fail();
    await expect(failed).rejects.toThrow("read failed");
    expect(await second).toBe("second");
    expect(gate.running).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it("a read that throws before it returns a promise also hands the turn on", async () => {
    const gate = new ReadGate(1);
    await expect(
      gate.run(() => {
        throw new Error("no read");
      }),
    ).rejects.toThrow("no read");
    expect(await gate.run(() => Promise.resolve(1))).toBe(1);
    expect(gate.running).toBe(0);
  });

  it("keeps order over many waiting reads", async () => {
    const gate = new ReadGate(3);
    const started: number[] = [];
    const all = Array.from({ length: 5000 }, (_, i) =>
      gate.run(async () => {
        started.push(i);
        await settle();
        return i;
      }),
    );
    expect(await Promise.all(all)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(started).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(gate.running).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it("a waiting read whose caller left never runs, and the turn passes over it", async () => {
    const gate = new ReadGate(1);
    const first = pending();
    const started: string[] = [];
    const running = gate.run(() => first.promise);
    const left = new AbortController();
    const abandoned = gate.run(() => {
      started.push("abandoned");
      return Promise.resolve("abandoned");
    }, left.signal);
    const next = gate.run(() => {
      started.push("next");
      return Promise.resolve("next");
    });
    await settle();
    expect(gate.waiting).toBe(2);

    left.abort(new Error("the caller left"));
    await expect(abandoned).rejects.toThrow("the caller left");
    expect(gate.waiting).toBe(1);
    expect(gate.running).toBe(1);

    first.end("first");
    expect(await running).toBe("first");
    expect(await next).toBe("next");
    expect(started).toEqual(["next"]);
    expect(gate.running).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it("a read whose caller has already left is refused at once and takes no turn", async () => {
    const gate = new ReadGate(1);
    const left = new AbortController();
    left.abort(new Error("gone before"));
    let ran = false;
    await expect(
      gate.run(() => {
        ran = true;
        return Promise.resolve(1);
      }, left.signal),
    ).rejects.toThrow("gone before");
    expect(ran).toBe(false);
    expect(gate.running).toBe(0);
  });

  it("a read that is running when its caller leaves completes", async () => {
    const gate = new ReadGate(1);
    const left = new AbortController();
    const read = pending();
    const result = gate.run(() => read.promise, left.signal);
    await settle();
    left.abort(new Error("left"));
    read.end("done");
    expect(await result).toBe("done");
    expect(gate.running).toBe(0);
  });

  it("keeps order and counts over many reads, half of them abandoned", async () => {
    const gate = new ReadGate(2);
    const blockers = [pending(), pending()];
    const held = blockers.map((b) => gate.run(() => b.promise));
    const started: number[] = [];
    const controllers = Array.from({ length: 3000 }, () => new AbortController());
    const all = controllers.map((c, i) =>
      gate.run(() => {
        started.push(i);
        return Promise.resolve(i);
      }, c.signal),
    );
    await settle();
    expect(gate.waiting).toBe(3000);
    controllers.forEach((c, i) => i % 2 === 1 && c.abort(new Error("left")));
    expect(gate.waiting).toBe(1500);
    blockers.forEach((b) => b.end("x"));
    await Promise.all(held);
    const outcomes = await Promise.allSettled(all);
    const evens = Array.from({ length: 1500 }, (_, k) => 2 * k);
    expect(started).toEqual(evens);
    expect(outcomes.filter((o) => o.status === "rejected")).toHaveLength(1500);
    expect(gate.running).toBe(0);
    expect(gate.waiting).toBe(0);
  });

  it("refuses a limit below 1", () => {
    expect(() => new ReadGate(0)).toThrow(/at least 1/);
  });
});
