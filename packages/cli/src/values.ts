/**
 * Parsers of flag values. Each throws commander's InvalidArgumentError, which commander turns
 * into a usage error naming the flag (exit code 2).
 */
import { isUuid } from "@chorus/protocol";
import type { ExpectedVersion } from "@chorus/client";
import { InvalidArgumentError } from "commander";
import { RawJson } from "./records.js";

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

/**
 * JSON text, checked and kept as it is: an event stores what was typed (JSON.parse would change
 * an integer beyond 2^53, and the spelling of numbers and strings).
 */
export function json(text: string): RawJson {
  try {
    JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`expected JSON (${(err as Error).message})`);
  }
  return new RawJson(text);
}
