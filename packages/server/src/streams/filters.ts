/**
 * Filters of `$all` reads and subscriptions. System streams (`$`-prefixed: `$$name` metadata
 * streams, `$persistent-…` and the like) are left out unless asked for.
 *
 * A filter is compiled once (per read request or subscription) into a predicate that runs
 * next to the log, so only matching events travel. Regular expressions run on the node's
 * event loop, each on an engine that cannot take long over a name or type (filter-regex.ts).
 */
import { isSystemStream } from "@chorus/protocol";
import {
  compileFilterPattern,
  FILTER_REGEX_FLAGS,
  MAX_BACKTRACKING_PATTERN_LENGTH,
  type FilterPattern,
} from "./filter-regex.js";
import type { StoredEvent } from "./types.js";

export { isSystemStream };

/** Longest regular expression a filter accepts, in UTF-16 code units. */
export const MAX_FILTER_PATTERN_LENGTH = 1_000;
/** Most prefixes (stream and type together) a filter accepts. */
export const MAX_FILTER_PREFIXES = 1_000;

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
 * Compiles a filter field's pattern, or throws FilterError naming the field and the cause:
 * empty, too long, not a valid regular expression (with FILTER_REGEX_FLAGS), or a pattern that
 * must run on the linear-time engine (filter-regex.ts) and uses what that engine cannot run.
 */
function compile(field: string, pattern: string, stored: boolean): FilterPattern {
  if (pattern.length === 0) throw new FilterError(`${field} must not be empty`);
  if (pattern.length > MAX_FILTER_PATTERN_LENGTH) {
    throw new FilterError(
      `${field} is ${pattern.length} characters long; at most ${MAX_FILTER_PATTERN_LENGTH} are accepted`,
    );
  }
  try {
    new RegExp(pattern, FILTER_REGEX_FLAGS);
  } catch (err) {
    throw new FilterError(`${field} is not a valid regular expression: ${(err as Error).message}`);
  }
  try {
    return compileFilterPattern(pattern, stored);
  } catch (err) {
    throw new FilterError(
      `${field} runs on a linear-time engine (a backtracking one can take exponential time over a pattern with "|" or several quantifiers), which cannot run it: ${(err as Error).message}; lookaround and backreferences work only in patterns of at most ${MAX_BACKTRACKING_PATTERN_LENGTH} characters without "|" and with no quantifier, or one after a leading "^"`,
    );
  }
}

/**
 * Checks and compiles a filter into its predicate: an event passes when its stream is not a
 * system stream (unless `includeSystem`), its stream name starts with one of the stream
 * prefixes (if any) or matches the stream regex (if any), and its type likewise. Prefixes and
 * a regex on the same field are refused (FilterError): ask for one or the other. `stored`: a
 * persistent group's filter as stored, compiled as it was when the group was made
 * (compileFilterPattern).
 */
export function eventFilter(
  filter: EventFilter,
  stored = false,
): (e: Pick<StoredEvent, "streamId" | "type">) => boolean {
  const streams = [...(filter.streamNamePrefixes ?? [])];
  const types = [...(filter.eventTypePrefixes ?? [])];
  if (streams.length + types.length > MAX_FILTER_PREFIXES) {
    throw new FilterError(`a filter may hold at most ${MAX_FILTER_PREFIXES} prefixes`);
  }
  const streamRe = regexOf(
    "streamNameRegex",
    filter.streamNameRegex,
    "streamNamePrefix",
    streams,
    stored,
  );
  const typeRe = regexOf("eventTypeRegex", filter.eventTypeRegex, "eventTypePrefix", types, stored);
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
  stored: boolean,
): FilterPattern | undefined {
  if (pattern === undefined || pattern === "") return undefined;
  if (prefixes.length > 0) {
    throw new FilterError(
      `a filter takes ${prefixField} or ${field}, not both (for both conditions, write them into the regular expression)`,
    );
  }
  // No "g" or "y" flag: test() then keeps no state between events.
  return compile(field, pattern, stored);
}
