/** `chorus status`: the cluster's members, states, epochs, positions and lag. */
import type { MemberInfo } from "@chorus/client";
import { endpointOf, type Context } from "../context.js";
import { CommandError } from "../errors.js";
import { jsonLine, table } from "../records.js";

export interface StatusOptions {
  json?: boolean;
}

/** How far `member` is behind the leader (writer checkpoints); undefined without a leader. */
export function lagOf(member: MemberInfo, leader: MemberInfo | undefined): bigint | undefined {
  return leader === undefined ? undefined : leader.writerCheckpoint - member.writerCheckpoint;
}

export async function status(ctx: Context, options: StatusOptions): Promise<void> {
  const members = await ctx.withClient(async (client) => {
    const { signal, clear } = ctx.deadline(`asking ${ctx.where} for the cluster's members`);
    try {
      return await client.clusterMembers({ signal });
    } finally {
      clear();
    }
  }, false);
  if (members.length === 0) throw new CommandError(`${ctx.where} reported no members`);
  // With partitions, each replication group has its own leader, and lag is within a group.
  const groups = [...new Set(members.map((m) => m.partition ?? ""))];
  const leaders = new Map(
    groups.map((g) => [
      g,
      members.find((m) => (m.partition ?? "") === g && m.isAlive && m.state === "Leader"),
    ]),
  );
  const leaderOf = (m: MemberInfo) => leaders.get(m.partition ?? "");
  const sorted = [...members].sort(
    (a, b) =>
      (a.partition ?? "").localeCompare(b.partition ?? "") ||
      endpointOf(a).localeCompare(endpointOf(b)),
  );
  if (options.json) {
    for (const m of sorted) {
      const lag = lagOf(m, leaderOf(m));
      await ctx.out.line(
        jsonLine({
          ...(m.partition !== undefined && { partition: m.partition }),
          instanceId: m.instanceId,
          state: m.state,
          isAlive: m.isAlive,
          externalHttp: m.externalHttp ? endpointOf(m) : null,
          epochNumber: m.epochNumber,
          epochPosition: m.epochPosition,
          lastCommitPosition: m.lastCommitPosition,
          writerCheckpoint: m.writerCheckpoint,
          chaserCheckpoint: m.chaserCheckpoint,
          lag: lag ?? null,
          nodePriority: m.nodePriority,
          isReadOnlyReplica: m.isReadOnlyReplica,
          timestamp: m.timestamp,
        }),
      );
    }
    return;
  }
  const leaderText = (g: string) => {
    const leader = leaders.get(g);
    return leader ? `leader ${endpointOf(leader)} (epoch ${leader.epochNumber})` : "no leader";
  };
  const partitioned = ctx.partitioned;
  await ctx.out.line(
    `${ctx.where}: ${members.length} member${members.length === 1 ? "" : "s"}, ` +
      (partitioned ? groups.map((g) => `${g}: ${leaderText(g)}`).join("; ") : leaderText("")),
  );
  await ctx.out.lines(
    table(
      [
        ...(partitioned ? ["PARTITION"] : []),
        "ENDPOINT",
        "STATE",
        "ALIVE",
        "EPOCH",
        "WRITER",
        "CHASER",
        "COMMIT",
        "LAG",
        "INSTANCE",
      ],
      sorted.map((m) => [
        ...(partitioned ? [m.partition ?? "-"] : []),
        endpointOf(m),
        m.state + (m.isReadOnlyReplica && m.state !== "ReadOnlyReplica" ? " (read-only)" : ""),
        m.isAlive ? "yes" : "no",
        String(m.epochNumber),
        m.writerCheckpoint.toString(),
        m.chaserCheckpoint.toString(),
        m.lastCommitPosition.toString(),
        lagOf(m, leaderOf(m))?.toString() ?? "-",
        m.instanceId,
      ]),
    ),
  );
}
