/**
 * Which replication group owns a stream, for partitioned deployments.
 *
 * Shared by the client (to route) and the server (to refuse streams another group owns), so
 * both always give the same answer. The rules, which are part of the wire contract:
 *
 * 1. The **partition key** of a stream id is the id itself, or, when the id holds `{...}`
 *    with at least one character inside, the text inside the first such braces:
 *    `tenant{42}-order-7` and `tenant{42}-cart-1` both have the key `42`. Braces with
 *    nothing inside (`a{}b`) or a `{` with no `}` after it count as plain text.
 * 2. A metadata stream `$$name` has the key of `name`, so a stream's metadata always lives
 *    with the stream (`$$$$name`, the metadata of `$$name`, too). Every other stream, system
 *    streams (`$...`) included, follows rule 1.
 * 3. The owner is the group with the highest weight, where
 *    `weight(group, key) = fmix64(fnv1a64(utf8(group + "\u0000" + key)))`:
 *    64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the UTF-8
 *    bytes (a lone surrogate encodes as U+FFFD, like `TextEncoder`), then the 64-bit
 *    finalizer of MurmurHash3 (`k ^= k >>> 33; k *= 0xff51afd7ed558ccd; k ^= k >>> 33;
 *    k *= 0xc4ceb9fe1a85ec53; k ^= k >>> 33`), compared as unsigned 64-bit integers. Equal
 *    weights (never seen in practice) go to the group whose name sorts first.
 *
 * This is rendezvous (highest random weight) hashing: the owner of a key depends only on the
 * set of group names, not on their order, and adding a group moves only the streams whose
 * key the new group wins; removing a group moves only that group's streams.
 */

/** A group name: 1 to 32 characters of `a-z`, `0-9` and `-`. */
export const PARTITION_NAME_PATTERN = /^[a-z0-9-]{1,32}$/;

/** Returns null when `name` is a valid group name, otherwise a sentence saying why not. */
export function partitionNameProblem(name: unknown): string | null {
  if (typeof name !== "string") return "a partition name must be a string";
  if (!PARTITION_NAME_PATTERN.test(name)) {
    return `partition name ${JSON.stringify(name)} is not 1 to 32 characters of a-z, 0-9 and -`;
  }
  return null;
}

/** Returns null when `groups` is a valid list of group names, otherwise why not. */
export function partitionListProblem(groups: readonly unknown[]): string | null {
  if (groups.length === 0) return "the partition list is empty";
  const seen = new Set<string>();
  for (const group of groups) {
    const problem = partitionNameProblem(group);
    if (problem !== null) return problem;
    if (seen.has(group as string)) return `partition ${JSON.stringify(group)} is listed twice`;
    seen.add(group as string);
  }
  return null;
}

/** The partition key of a stream id (see the rules at the top of this file). */
export function partitionKeyOf(streamId: string): string {
  // Rule 2 holds for `name` too: the metadata of a metadata stream (`$$$$name`) goes with it.
  let id = streamId;
  while (id.startsWith("$$") && id.length > 2) id = id.slice(2);
  const open = id.indexOf("{");
  if (open < 0) return id;
  const close = id.indexOf("}", open + 1);
  if (close <= open + 1) return id;
  return id.slice(open + 1, close);
}

/**
 * The group that owns `streamId` among `groups`. Throws a `RangeError` when `groups` is
 * empty. The group names are not checked here (see `partitionListProblem`).
 */
export function partitionOf(streamId: string, groups: readonly string[]): string {
  if (groups.length === 0) throw new RangeError("partitionOf needs at least one group");
  if (groups.length === 1) return groups[0]!;
  const key = partitionKeyOf(streamId);
  let best = groups[0]!;
  let bestHi = -1;
  let bestLo = -1;
  for (const group of groups) {
    weightInto(group, key);
    const hi = out[0]!;
    const lo = out[1]!;
    if (hi > bestHi || (hi === bestHi && (lo > bestLo || (lo === bestLo && group < best)))) {
      best = group;
      bestHi = hi;
      bestLo = lo;
    }
  }
  return best;
}

/**
 * The weight of `key` for `group` as an unsigned 64-bit integer: the number compared by
 * `partitionOf`. Exposed for tools and tests; routing needs only `partitionOf`.
 */
export function partitionWeight(group: string, key: string): bigint {
  weightInto(group, key);
  return (BigInt(out[0]!) << 32n) | BigInt(out[1]!);
}

