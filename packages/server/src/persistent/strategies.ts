/**
 * Consumer strategies: which consumer of a group gets an event. Pure functions over the
 * consumers that are connected, in the order they joined.
 */
import { fmix32 } from "../streams/hash.js";

/** FNV-1a over UTF-16 code units, then a final avalanche (murmur3's fmix32). */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/**
 * Rendezvous (highest-random-weight) hashing: the consumer whose id scores highest with the
 * stream owns it (`hashKey`: a stable name, so a consumer that joins again gets its streams
 * back). When a consumer joins, only the streams it now wins move to it; when one
 * leaves, only its streams move. Ties (practically impossible) go to the earlier id.
 */
export function pinnedOwner<C extends { readonly hashKey: string }>(
  streamId: string,
  consumers: readonly C[],
): C | undefined {
  let best: C | undefined;
  let bestScore = -1;
  for (const c of consumers) {
    const score = hash32(`${streamId}\u0000${c.hashKey}`);
    if (
      score > bestScore ||
      (score === bestScore && best !== undefined && c.hashKey < best.hashKey)
    ) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/**
 * RoundRobin: the next consumer after `last` (in join order) that has free buffer space.
 * Returns its index, or -1 when none has room.
 */
export function nextRoundRobin(free: readonly number[], last: number): number {
  const n = free.length;
  for (let step = 1; step <= n; step++) {
    const i = (last + step) % n;
    if ((free[i] ?? 0) > 0) return i;
  }
  return -1;
}

/** DispatchToSingle: the first consumer (in join order) with free buffer space, or -1. */
export function firstWithRoom(free: readonly number[]): number {
  return free.findIndex((f) => f > 0);
}
