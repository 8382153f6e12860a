/**
 * Where the values of `data` and `metadata` stand in a JSON text: events are stored with the
 * text their writer sent, not with what JSON.parse and JSON.stringify make of it. That round
 * trip changes data: integers beyond 2^53 (1234567890123456789, a 64-bit id from another
 * language, became 1234567890123456800), and the spelling of numbers and strings (1.10,
 * "\u00e9"). Used by the node's HTTP appends (an array of events) and by the CLI's import
 * (one event per line).
 *
 * The text must already have been parsed by JSON.parse: the scanner checks next to nothing and
 * only finds where values begin and end.
 */

/** Character offsets [start, end) in the text. */
export type Span = readonly [number, number];

export interface EventSpans {
  data?: Span;
  metadata?: Span;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Text that JSON.parse would have refused: the caller broke its contract. */
function notJson(what: string, at: number): Error {
  return new Error(`internal: ${what} at ${at} of a text that was to be valid JSON`);
}

/** The end of the string that starts (with its quote) at `i`. */
function skipString(text: string, i: number): number {
  const start = i;
  i++;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    i += c === BACKSLASH ? 2 : 1;
  }
  throw notJson("an unterminated string", start);
}

/** The end of the value that starts at `i`. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    const start = i;
    let depth = 0;
    while (i < text.length) {
      const d = text.charCodeAt(i);
      if (d === QUOTE) {
        i = skipString(text, i);
        continue;
      }
      if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    throw notJson("an unterminated object or array", start);
  }
  // A number, true, false or null: up to the next delimiter.
  while (i < text.length) {
    const d = text.charCodeAt(i);
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isSpace(d)) break;
    i++;
  }
  return i;
}

/** A member of a JSON object: its key (unescaped) and where its value stands. */
export interface ObjectMember {
  readonly key: string;
  readonly value: Span;
}

/** The object starting at `i` (its "{"): each member in order to `member`; where it ends. */
function scanMembers(text: string, i: number, member: (key: string, value: Span) => void): number {
  i = skipSpace(text, i + 1);
  while (text.charCodeAt(i) !== CLOSE_BRACE) {
    if (i >= text.length) throw notJson("an unterminated object", i);
    const keyStart = i;
    i = skipString(text, i);
    const raw = text.slice(keyStart + 1, i - 1);
    const key = raw.includes("\\") ? (JSON.parse(text.slice(keyStart, i)) as string) : raw;
    i = skipSpace(text, i);
    if (text.charCodeAt(i) !== COLON) throw notJson('no ":" after a key', i);
    i = skipSpace(text, i + 1);
    const valueStart = i;
    i = skipValue(text, i);
    member(key, [valueStart, i]);
    i = skipSpace(text, i);
    if (text.charCodeAt(i) === COMMA) i = skipSpace(text, i + 1);
  }
  return i + 1;
}

/**
 * The object starting at `i` (its "{"): the spans of its `data` and `metadata` values into
 * `spans` (the last of repeated keys, as JSON.parse keeps it); where it ends.
 */
function scanObject(text: string, i: number, spans: EventSpans): number {
  return scanMembers(text, i, (key, value) => {
    if (key === "data") spans.data = value;
    else if (key === "metadata") spans.metadata = value;
  });
}

/**
 * For each element of the top-level array in `text` (valid JSON), the spans of its `data` and
 * `metadata` values; none for an element that is not an object, or a text that is not an
 * array.
 */
export function eventValueSpans(text: string): EventSpans[] {
  const out: EventSpans[] = [];
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_BRACKET) return out;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === CLOSE_BRACKET) return out;
  for (;;) {
    const spans: EventSpans = {};
    i = text.charCodeAt(i) === OPEN_BRACE ? scanObject(text, i, spans) : skipValue(text, i);
    out.push(spans);
    i = skipSpace(text, i);
    if (text.charCodeAt(i) !== COMMA) return out;
    i = skipSpace(text, i + 1);
  }
}

/** The spans of `data` and `metadata` in the object that `text` (valid JSON) is; none if not one. */
export function objectValueSpans(text: string): EventSpans {
  const spans: EventSpans = {};
  const i = skipSpace(text, 0);
  if (text.charCodeAt(i) === OPEN_BRACE) scanObject(text, i, spans);
  return spans;
}

/**
 * The members of the object that `text` (valid JSON) is, in order (repeated keys each time);
 * none if it is not an object.
 */
export function objectMembers(text: string): ObjectMember[] {
  const members: ObjectMember[] = [];
  const i = skipSpace(text, 0);
  if (text.charCodeAt(i) === OPEN_BRACE)
    scanMembers(text, i, (key, value) => members.push({ key, value }));
  return members;
}
