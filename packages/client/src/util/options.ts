/**
 * The one check of every options object the public API takes: a key the call does not know
 * is refused (InvalidArgumentError naming the key and the call), never silently dropped.
 */
import { InvalidArgumentError } from "../errors.js";
import { describe } from "./describe.js";

/**
 * The keys of an options type, checked at compile time: every key of `T` must be listed and
 * nothing else, so the runtime list cannot drift from the type.
 */
export function optionKeys<T extends object>(keys: {
  readonly [K in keyof Required<T> & string]: true;
}): readonly string[] {
  return Object.freeze(Object.keys(keys).sort());
}

export interface CheckOptionsExtra {
  /** Where the object sits inside the options, e.g. "filter" (for messages). */
  readonly path?: string;
  /**
   * Keys the contract names but this client or server does not support yet, with why.
   * Refused with that reason rather than ignored.
   */
  readonly unsupported?: Readonly<Record<string, string>>;
  /** What one key is called in messages. Default "option". */
  readonly noun?: string;
}

/**
 * Throws InvalidArgumentError unless `options` is undefined or an object whose own keys are
 * all in `known`. The message names `where` (the call), the key, the known keys, and the
 * closest known key when the unknown one looks like a misspelling of it.
 */
export function checkOptions(
  where: string,
  options: unknown,
  known: readonly string[],
  extra: CheckOptionsExtra = {},
): void {
  if (options === undefined) return;
  const noun = extra.noun ?? "option";
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    const what = extra.path ? `${noun} "${extra.path}"` : `${noun}s`;
    throw new InvalidArgumentError(
      `${where}: ${what} must be an object, got ${Array.isArray(options) ? "an array" : describe(options)}`,
    );
  }
  for (const key in options) {
    // Own keys only (for...in without Object.keys' array: this runs on every operation).
    if (!Object.hasOwn(options, key) || known.includes(key)) continue;
    const prefix = extra.path ? `${extra.path}.` : "";
    const reason =
      extra.unsupported && Object.hasOwn(extra.unsupported, key)
        ? extra.unsupported[key]
        : undefined;
    if (reason !== undefined) {
      throw new InvalidArgumentError(
        `${where}: ${noun} "${prefix}${key}" is not supported yet: ${reason}`,
      );
    }
    const suggestion = closestKey(key, known);
    throw new InvalidArgumentError(
      `${where}: unknown ${noun} "${prefix}${key}" (known: ${known.length > 0 ? known.join(", ") : "none"})` +
        (suggestion ? `; did you mean "${prefix}${suggestion}"?` : ""),
    );
  }
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps) between two strings. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0]!.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]!.push(d);
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The known key `key` is most likely a misspelling of (case ignored), or undefined when none
 * is close: at most 2 edits, or a quarter of the key's length for long keys.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const limit = Math.max(2, Math.floor(key.length / 4));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d <= limit && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}
