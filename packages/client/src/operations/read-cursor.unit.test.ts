import { describe, expect, it } from "vitest";
import { ReadCursor } from "./read-cursor.js";

describe("ReadCursor", () => {
  it("pages forwards from the start until the end of the stream", () => {
    const c = new ReadCursor({
      direction: "forwards",
      from: "start",
      maxCount: Infinity,
      pageSize: 2,
    });
    expect(c.next()).toEqual({ fromEnd: false, from: 0, maxCount: 2 });
    expect(c.advance({ count: 2, endOfStream: false, next: 2 })).toBe(2);
    expect(c.next()).toEqual({ fromEnd: false, from: 2, maxCount: 2 });
    expect(c.advance({ count: 1, endOfStream: true, next: 3 })).toBe(1);
    expect(c.done).toBe(true);
  });

  it("caps the total at maxCount, also within a page", () => {
    const c = new ReadCursor({ direction: "forwards", from: 10, maxCount: 3, pageSize: 2 });
    expect(c.next()).toEqual({ fromEnd: false, from: 10, maxCount: 2 });
    c.advance({ count: 2, endOfStream: false, next: 12 });
    expect(c.next()).toEqual({ fromEnd: false, from: 12, maxCount: 1 });
    expect(c.advance({ count: 5, endOfStream: false, next: 17 })).toBe(1);
    expect(c.done).toBe(true);
  });

  it("starts backwards reads from the end, then continues from the reply", () => {
    const c = new ReadCursor({
      direction: "backwards",
      from: "end",
      maxCount: Infinity,
      pageSize: 100,
    });
    expect(c.next()).toEqual({ fromEnd: true, from: 0, maxCount: 100 });
    c.advance({ count: 100, endOfStream: false, next: 899 });
    expect(c.next()).toEqual({ fromEnd: false, from: 899, maxCount: 100 });
  });

  it("goes on after an empty page that moved on (a filtered read that found no match yet)", () => {
    const c = new ReadCursor({ direction: "forwards", from: "start", maxCount: 5, pageSize: 10 });
    expect(c.advance({ count: 0, endOfStream: false, next: 16_384 })).toBe(0);
    expect(c.done).toBe(false);
    expect(c.next()).toEqual({ fromEnd: false, from: 16_384, maxCount: 5 });
    expect(c.advance({ count: 2, endOfStream: true, next: 20_000 })).toBe(2);
    expect(c.done).toBe(true);
  });

  it("stops on an empty page that does not move, or any page that does not (never spins)", () => {
    const empty = new ReadCursor({
      direction: "forwards",
      from: "start",
      maxCount: Infinity,
      pageSize: 10,
    });
    empty.advance({ count: 0, endOfStream: false, next: 0 });
    expect(empty.done).toBe(true);
    const stuck = new ReadCursor({
      direction: "forwards",
      from: 5,
      maxCount: Infinity,
      pageSize: 10,
    });
    stuck.advance({ count: 3, endOfStream: false, next: 5 });
    expect(stuck.done).toBe(true);
  });

  it("a lost page does not advance it: the same request is made again", () => {
    const c = new ReadCursor({
      direction: "forwards",
      from: "start",
      maxCount: Infinity,
      pageSize: 2,
    });
    c.advance({ count: 2, endOfStream: false, next: 2 });
    const before = c.next();
    // (the request for `before` failed; nothing was advanced)
    expect(c.next()).toEqual(before);
  });

  it("maxCount 0 reads nothing", () => {
    expect(
      new ReadCursor({ direction: "forwards", from: "start", maxCount: 0, pageSize: 10 }).done,
    ).toBe(true);
  });
});
