import type { MemberInfo, NodePreference, Random } from "../types.js";
import { shuffle } from "./shuffle.js";

/** States in which a member can serve clients. */
const SERVING = new Set(["Leader", "Follower", "ReadOnlyReplica"]);

/**
 * Picks the member to connect to, or undefined when none can serve. Only alive members
 * with an external TCP endpoint count. Among several leaders (a stale view during an
 * election) the one of the highest epoch wins; among leaders of one epoch (the instances on
 * a shared database) a random one.
 * - leader: the leader, else a follower, else a read-only replica;
 * - follower: a follower, else the leader, else a read-only replica;
 * - readOnlyReplica: a read-only replica, else a follower, else the leader;
 * - random: any serving member.
 */
export function selectNode(
  preference: NodePreference,
  members: readonly MemberInfo[],
  random: Random,
): MemberInfo | undefined {
  const candidates = members.filter(
    (m) => m.isAlive && m.externalTcp !== undefined && SERVING.has(m.state),
  );
  if (candidates.length === 0) return undefined;
  // Shuffled first: instances on a shared database are all leaders of one epoch, and clients
  // spread over them (the sort is stable, so equal epochs keep the shuffled order).
  const leaders = shuffle(
    candidates.filter((m) => m.state === "Leader"),
    random,
  ).sort((a, b) => b.epochNumber - a.epochNumber);
  const followers = shuffle(
    candidates.filter((m) => m.state === "Follower"),
    random,
  );
  const replicas = shuffle(
    candidates.filter((m) => m.state === "ReadOnlyReplica"),
    random,
  );
  const order: MemberInfo[][] =
    preference === "leader"
      ? [leaders, followers, replicas]
      : preference === "follower"
        ? [followers, leaders, replicas]
        : preference === "readOnlyReplica"
          ? [replicas, followers, leaders]
          : [shuffle(candidates, random)];
  for (const group of order) if (group[0]) return group[0];
  return undefined;
}

/** Whether `member` is in a state in which it can serve clients. */
export function isServing(member: MemberInfo): boolean {
  return SERVING.has(member.state);
}

/**
 * Whether `node` is of the kind `preference` asks for first (any serving node for
 * "random"), rather than a fallback selectNode took because there was none.
 */
export function isPreferred(preference: NodePreference, node: MemberInfo): boolean {
  switch (preference) {
    case "leader":
      return node.state === "Leader";
    case "follower":
      return node.state === "Follower";
    case "readOnlyReplica":
      return node.state === "ReadOnlyReplica";
    case "random":
      return SERVING.has(node.state);
  }
}

/** The alive leader of the highest epoch, if any. */
export function leaderOf(members: readonly MemberInfo[]): MemberInfo | undefined {
  return members
    .filter((m) => m.isAlive && m.state === "Leader")
    .sort((a, b) => b.epochNumber - a.epochNumber)[0];
}
