/**
 * Who to gossip to this round (pure).
 *
 * Default: everyone — every known member's internal HTTP endpoint (alive, or dead but not yet
 * removed, so a healed partition is found again from both sides) plus every seed, minus this
 * node's own endpoints. Clusters are 3–7 nodes, so full fan-out costs n·(n-1) small requests per
 * interval and converges in one round. With `fanout` k, a uniform random subset of k targets is
 * taken with the injected `random` (for large clusters; seeds are not favoured).
 */
import type { Endpoint } from "../../node-types.js";
import { endpointKey } from "./wire.js";
import type { MemberEntry } from "./membership.js";

export interface TargetInput {
  readonly members: readonly MemberEntry[];
  readonly seeds: readonly Endpoint[];
  /** Endpoint keys (`host:port`) that are this node. */
  readonly selfKeys: ReadonlySet<string>;
  /** Maximum targets per round; `Infinity` for all. */
  readonly fanout: number;
  /** Uniform in [0, 1). */
  readonly random: () => number;
}

export function gossipTargets(input: TargetInput): Endpoint[] {
  const byKey = new Map<string, Endpoint>();
  const add = (ep: Endpoint): void => {
    if (ep.port === 0) return; // not bound yet / unknown
    const key = endpointKey(ep);
    if (!input.selfKeys.has(key) && !byKey.has(key)) byKey.set(key, ep);
  };
  for (const m of input.members) if (m.isAlive) add(m.record.internalHttp);
  for (const s of input.seeds) add(s);
  for (const m of input.members) if (!m.isAlive) add(m.record.internalHttp);
  const all = [...byKey.values()];
  if (!(input.fanout < all.length)) return all;
  const k = Math.max(0, Math.floor(input.fanout));
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(input.random() * (all.length - i));
    const a = all[i];
    const b = all[j];
    if (a === undefined || b === undefined) break;
    all[i] = b;
    all[j] = a;
  }
  return all.slice(0, k);
}
