import { describe, expect, it } from "vitest";
import {
  partitionKeyOf,
  partitionListProblem,
  partitionNameProblem,
  partitionOf,
  partitionWeight,
} from "./index.js";

const MASK = (1n << 64n) - 1n;

/** The documented weight, written the slow and obvious way with BigInt, as a reference. */
function referenceWeight(group: string, key: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(`${group}\u0000${key}`)) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & MASK;
  }
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & MASK;
  h ^= h >> 33n;
  h = (h * 0xc4ceb9fe1a85ec53n) & MASK;
  h ^= h >> 33n;
  return h;
}

/** A small deterministic generator (mulberry32), so the properties are reproducible. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = Array.from({ length: 10_000 }, (_, i) => `order-${i}`);

describe("partitionWeight", () => {
  it("matches the documented hash (golden values)", () => {
    // Fixed once; a change here changes the owner of every stored stream.
    const golden: [string, string, bigint][] = [
      ["", "", 0xb9034ad37056f5fbn],
      ["east", "order-1", 0x481681d474955dfdn],
      ["west", "order-1", 0xc0e211ab33949632n],
      ["a", "order-1", 0xc03490dc614d405an],
      ["p1", "tenant-ü-€-😀", 0xb24575be05e1d199n],
    ];
    for (const [group, key, weight] of golden) {
      expect(partitionWeight(group, key)).toBe(weight);
      expect(referenceWeight(group, key)).toBe(weight);
    }
    expect(partitionOf("order-1", ["east", "west"])).toBe("west");
  });

  it("agrees with the BigInt reference on random names, including non-ASCII and lone surrogates", () => {
    const next = random(7);
    const alphabet = [
      "a",
      "z",
      "0",
      "-",
      "{",
      "}",
      "$",
      "é",
      "€",
      "😀",
      "\ud800",
      "\udc00",
      "\u0000",
    ];
    for (let i = 0; i < 2_000; i++) {
      let key = "";
      const length = Math.floor(next() * 24);
      for (let j = 0; j < length; j++) key += alphabet[Math.floor(next() * alphabet.length)];
      const group = `g${Math.floor(next() * 1000)}`;
      expect(partitionWeight(group, key)).toBe(referenceWeight(group, key));
    }
  });
});

describe("partitionKeyOf", () => {
  it.each([
    ["order-1", "order-1"],
    ["tenant{42}-order-7", "42"],
    ["{42}", "42"],
    ["a{x}b{y}c", "x"],
    ["a{}b", "a{}b"],
    ["a{b", "a{b"],
    ["a}b{c", "a}b{c"],
    ["a}b{c}", "c"],
    ["$$order-1", "order-1"],
    ["$$tenant{42}-order-7", "42"],
    ["$persistent-orders", "$persistent-orders"],
    ["$$", "$$"],
    // The metadata of a metadata stream goes with the stream too.
    ["$$$$order-1", "order-1"],
    ["$$$$tenant{42}-order-7", "42"],
    ["$$$$", "$$"],
    ["$$$x", "$x"],
  ])("%j -> %j", (id, key) => {
    expect(partitionKeyOf(id)).toBe(key);
  });
});

describe("partitionOf", () => {
  const groups = ["east", "west", "north"];

  it("is deterministic and does not depend on the order of the groups", () => {
    for (const key of KEYS.slice(0, 1000)) {
      const owner = partitionOf(key, groups);
      expect(partitionOf(key, [...groups].reverse())).toBe(owner);
      expect(partitionOf(key, ["west", "north", "east"])).toBe(owner);
    }
  });

  it("gives the group with the highest documented weight", () => {
    for (const key of KEYS.slice(0, 500)) {
      const best = [...groups].sort((a, b) => {
        const d = referenceWeight(b, key) - referenceWeight(a, key);
        return d > 0n ? 1 : d < 0n ? -1 : 0;
      })[0];
      expect(partitionOf(key, groups)).toBe(best);
    }
  });

  it("keeps streams with the same {tag} together, and a stream's metadata with it", () => {
    for (let tenant = 0; tenant < 200; tenant++) {
      const owner = partitionOf(`tenant{${tenant}}-order-1`, groups);
      expect(partitionOf(`tenant{${tenant}}-cart-9`, groups)).toBe(owner);
      expect(partitionOf(`{${tenant}}`, groups)).toBe(owner);
      expect(partitionOf(`$$tenant{${tenant}}-order-1`, groups)).toBe(owner);
    }
    for (const key of KEYS.slice(0, 200))
      expect(partitionOf(`$$${key}`, groups)).toBe(partitionOf(key, groups));
    // Not all tenants in one group: the tag is hashed, not ignored.
    const owners = new Set(
      Array.from({ length: 200 }, (_, t) => partitionOf(`tenant{${t}}-x`, groups)),
    );
    expect(owners.size).toBe(3);
  });

  it("moves only the streams the new group wins when a group is added (10k keys)", () => {
    const before = KEYS.map((key) => partitionOf(key, groups));
    const after = KEYS.map((key) => partitionOf(key, [...groups, "south"]));
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (after[i] !== before[i]) {
        expect(after[i]).toBe("south");
        moved++;
      }
    }
    // About a quarter moves to the fourth group.
    expect(moved / KEYS.length).toBeGreaterThan(0.22);
    expect(moved / KEYS.length).toBeLessThan(0.28);
  });

  it("moves only the removed group's streams when a group is removed", () => {
    const before = KEYS.map((key) => partitionOf(key, groups));
    const after = KEYS.map((key) => partitionOf(key, ["east", "north"]));
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] !== "west") expect(after[i]).toBe(before[i]);
      else expect(after[i]).not.toBe("west");
    }
  });

  it.each([
    [["a", "b"]],
    [["east", "west", "north"]],
    [["p0", "p1", "p2", "p3", "p4"]],
    [["group-1", "group-2", "group-3", "group-4", "group-5", "group-6", "group-7", "group-8"]],
  ])("balances 10k keys over %j within 3 points of an even share", (list) => {
    const counts = new Map<string, number>(list.map((g) => [g, 0]));
    for (const key of KEYS)
      counts.set(partitionOf(key, list), counts.get(partitionOf(key, list))! + 1);
    const even = 1 / list.length;
    for (const [, count] of counts) {
      expect(Math.abs(count / KEYS.length - even)).toBeLessThan(0.03);
    }
    // And with random keys that share long prefixes and differ in one character.
    const next = random(11);
    const uuidish = Array.from(
      { length: 10_000 },
      () => `stream-${Math.floor(next() * 1e9).toString(36)}`,
    );
    const counts2 = new Map<string, number>(list.map((g) => [g, 0]));
    for (const key of uuidish)
      counts2.set(partitionOf(key, list), counts2.get(partitionOf(key, list))! + 1);
    for (const [, count] of counts2) {
      expect(Math.abs(count / uuidish.length - even)).toBeLessThan(0.03);
    }
  });

  it("returns the only group without hashing, and refuses an empty list", () => {
    expect(partitionOf("anything", ["solo"])).toBe("solo");
    expect(() => partitionOf("x", [])).toThrow(RangeError);
  });
});

describe("partition names", () => {
  it.each([
    ["east", null],
    ["p-1", null],
    ["a".repeat(32), null],
    ["", 'partition name "" is not 1 to 32 characters of a-z, 0-9 and -'],
    ["East", 'partition name "East" is not 1 to 32 characters of a-z, 0-9 and -'],
    [
      "a".repeat(33),
      `partition name "${"a".repeat(33)}" is not 1 to 32 characters of a-z, 0-9 and -`,
    ],
    ["a_b", 'partition name "a_b" is not 1 to 32 characters of a-z, 0-9 and -'],
    [3, "a partition name must be a string"],
  ])("%j -> %j", (name, problem) => {
    expect(partitionNameProblem(name)).toBe(problem);
  });

  it("checks a list: not empty, no duplicates, every name valid", () => {
    expect(partitionListProblem(["a", "b"])).toBeNull();
    expect(partitionListProblem([])).toBe("the partition list is empty");
    expect(partitionListProblem(["a", "a"])).toBe('partition "a" is listed twice');
    expect(partitionListProblem(["a", "B"])).toMatch(/"B"/);
  });
});