// ---------------------------------------------------------------- 64-bit arithmetic
//
// 64-bit values are kept as two unsigned 32-bit halves (hi, lo) in plain numbers: far
// cheaper than BigInt on the routing path of every operation.

const TWO_32 = 0x1_0000_0000;
const FNV_OFFSET_HI = 0xcbf29ce4;
const FNV_OFFSET_LO = 0x84222325;
const FMIX_C1_HI = 0xff51afd7;
const FMIX_C1_LO = 0xed558ccd;
const FMIX_C2_HI = 0xc4ceb9fe;
const FMIX_C2_LO = 0x1a85ec53;

/** Scratch output [hi, lo] of the functions below (JavaScript is single-threaded). */
const out = new Uint32Array(2);

/** out = (aHi, aLo) * (bHi, bLo) mod 2^64. */
function mul64(aHi: number, aLo: number, bHi: number, bLo: number): void {
  const a0 = aLo & 0xffff;
  const a1 = aLo >>> 16;
  const b0 = bLo & 0xffff;
  const b1 = bLo >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33
  const low = a0 * b0 + (mid % 0x10000) * 0x10000; // < 2^33
  const carry = Math.floor(low / TWO_32);
  const high =
    a1 * b1 + Math.floor(mid / 0x10000) + carry + Math.imul(aHi, bLo) + Math.imul(aLo, bHi);
  out[0] = high >>> 0;
  out[1] = low >>> 0;
}

/** One FNV-1a step: (hi, lo) = ((hi, lo) ^ byte) * 0x100000001b3 mod 2^64, into out. */
function fnvStep(hi: number, lo: number, byte: number): void {
  const x = (lo ^ byte) >>> 0;
  const product = x * 0x1b3; // < 2^41, exact
  out[1] = product >>> 0;
  out[0] = Math.imul(hi, 0x1b3) + Math.floor(product / TWO_32) + (x << 8);
}

/** FNV-1a state after `group + "\u0000"`, per group name (few names, so a small cache). */
const prefixStates = new Map<string, readonly [number, number]>();
const MAX_CACHED_PREFIXES = 1024;

function fnvOver(hi: number, lo: number, text: string): void {
  out[0] = hi;
  out[1] = lo;
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      fnvStep(out[0], out[1], code);
      continue;
    }
    if (code < 0x800) {
      fnvStep(out[0], out[1], 0xc0 | (code >> 6));
      fnvStep(out[0], out[1], 0x80 | (code & 0x3f));
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        i++;
        fnvStep(out[0], out[1], 0xf0 | (code >> 18));
        fnvStep(out[0], out[1], 0x80 | ((code >> 12) & 0x3f));
        fnvStep(out[0], out[1], 0x80 | ((code >> 6) & 0x3f));
        fnvStep(out[0], out[1], 0x80 | (code & 0x3f));
        continue;
      }
      code = 0xfffd; // a lone surrogate, as TextEncoder encodes it
    }
    fnvStep(out[0], out[1], 0xe0 | (code >> 12));
    fnvStep(out[0], out[1], 0x80 | ((code >> 6) & 0x3f));
    fnvStep(out[0], out[1], 0x80 | (code & 0x3f));
  }
}

function prefixState(group: string): readonly [number, number] {
  let state = prefixStates.get(group);
  if (state === undefined) {
    fnvOver(FNV_OFFSET_HI, FNV_OFFSET_LO, group);
    fnvStep(out[0]!, out[1]!, 0);
    state = [out[0]!, out[1]!];
    if (prefixStates.size >= MAX_CACHED_PREFIXES) prefixStates.clear();
    prefixStates.set(group, state);
  }
  return state;
}

/** out = fmix64(fnv1a64(utf8(group + "\u0000" + key))). */
function weightInto(group: string, key: string): void {
  const [hi0, lo0] = prefixState(group);
  fnvOver(hi0, lo0, key);
  let hi = out[0]!;
  let lo = out[1]!;
  // k ^= k >>> 33
  lo = (lo ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, FMIX_C1_HI, FMIX_C1_LO);
  hi = out[0]!;
  lo = (out[1]! ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, FMIX_C2_HI, FMIX_C2_LO);
  hi = out[0]!;
  lo = (out[1]! ^ (hi >>> 1)) >>> 0;
  out[0] = hi;
  out[1] = lo;
}
