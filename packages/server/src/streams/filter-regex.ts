/**
 * The regular expressions of filters, run next to the log on the node's event loop. A client
 * chooses the pattern, so no pattern may hold the event loop for long: V8's engine backtracks,
 * and a pattern such as `(a|aa)+b` takes exponential time over a stream name of 40 `a`s
 * (seconds) or 60 (hours), while the node misses its heartbeats and loses its leadership. So:
 *
 * - A pattern whose backtracking is bounded by its shape runs on V8's engine (the fast one):
 *   at most 100 characters, no `|`, and no quantifier, or a single one with the pattern
 *   anchored at the start (`^order-\d+$`). At most one quantifier and one starting point
 *   leave a backtracking engine linear work per name.
 * - Every other pattern runs on RE2's engine (`re2js`, pure JavaScript), which takes time
 *   linear in the name whatever the pattern. The pattern stays JavaScript syntax with the `u`
 *   flag: it is translated (`toRe2Syntax`) so that it matches what V8 would match (`.`, `\s`
 *   and `\S` as JavaScript reads them; `\u`, `\c` and the long property forms spelled as RE2
 *   spells them). What RE2 cannot run in linear time (lookaround, backreferences) is refused
 *   in such a pattern, with RE2's reason.
 */
import { RE2JS } from "re2js";

/** Flags every filter pattern is compiled with (client and server alike). */
export const FILTER_REGEX_FLAGS = "u";
/** Longest pattern that may run on V8's backtracking engine (when its shape allows). */
export const MAX_BACKTRACKING_PATTERN_LENGTH = 100;

/** What a compiled filter pattern offers: a match anywhere in the text (as RegExp.test). */
export interface FilterPattern {
  test(text: string): boolean;
}

/** JavaScript's `\s`: Unicode white space and line terminators, as code point ranges. */
const WHITE_SPACE: ReadonlyArray<readonly [number, number]> = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
const MAX_CODE_POINT = 0x10ffff;

const hex = (cp: number): string => `\\x{${cp.toString(16)}}`;
const rangesText = (ranges: ReadonlyArray<readonly [number, number]>): string =>
  ranges.map(([a, b]) => (a === b ? hex(a) : `${hex(a)}-${hex(b)}`)).join("");

