/**
 * MemoryKv (the `--mem-db` index): what ops and blocks put reads back the same, whatever the
 * caller does with its buffers afterwards; block values packed in slots included.
 */
import { describe, expect, it } from "vitest";
import { MemoryKv, type KvBlock } from "./kv.js";

/** A block of `count` ids: key i is i as 16 bytes, value i is (i * 10 + `plus`, i % 7). */
function idBlock(count: number, from = 0, plus = 0): KvBlock {
  return {
    table: "ids",
    count,
    keyBytes: 16,
    valueBytes: 16,
    fill(i, buf, keyAt, valueAt) {
      buf.fill(0, keyAt, keyAt + 16);
      buf.writeUInt32BE(from + i, keyAt + 12);
      buf.writeDoubleLE((from + i) * 10 + plus, valueAt);
      buf.writeDoubleLE((from + i) % 7, valueAt + 8);
    },
  };
}

function idKey(i: number): Buffer {
  const k = Buffer.alloc(16);
  k.writeUInt32BE(i, 12);
  return k;
}

function idValue(kv: MemoryKv, i: number): [number, number] | undefined {
  const v = kv.get("ids", idKey(i));
  return v === undefined ? undefined : [v.readDoubleLE(0), v.readDoubleLE(8)];
}

describe("MemoryKv", () => {
  it("reads back every block entry, across its buffer's growth, and overwrites in place", async () => {
    const kv = new MemoryKv();
    await kv.write([], [idBlock(3000)]);
    await kv.write([], [idBlock(3000, 3000)]);
    for (const i of [0, 1, 1023, 1024, 2047, 2048, 5999])
      expect(idValue(kv, i)).toEqual([i * 10, i % 7]);
    expect(idValue(kv, 6000)).toBeUndefined();
    // Rewritten keys take their new values; the others keep theirs.
    await kv.write([], [idBlock(10, 1020, 5)]);
    expect(idValue(kv, 1020)).toEqual([10_205, 1020 % 7]);
    expect(idValue(kv, 1029)).toEqual([10_295, 1029 % 7]);
    expect(idValue(kv, 1030)).toEqual([10_300, 1030 % 7]);
    expect(kv.entries("ids")).toHaveLength(6000);
  });

  it("hands out copies, and keeps copies of what it is given", async () => {
    const kv = new MemoryKv();
    const key = Buffer.from("stream-a");
    const value = Buffer.from([1, 2, 3]);
    await kv.write([{ table: "streams", key, value }], [idBlock(1)]);
    value[0] = 9;
    key.write("stream-b");
    expect(kv.get("streams", Buffer.from("stream-a"))).toEqual(Buffer.from([1, 2, 3]));
    const read = kv.get("ids", idKey(0))!;
    read.fill(0xff);
    expect(idValue(kv, 0)).toEqual([0, 0]);
  });

  it("applies ops over block values, deletes, values of another size and clear", async () => {
    const kv = new MemoryKv();
    await kv.write([], [idBlock(4)]);
    const other = Buffer.alloc(16, 7);
    await kv.write(
      [
        { table: "ids", key: idKey(1), value: other },
        { table: "ids", key: idKey(2), value: null },
      ],
      [],
    );
    expect(kv.get("ids", idKey(1))).toEqual(other);
    expect(kv.get("ids", idKey(2))).toBeUndefined();
    expect(idValue(kv, 3)).toEqual([30, 3]);
    // A block of another value size into the same table is kept too.
    await kv.write(
      [],
      [
        {
          table: "ids",
          count: 1,
          keyBytes: 16,
          valueBytes: 4,
          fill: (_i, buf, keyAt, valueAt) => {
            idKey(9).copy(buf, keyAt);
            buf.writeUInt32LE(42, valueAt);
          },
        },
      ],
    );
    expect(kv.get("ids", idKey(9))?.readUInt32LE(0)).toBe(42);
    expect(kv.entries("ids").map(([k, v]) => [k.readUInt32BE(12), v.length])).toEqual([
      [0, 16],
      [1, 16],
      [3, 16],
      [9, 4],
    ]);
    // A key an op put, then deleted, reads as absent.
    await kv.write([{ table: "streams", key: Buffer.from("s"), value: Buffer.from([1]) }], []);
    await kv.write([{ table: "streams", key: Buffer.from("s"), value: null }], []);
    expect(kv.get("streams", Buffer.from("s"))).toBeUndefined();
    expect(kv.entries("streams")).toEqual([]);
    await kv.clear();
    expect(kv.entries("ids")).toEqual([]);
    await kv.write([], [idBlock(2)]);
    expect(idValue(kv, 1)).toEqual([10, 1]);
  });
});
