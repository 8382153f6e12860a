/**
 * Filters of `$all` reads and subscriptions. System streams (`$`-prefixed: `$$name` metadata
 * streams, `$persistent-…` and the like) are left out unless asked for.
 *
 * A filter is compiled once (per read request or subscription) into a predicate that runs
 * next to the log, so only matching events travel. Regular expressions run on the node's
 * event loop: a pattern is bounded in length and refused when it nests unbounded quantifiers
 * (`(a+)+`, `(x*y)*`), the shape that makes a backtracking engine take exponential time.
 */
import { isSystemStream } from "@chorus/protocol";
import type { StoredEvent } from "./types.js";

export { isSystemStream };

/** Longest regular expression a filter accepts, in UTF-16 code units. */
export const MAX_FILTER_PATTERN_LENGTH = 1_000;
/** Most prefixes (stream and type together) a filter accepts. */
export const MAX_FILTER_PREFIXES = 1_000;
/** Flags every filter pattern is compiled with (client and server alike). */
export const FILTER_REGEX_FLAGS = "u";

export interface EventFilter {
  /** Keep events of streams whose name starts with one of these (all when empty or absent). */
  readonly streamNamePrefixes?: readonly string[];
  /** Keep events whose type starts with one of these (all when empty or absent). */
  readonly eventTypePrefixes?: readonly string[];
  /** Keep events of streams whose name matches (anywhere, unless anchored). Not with prefixes. */
  readonly streamNameRegex?: string;
  /** Keep events whose type matches (anywhere, unless anchored). Not with prefixes. */
  readonly eventTypeRegex?: string;
  /** Keep events of system streams too (default: left out). */
  readonly includeSystem?: boolean;
}

/** A filter that cannot be used; the message names the field and the cause. */
export class FilterError extends Error {
  override readonly name = "FilterError";
}

/**
 * Why `pattern` is refused as the filter field `field`, or null when it is usable: too long,
 * not a valid regular expression (with FILTER_REGEX_FLAGS), or nesting unbounded quantifiers.
 */
export function filterPatternProblem(field: string, pattern: string): string | null {
  if (pattern.length === 0) return `${field} must not be empty`;
  if (pattern.length > MAX_FILTER_PATTERN_LENGTH) {
    return `${field} is ${pattern.length} characters long; at most ${MAX_FILTER_PATTERN_LENGTH} are accepted`;
  }
  try {
    new RegExp(pattern, FILTER_REGEX_FLAGS);
  } catch (err) {
    return `${field} is not a valid regular expression: ${(err as Error).message}`;
  }
  const nested = nestedQuantifier(pattern);
  if (nested !== null) {
    return `${field} nests unbounded quantifiers (${JSON.stringify(nested)}), which can take exponential time; rewrite it without a repeated group that itself repeats`;
  }
  return null;
}

/**
 * The first group that holds an unbounded quantifier (`*`, `+`, `{n,}`) and is itself
 * quantified (by anything but `?` or `{0,1}`/`{1}`), e.g. `(a+)+`; null when there is none.
 * The pattern is known to compile. A heuristic: it catches the classic shapes, not every
 * pattern with super-linear backtracking (overlapping alternatives such as `(a|aa)+`).
 */
export function nestedQuantifier(pattern: string): string | null {
  // Per open group: where it starts, and whether it holds an unbounded quantifier.
  const stack: Array<{ start: number; unbounded: boolean }> = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") {
      i++; // the escaped character (escape sequences longer than that hold no quantifier)
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      continue;
    }
    if (c === "[") {
      inClass = true;
    } else if (c === "(") {
      stack.push({ start: i, unbounded: false });
    } else if (c === ")") {
      const group = stack.pop();
      if (group === undefined) continue; // cannot happen: the pattern compiles
      const q = quantifierAt(pattern, i + 1);
      if (group.unbounded && q.repeats) return pattern.slice(group.start, i + 1 + q.length);
      // The group repeats as a whole inside its parent when it holds or has an unbounded one.
      const parent = stack[stack.length - 1];
      if (parent && (group.unbounded || q.unbounded)) parent.unbounded = true;
      i += Math.max(0, q.length - 1);
    } else {
      const q = quantifierAt(pattern, i);
      if (q.length > 0) {
        const top = stack[stack.length - 1];
        if (top && q.unbounded) top.unbounded = true;
        i += q.length - 1;
      }
    }
  }
  return null;
}

/** The quantifier starting at `at` (length 0 when none, lazy/possessive `?` included). */
function quantifierAt(
  pattern: string,
  at: number,
): { length: number; unbounded: boolean; repeats: boolean } {
  const c = pattern[at];
  let length = 0;
  let unbounded = false;
  let repeats = false;
  if (c === "*" || c === "+") {
    length = 1;
    unbounded = repeats = true;
  } else if (c === "?") {
    length = 1;
  } else if (c === "{") {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(at));
    if (m) {
      length = m[0].length;
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
      unbounded = max === Infinity;
      repeats = max > 1;
    }
  }
  if (length > 0 && pattern[at + length] === "?") length++;
  return { length, unbounded, repeats };
}

/**
 * Checks and compiles a filter into its predicate: an event passes when its stream is not a
 * system stream (unless `includeSystem`), its stream name starts with one of the stream
 * prefixes (if any) or matches the stream regex (if any), and its type likewise. Prefixes and
 * a regex on the same field are refused (FilterError): ask for one or the other.
 */
export function eventFilter(
  filter: EventFilter,
): (e: Pick<StoredEvent, "streamId" | "type">) => boolean {
  const streams = [...(filter.streamNamePrefixes ?? [])];
  const types = [...(filter.eventTypePrefixes ?? [])];
  if (streams.length + types.length > MAX_FILTER_PREFIXES) {
    throw new FilterError(`a filter may hold at most ${MAX_FILTER_PREFIXES} prefixes`);
  }
  const streamRe = regexOf("streamNameRegex", filter.streamNameRegex, "streamNamePrefix", streams);
  const typeRe = regexOf("eventTypeRegex", filter.eventTypeRegex, "eventTypePrefix", types);
  const includeSystem = filter.includeSystem === true;
  return (e) =>
    (includeSystem || !isSystemStream(e.streamId)) &&
    (streamRe !== undefined
      ? streamRe.test(e.streamId)
      : streams.length === 0 || streams.some((p) => e.streamId.startsWith(p))) &&
    (typeRe !== undefined
      ? typeRe.test(e.type)
      : types.length === 0 || types.some((p) => e.type.startsWith(p)));
}

function regexOf(
  field: string,
  pattern: string | undefined,
  prefixField: string,
  prefixes: readonly string[],
): RegExp | undefined {
  if (pattern === undefined || pattern === "") return undefined;
  if (prefixes.length > 0) {
    throw new FilterError(
      `a filter takes ${prefixField} or ${field}, not both (for both conditions, write them into the regular expression)`,
    );
  }
  const problem = filterPatternProblem(field, pattern);
  if (problem !== null) throw new FilterError(problem);
  // No "g" or "y" flag: test() then keeps no state between events.
  return new RegExp(pattern, FILTER_REGEX_FLAGS);
}