/** The code points outside `ranges` (sorted, disjoint). */
function complement(
  ranges: ReadonlyArray<readonly [number, number]>,
): Array<readonly [number, number]> {
  const out: Array<readonly [number, number]> = [];
  let next = 0;
  for (const [a, b] of ranges) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

const SPACE = rangesText(WHITE_SPACE);
const NOT_SPACE = rangesText(complement(WHITE_SPACE));
/** JavaScript's `.` without the `s` flag: anything but a line terminator. */
const DOT = `[^${hex(0x0a)}${hex(0x0d)}${hex(0x2028)}${hex(0x2029)}]`;
const ANYTHING = `${hex(0)}-${hex(MAX_CODE_POINT)}`;

/** Property names JavaScript writes as `Name=Value` and RE2 as the value alone. */
const PROPERTY_PREFIXES = /^(?:Script|sc|General_Category|gc)=/;

/**
 * A pattern valid in JavaScript with the `u` flag, as RE2 syntax that matches the same texts.
 * Constructs RE2 lacks (lookaround, backreferences, `Script_Extensions`) are left as they are,
 * for RE2 to refuse.
 */
export function toRe2Syntax(pattern: string): string {
  let out = "";
  for (let i = 0; i < pattern.length;) {
    const c = pattern[i] as string;
    if (c === "\\") {
      const [text, length] = escapeAt(pattern, i, false);
      out += text;
      i += length;
    } else if (c === "[") {
      const [text, length] = classAt(pattern, i);
      out += text;
      i += length;
    } else {
      out += c === "." ? DOT : c;
      i++;
    }
  }
  return out;
}

/** The bracket class starting at `at`, as RE2 syntax, and its length in the pattern. */
function classAt(pattern: string, at: number): [string, number] {
  let i = at + 1;
  const negated = pattern[i] === "^";
  if (negated) i++;
  // `[]` matches nothing and `[^]` anything; RE2 has no empty class.
  if (pattern[i] === "]") return [negated ? `[${ANYTHING}]` : `[^${ANYTHING}]`, i + 1 - at];
  let body = "";
  while (i < pattern.length && pattern[i] !== "]") {
    const c = pattern[i] as string;
    if (c === "\\") {
      const [text, length] = escapeAt(pattern, i, true);
      body += text;
      i += length;
    } else {
      // `[` is a plain character in a JavaScript class; RE2 reads `[:` as a POSIX class.
      body += c === "[" ? "\\[" : c;
      i++;
    }
  }
  return [`[${negated ? "^" : ""}${body}]`, i + 1 - at];
}

/** The escape starting at `at` (a backslash), as RE2 syntax, and its length in the pattern. */
function escapeAt(pattern: string, at: number, inClass: boolean): [string, number] {
  const c = pattern[at + 1] as string;
  switch (c) {
    case "s":
      return [inClass ? SPACE : `[${SPACE}]`, 2];
    case "S":
      return [inClass ? NOT_SPACE : `[^${SPACE}]`, 2];
    case "b":
      // In a class, a backspace.
      return [inClass ? hex(8) : "\\b", 2];
    case "t":
      return [hex(9), 2];
    case "n":
      return [hex(10), 2];
    case "v":
      return [hex(11), 2];
    case "f":
      return [hex(12), 2];
    case "r":
      return [hex(13), 2];
    case "0":
      return [hex(0), 2];
    case "c":
      return [hex(pattern.charCodeAt(at + 2) % 32), 3];
    case "x":
      return [hex(parseInt(pattern.slice(at + 2, at + 4), 16)), 4];
    case "u": {
      if (pattern[at + 2] === "{") {
        const end = pattern.indexOf("}", at + 3);
        return [hex(parseInt(pattern.slice(at + 3, end), 16)), end + 1 - at];
      }
      const unit = parseInt(pattern.slice(at + 2, at + 6), 16);
      // A surrogate pair written as two escapes is one code point with the `u` flag.
      const low = /^\\u(d[c-f][0-9a-f]{2})/i.exec(pattern.slice(at + 6));
      if (unit >= 0xd800 && unit <= 0xdbff && low) {
        const cp = 0x10000 + ((unit - 0xd800) << 10) + (parseInt(low[1] as string, 16) - 0xdc00);
        return [hex(cp), 12];
      }
      return [hex(unit), 6];
    }
    case "p":
    case "P": {
      const end = pattern.indexOf("}", at + 3);
      const name = pattern.slice(at + 3, end).replace(PROPERTY_PREFIXES, "");
      return [`\\${c}{${name}}`, end + 1 - at];
    }
    default:
      // \d \D \w \W \B, an escaped syntax character, or what RE2 refuses (\1, \k<name>).
      return [`\\${c}`, 2];
  }
}

/**
 * Whether V8's backtracking engine can run `pattern` in bounded time: short, no alternation,
 * and no quantifier or one quantifier in a pattern anchored at its start.
 */
export function backtrackingIsBounded(pattern: string): boolean {
  if (pattern.length > MAX_BACKTRACKING_PATTERN_LENGTH) return false;
  let quantifiers = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "\\") {
      i++;
    } else if (inClass) {
      if (c === "]") inClass = false;
    } else if (c === "[") {
      inClass = true;
    } else if (c === "|") {
      return false;
    } else if (c === "(" && pattern[i + 1] === "?") {
      i++; // a group's `?:`, `?=`, `?<name>`: not a quantifier
    } else if (c === "*" || c === "+" || c === "?" || c === "{") {
      quantifiers++;
      if (c === "{") i = pattern.indexOf("}", i);
      if (pattern[i + 1] === "?") i++; // lazy: the same quantifier
    }
  }
  return quantifiers === 0 || (quantifiers === 1 && pattern.startsWith("^"));
}

/**
 * Compiles a pattern known to be valid JavaScript (with FILTER_REGEX_FLAGS) for the engine its
 * shape calls for. Throws Error with RE2's reason when the pattern needs RE2 and RE2 cannot run
 * it; `stored`: use V8's engine then instead (a pattern accepted before this check existed, in
 * a persistent group's stored settings).
 */
export function compileFilterPattern(pattern: string, stored = false): FilterPattern {
  if (backtrackingIsBounded(pattern)) return new RegExp(pattern, FILTER_REGEX_FLAGS);
  try {
    return RE2JS.compile(toRe2Syntax(pattern));
  } catch (err) {
    if (stored) return new RegExp(pattern, FILTER_REGEX_FLAGS);
    throw new Error((err as Error).message.replace(/^error parsing regexp: /, ""));
  }
}
