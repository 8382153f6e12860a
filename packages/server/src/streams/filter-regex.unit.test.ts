import { RE2JS } from "re2js";
import { describe, expect, it } from "vitest";
import { Rng } from "../cluster/sim/rng.js";
import {
  backtrackingIsBounded,
  compileFilterPattern,
  FILTER_REGEX_FLAGS,
  toRe2Syntax,
} from "./filter-regex.js";

const ATOMS = [
  "a",
  "b",
  "é",
  "-",
  "0",
  "😀",
  " ",
  "_",
  ".",
  "\\d",
  "\\D",
  "\\w",
  "\\W",
  "\\s",
  "\\S",
  "\\b",
  "\\B",
  "\\u00e9",
  "\\u{1F600}",
  "\\uD83D\\uDE00",
  "\\x41",
  "\\t",
  "\\n",
  "\\cJ",
  "\\0",
  "\\.",
  "\\-",
  "\\/",
  "\\p{L}",
  "\\P{L}",
  "\\p{Lu}",
  "\\p{Script=Greek}",
  "\\p{sc=Latin}",
  "\\p{gc=Nd}",
  "[ab]",
  "[^ab]",
  "[a-z]",
  "[\\s\\d]",
  "[^\\S]",
  "[\\S]",
  "[\\b]",
  "[]",
  "[^]",
  "[[]",
  "[\\]]",
  "[-a]",
  "[\\u0041-\\u005A]",
  "[^\\s]",
  "[.]",
  "[\\w-]",
  "[😀é]",
  "[\\p{Lu}0]",
] as const;
const QUANTIFIERS = ["*", "+", "?", "{2}", "{1,3}", "{2,}", "*?", "+?", "??", "{0,2}?"] as const;
const TEXT_CHARS = [
  "a",
  "b",
  "A",
  "é",
  "ω",
  "Ω",
  "Λ",
  " ",
  "\u00a0",
  "\u2028",
  "\u3000",
  "\ufeff",
  "\n",
  "\r",
  "\t",
  "\v",
  "\b",
  "\0",
  "0",
  "5",
  "-",
  ".",
  "😀",
  "_",
  "[",
  "]",
  "/",
  "\u0001",
] as const;

/** A random pattern in JavaScript syntax (it may still be invalid: the caller checks). */
function pattern(r: Rng, depth = 0): string {
  const parts: string[] = [];
  const n = 1 + Math.floor(r.next() * 4);
  for (let i = 0; i < n; i++) {
    let part: string;
    const roll = r.next();
    if (depth < 3 && roll < 0.2) part = `(${pattern(r, depth + 1)})`;
    else if (depth < 3 && roll < 0.3) part = `(?:${pattern(r, depth + 1)})`;
    else part = r.pick(ATOMS);
    if (r.next() < 0.3) part += r.pick(QUANTIFIERS);
    parts.push(part);
  }
  let out = parts.join("");
  if (r.next() < 0.25) out += `|${pattern(r, depth + 1)}`;
  if (depth === 0 && r.next() < 0.3) out = `^${out}`;
  if (depth === 0 && r.next() < 0.3) out = `${out}$`;
  return out;
}

function text(r: Rng): string {
  const length = Math.floor(r.next() * 10);
  let out = "";
  for (let i = 0; i < length; i++) out += r.pick(TEXT_CHARS);
  return out;
}

describe("toRe2Syntax: RE2 matches what V8 matches", () => {
  it("for 4,000 random patterns over texts of the characters where the engines differ", () => {
    const seed = 20261205;
    const r = new Rng(seed);
    let compared = 0;
    let refused = 0;
    for (let p = 0; p < 4_000; p++) {
      const source = pattern(r);
      let v8: RegExp;
      try {
        v8 = new RegExp(source, FILTER_REGEX_FLAGS);
      } catch {
        continue; // not valid JavaScript: refused before any engine
      }
      let re2: RE2JS;
      try {
        re2 = RE2JS.compile(toRe2Syntax(source));
      } catch (err) {
        refused++;
        if (refused > 100) throw new Error(`RE2 refused ${source}: ${String(err)}`);
        continue;
      }
      const texts = Array.from({ length: 40 }, () => text(r));
      // A text made of the pattern's own characters, so that matches are not all false (short:
      // V8's engine backtracks exponentially over some of these patterns).
      texts.push([...source.replace(/[\\^$()[\]{}*+?|]/g, "")].slice(0, 10).join(""));
      for (const t of texts) {
        const expected = v8.test(t);
        const got = re2.test(t);
        if (got !== expected) {
          throw new Error(
            `seed ${seed}: /${source}/u on ${JSON.stringify(t)}: V8 ${expected}, RE2 ${got} (as ${toRe2Syntax(source)})`,
          );
        }
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(40_000);
    // RE2 runs all of these (what it lacks, lookaround and backreferences, is not generated).
    expect(refused).toBeLessThanOrEqual(100);
  });

  it("\\s and \\S are JavaScript's, over every code point", () => {
    const space = RE2JS.compile(toRe2Syntax("^\\s$"));
    const notSpace = RE2JS.compile(toRe2Syntax("^[\\S]$"));
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const c = String.fromCodePoint(cp);
      const js = /^\s$/u.test(c);
      if (space.test(c) !== js || notSpace.test(c) === js) {
        throw new Error(`U+${cp.toString(16)}: JavaScript \\s ${js}`);
      }
    }
  });
});

describe("backtrackingIsBounded", () => {
  it.each<[string, boolean]>([
    ["der", true],
    ["^order-\\d+$", true],
    ["^fill-\\d*42$", true],
    ["order-\\d+", false], // one quantifier, but every position is a start
    ["^\\d+-\\d+$", false],
    ["^(order|invoice)-", false],
    ["(a|aa)+b", false],
    ["^(?:ab)c+", true], // a group's "?:" is no quantifier
    ["^(?<id>x)y?", true],
    ["^a*?b", true], // a lazy quantifier is one
    ["^[*+?|]x+", true], // inside a class, nothing is a quantifier or alternation
    ["^\\*\\+\\|x*", true], // escaped
    ["^a{2,5}", true],
    ["^a{2,5}b?", false],
    [`^${"a".repeat(100)}`, false], // longer than 100
  ])("%s -> %s", (source, bounded) => {
    expect(backtrackingIsBounded(source)).toBe(bounded);
  });
});

describe("compileFilterPattern", () => {
  it("runs patterns that backtrack exponentially in linear time", () => {
    const name = "a".repeat(1_000);
    for (const source of ["(a|aa)+b", "(a+)+b", "(a|a)*c", "^(\\w+\\s?)*$x", "(.*a){12}b"]) {
      const started = process.hrtime.bigint();
      expect(compileFilterPattern(source).test(name)).toBe(false);
      // Milliseconds on any machine; V8's engine would take longer than the test's timeout.
      expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(2_000);
    }
  });

  it("keeps V8's engine for patterns of a bounded shape", () => {
    expect(compileFilterPattern("^order-\\d+$")).toBeInstanceOf(RegExp);
    expect(compileFilterPattern("(a|aa)+b")).not.toBeInstanceOf(RegExp);
  });

  it("refuses what RE2 cannot run in a pattern that needs it; a stored one falls back to V8", () => {
    expect(() => compileFilterPattern("(?=a)a|b")).toThrow(/invalid or unsupported Perl syntax/);
    expect(() => compileFilterPattern("(a)b*\\1+")).toThrow(/invalid escape sequence/);
    const stored = compileFilterPattern("(?=a)a|b", true);
    expect(stored).toBeInstanceOf(RegExp);
    expect(stored.test("a")).toBe(true);
  });
});
