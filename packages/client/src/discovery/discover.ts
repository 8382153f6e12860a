import { DiscoveryError, type DiscoveryCause } from "../errors.js";
import { backoffDelayMs } from "../connection/backoff.js";
import { formatEndpoint } from "../settings/endpoint.js";
import type { Endpoint, Logger, MemberInfo, Random, Timers } from "../types.js";
import { sleep } from "../util/timers.js";
import type { GossipReader } from "./gossip.js";
import { shuffle } from "./shuffle.js";

export interface GossipRoundResult {
  /** The merged view of every seed that answered. */
  readonly members: MemberInfo[];
  readonly failures: DiscoveryCause[];
}

/**
 * Asks every candidate for gossip in parallel (in a random order, so no seed is favoured
 * when a round is cut short), each with its own timeout, and merges the answers.
 */
export async function gossipRound(
  reader: GossipReader,
  candidates: readonly Endpoint[],
  options: { timeoutMs: number; random: Random; signal?: AbortSignal },
): Promise<GossipRoundResult> {
  const order = shuffle(candidates, options.random);
  const results = await Promise.allSettled(
    order.map((seed) =>
      reader.read(seed, {
        timeoutMs: options.timeoutMs,
        ...(options.signal && { signal: options.signal }),
      }),
    ),
  );
  const views: MemberInfo[][] = [];
  const failures: DiscoveryCause[] = [];
  results.forEach((r, i) => {
    if (r.status === "fulfilled") views.push(r.value);
    else
      failures.push({
        seed: formatEndpoint(order[i]!),
        error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)),
      });
  });
  return { members: mergeViews(views), failures };
}

/** One entry per instanceId: the one from the highest epoch, then the latest timestamp. */
export function mergeViews(views: readonly (readonly MemberInfo[])[]): MemberInfo[] {
  const byId = new Map<string, MemberInfo>();
  for (const view of views) {
    for (const m of view) {
      const known = byId.get(m.instanceId);
      if (
        !known ||
        m.epochNumber > known.epochNumber ||
        (m.epochNumber === known.epochNumber && m.timestamp > known.timestamp)
      ) {
        byId.set(m.instanceId, m);
      }
    }
  }
  return [...byId.values()];
}

export interface DiscoverOptions {
  reader: GossipReader;
  /** Gossip endpoints to ask in a round; called again before every round. */
  candidates: () => Promise<{ endpoints: Endpoint[]; failures: DiscoveryCause[] }>;
  /** Picks the node from a merged view; undefined: nobody suitable in this round. */
  select: (members: MemberInfo[]) => MemberInfo | undefined;
  maxAttempts: number;
  delayMs: number;
  maxDelayMs: number;
  gossipTimeoutMs: number;
  random: Random;
  timers: Timers;
  logger: Logger;
  signal?: AbortSignal;
  /** With partitions: the group being discovered, named in the error. */
  partition?: string;
  /** Told after each round that found no node (not after the last: its failure is thrown). */
  onFailedRound?: (attempt: number, causes: readonly DiscoveryCause[]) => void;
  /** Told about every view that was received, e.g. to update the member pool. */
  onMembers?: (members: MemberInfo[]) => void;
}

/**
 * Runs up to maxAttempts gossip rounds with a backoff between them, until one yields a
 * suitable node. Throws DiscoveryError with each seed's failure of the last round.
 */
export async function discover(
  options: DiscoverOptions,
): Promise<{ node: MemberInfo; members: MemberInfo[] }> {
  let causes: DiscoveryCause[] = [];
  for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
    if (attempt > 1) {
      await sleep(
        options.timers,
        backoffDelayMs(attempt - 1, options.delayMs, options.maxDelayMs, options.random),
        options.signal,
      );
    }
    options.signal?.throwIfAborted();
    const { endpoints, failures: resolveFailures } = await options.candidates();
    const round = await gossipRound(options.reader, endpoints, {
      timeoutMs: options.gossipTimeoutMs,
      random: options.random,
      ...(options.signal && { signal: options.signal }),
    });
    options.signal?.throwIfAborted();
    if (round.members.length > 0) options.onMembers?.(round.members);
    const node = options.select(round.members);
    if (node) return { node, members: round.members };
    causes = [...resolveFailures, ...round.failures];
    if (round.members.length > 0) {
      causes.push({
        seed: "gossip",
        error: new Error(
          `no suitable member among ${round.members.map((m) => `${m.instanceId}:${m.state}${m.isAlive ? "" : "(dead)"}`).join(", ")}`,
        ),
      });
    }
    options.logger.debug("discovery round found no node", {
      attempt,
      causes: causes.map((c) => `${c.seed}: ${c.error.message}`),
    });
    if (attempt < options.maxAttempts) options.onFailedRound?.(attempt, causes);
  }
  throw new DiscoveryError(
    `${options.partition === undefined ? "" : `partition ${options.partition}: `}no node found after ${options.maxAttempts} discovery attempt(s)`,
    causes,
  );
}
