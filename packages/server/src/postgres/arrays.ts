/**
 * PostgreSQL array literals (`{...}`, the text input of `int8[]`, `uuid[]`, `text[]`,
 * `bytea[]`, `bool[]`) built directly for the batch statements. The driver's generic array
 * serialiser quotes every element and runs two escaping regular expressions over it (over the
 * whole hex text of every bytea, after copying the bytes); these builders quote only what
 * needs it. A literal is passed as an untyped parameter and cast in the SQL (`$1::bytea[]`),
 * so the server parses it exactly as it parses the driver's own.
 */

/** Integers (positions, revisions, versions: safe integers) as an array literal. */
export function intArray(xs: readonly number[]): string {
  return `{${xs.join(",")}}`;
}

/** Canonical UUID text as an array literal (hex digits and dashes need no quotes). */
export function uuidArray(ids: readonly string[]): string {
  return `{${ids.join(",")}}`;
}

export function boolArray(xs: readonly boolean[]): string {
  let out = "{";
  for (let i = 0; i < xs.length; i++) out += (i === 0 ? "" : ",") + (xs[i] === true ? "t" : "f");
  return out + "}";
}

const NEEDS_ESCAPE = /[\\"]/;
const ESCAPES = /[\\"]/g;

/**
 * Strings (never null, never holding NUL) as an array literal: every element quoted (so that
 * an empty string, `NULL`, braces, commas and spaces stay text), `\` and `"` escaped.
 */
export function textArray(xs: readonly string[]): string {
  let out = "{";
  for (let i = 0; i < xs.length; i++) {
    const s = xs[i] as string;
    out += `${i === 0 ? "" : ","}"${NEEDS_ESCAPE.test(s) ? s.replace(ESCAPES, "\\$&") : s}"`;
  }
  return out + "}";
}

/** Byte strings as an array literal of bytea hex input (`"\\x0a0b"`, the backslash escaped). */
export function byteaArray(xs: readonly Uint8Array[]): string {
  let out = "{";
  for (let i = 0; i < xs.length; i++) {
    const b = xs[i] as Uint8Array;
    const hex = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
    out += `${i === 0 ? "" : ","}"\\\\x${hex}"`;
  }
  return out + "}";
}
