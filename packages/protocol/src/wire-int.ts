/**
 * 64-bit integer fields as the generated code decodes them: a number, or a Long (the `long`
 * package) when protobufjs has one. `Number(long)` and `BigInt(long)` go through the Long's
 * decimal text (a division per digit), which on a path taken once per event cost more than
 * the rest of the conversion; these read its two 32-bit halves.
 */
export type WireInt = number | { toNumber(): number; toString(): string };

/** The field as a number (exact below 2^53, as every position and revision is). */
export function wireNumber(value: WireInt | null | undefined): number {
  if (typeof value === "number") return value;
  return value === null || value === undefined ? 0 : value.toNumber();
}

/** The field as a bigint, exact over the whole 64-bit range. */
export function wireBigInt(value: WireInt | null | undefined): bigint {
  if (typeof value === "number") return BigInt(value);
  if (value === null || value === undefined) return 0n;
  const n = value.toNumber();
  return Number.isSafeInteger(n) ? BigInt(n) : BigInt(value.toString());
}
