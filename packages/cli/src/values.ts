/**
 * Parsers of flag values. Each throws commander's InvalidArgumentError, which commander turns
 * into a usage error naming the flag (exit code 2).
 */
import { isUuid } from "@chorus/protocol";
import type { ExpectedVersion } from "@chorus/client";
import { InvalidArgumentError } from "commander";

const INTEGER = /^(0|[1-9][0-9]*)$/;

export function nonNegativeInteger(text: string): number {
  if (!INTEGER.test(text) || !Number.isSafeInteger(Number(text)))
    throw new InvalidArgumentError("expected a non-negative integer");
  return Number(text);
}

export function positiveInteger(text: string): number {
  const n = nonNegativeInteger(text);
  if (n === 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

/** A revision or position: a non-negative integer of any size. */
export function bigNumber(text: string): bigint {
  if (!INTEGER.test(text)) throw new InvalidArgumentError("expected a non-negative integer");
  return BigInt(text);
}

/** "start", "end" or a revision / position. */
export function startOrEndOrNumber(text: string): "start" | "end" | bigint {
  if (text === "start" || text === "end") return text;
  if (!INTEGER.test(text))
    throw new InvalidArgumentError('expected "start", "end" or a non-negative integer');
  return BigInt(text);
}

export function expectedVersion(text: string): ExpectedVersion {
  if (text === "any" || text === "no_stream" || text === "stream_exists") return text;
  if (!INTEGER.test(text))
    throw new InvalidArgumentError(
      'expected "any", "no_stream", "stream_exists" or a revision (a non-negative integer)',
    );
  return BigInt(text);
}

export function uuid(text: string): string {
  if (!isUuid(text)) throw new InvalidArgumentError("expected a UUID");
  return text;
}

/** JSON text, parsed. */
export function json(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(`expected JSON (${(err as Error).message})`);
  }
}
