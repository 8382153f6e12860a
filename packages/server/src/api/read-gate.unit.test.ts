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

  it("refuses a limit below 1", () => {
    expect(() => new ReadGate(0)).toThrow(/at least 1/);
  });
});
