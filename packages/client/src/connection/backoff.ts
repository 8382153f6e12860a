import type { Random } from "../types.js";

/**
 * Capped exponential backoff with "equal jitter": the nth attempt (from 1) waits between
 * half and all of min(maxMs, baseMs * 2^(n-1)). Pure: randomness comes from `random`.
 */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: Random,
): number {
  if (baseMs <= 0) return 0;
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const ceiling = Math.min(maxMs, baseMs * 2 ** exponent);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + (r * ceiling) / 2);
}
