import { chorus } from "@chorus/protocol";
import { InvalidArgumentError } from "../errors.js";
import type { ExpectedVersion } from "../types.js";

const Kind = chorus.ExpectedVersion.Kind;
const MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Validates an ExpectedVersion and returns it normalized (numbers become bigints). */
export function normalizeExpectedVersion(value: unknown): ExpectedVersion {
  if (value === "any" || value === "no_stream" || value === "stream_exists") return value;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new InvalidArgumentError(
        `expected version must be a non-negative integer revision, got ${value}`,
      );
    }
    return BigInt(value);
  }
  if (typeof value === "bigint") {
    if (value < 0n || value > MAX) {
      throw new InvalidArgumentError(
        `expected version must be a revision in 0..2^53-1, got ${value}`,
      );
    }
    return value;
  }
  throw new InvalidArgumentError(
    `expected version must be "any", "no_stream", "stream_exists" or a revision, got ${JSON.stringify(String(value))}`,
  );
}

// The wire forms of the named versions, made once (every append sends one).
const ANY_WIRE: chorus.IExpectedVersion = Object.freeze({ kind: Kind.ANY });
const NO_STREAM_WIRE: chorus.IExpectedVersion = Object.freeze({ kind: Kind.NO_STREAM });
const STREAM_EXISTS_WIRE: chorus.IExpectedVersion = Object.freeze({ kind: Kind.STREAM_EXISTS });

export function expectedVersionToWire(value: ExpectedVersion): chorus.IExpectedVersion {
  switch (value) {
    case "any":
      return ANY_WIRE;
    case "no_stream":
      return NO_STREAM_WIRE;
    case "stream_exists":
      return STREAM_EXISTS_WIRE;
    default:
      return { kind: Kind.EXACT, revision: Number(value) };
  }
}

/** Converts a bigint/number revision or position for the wire (exact below 2^53). */
export function toWireNumber(value: bigint | number, what: string): number {
  const n = typeof value === "bigint" ? Number(value) : value;
  if (
    !Number.isSafeInteger(n) ||
    n < 0 ||
    (typeof value === "bigint" && (value < 0n || value > MAX))
  ) {
    throw new InvalidArgumentError(`${what} must be an integer in 0..2^53-1, got ${String(value)}`);
  }
  return n;
}
