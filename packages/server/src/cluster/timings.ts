/**
 * The cluster's timings: defaults, the limits the flags accept, and the rule that ties the
 * heartbeat to the election timeout. A leaf module (no imports), so the configuration can use it
 * without loading the cluster.
 */

/** How often a leader sends every follower an append, empty or not (`--heartbeat-interval-ms`). */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 50;
/**
 * The lower bound t of the randomised election timeout [t, 2t] (`--election-timeout-ms`). It is
 * also the leader's check-quorum window and a follower's leader lease: a leader that has not
 * heard from a majority within t steps down, and a follower that heard its leader within t
 * refuses pre-votes.
 */
export const DEFAULT_ELECTION_TIMEOUT_MS = 500;
/**
 * A leader whose log sync has run this many election timeouts (2 s at the default t) hands
 * leadership over to a follower: its disk stalls, and nothing commits past the leader's own
 * durable end. Shorter stalls (a busy disk's few hundred ms) ride it out, as a hand-over
 * interrupts writes for a moment too.
 */
export const STALLED_SYNC_HAND_OVER_TIMEOUTS = 4;

/** How long a log sync may run before the disk counts as stalled (ms), for an election timeout. */
export function stalledSyncThresholdMs(electionTimeoutMs: number): number {
  return STALLED_SYNC_HAND_OVER_TIMEOUTS * electionTimeoutMs;
}
/** How often a node gossips with the others (`--gossip-interval-ms`). */
export const DEFAULT_GOSSIP_INTERVAL_MS = 500;
/** Deadline of one gossip request (`--gossip-timeout-ms`). */
export const DEFAULT_GOSSIP_TIMEOUT_MS = 1_000;

/** What the flags accept, in milliseconds (inclusive). */
export const TIMING_LIMITS = Object.freeze({
  // The cluster's timer ticks every 10 ms: a shorter heartbeat could not be kept.
  heartbeatIntervalMs: Object.freeze({ min: 10, max: 10_000 }),
  // Below 100 ms an fsync or a GC pause alone would depose healthy leaders.
  electionTimeoutMs: Object.freeze({ min: 100, max: 60_000 }),
  // A member is dead after four missed rounds and forgotten after 60 s: four rounds must fit.
  gossipIntervalMs: Object.freeze({ min: 50, max: 10_000 }),
  gossipTimeoutMs: Object.freeze({ min: 50, max: 60_000 }),
});

/** The randomised election timeout's range [t, 2t] for a lower bound t. */
export function electionTimeoutRange(electionTimeoutMs: number): { minMs: number; maxMs: number } {
  return { minMs: electionTimeoutMs, maxMs: 2 * electionTimeoutMs };
}

/**
 * The heartbeat must be shorter than half the election timeout, so that a follower hears at
 * least two heartbeats per timeout: one late or lost heartbeat (a dropped packet, an fsync or GC
 * stall) then neither starts an election nor makes the leader's check-quorum step it down.
 * Returns the problem, or undefined when the pair is fine.
 */
export function heartbeatProblem(
  heartbeatIntervalMs: number,
  electionTimeoutMs: number,
): string | undefined {
  if (heartbeatIntervalMs < electionTimeoutMs / 2) return undefined;
  const largest = Math.ceil(electionTimeoutMs / 2) - 1;
  return (
    `--heartbeat-interval-ms (${heartbeatIntervalMs}) must be less than half of ` +
    `--election-timeout-ms (${electionTimeoutMs}), i.e. at most ${largest}: ` +
    "a follower must hear at least two heartbeats per election timeout, or one late or lost " +
    "heartbeat would start an election (and make the leader's check-quorum step it down) " +
    "while the leader is alive"
  );
}
