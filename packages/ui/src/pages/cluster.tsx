import { api, type MemberInfo } from "../api.js";
import { formatNumber, formatTime, shortId } from "../format.js";
import { usePoll } from "../hooks.js";

interface Gossip {
  members: MemberInfo[];
}

const STATE_ORDER = ["Leader", "Follower", "ReadOnlyReplica"];

function order(m: MemberInfo): number {
  if (!m.isAlive) return 100;
  const i = STATE_ORDER.indexOf(m.state);
  return i < 0 ? 50 : i;
}

/** Members, states, epochs, positions and replication lag, from this node's gossip view. */
export function ClusterPage() {
  const { data, error } = usePoll((signal) => api<Gossip>("gossip", { signal }), 1000, "cluster");
  const members = [...(data?.members ?? [])].sort(
    (a, b) =>
      order(a) - order(b) ||
      a.externalHttp.host.localeCompare(b.externalHttp.host) ||
      a.externalHttp.port - b.externalHttp.port,
  );
  const leader = members.find((m) => m.isAlive && m.state === "Leader");
  const leaderPos = leader ? Number(leader.writerCheckpoint) : undefined;
  return (
    <section>
      <h2>Cluster</h2>
      {error && <p class="error">Cannot read the cluster view: {error}</p>}
      <p class="summary" data-testid="cluster-summary">
        {data === undefined
          ? "Loading..."
          : leader
            ? `Leader ${shortId(leader.instanceId)} at ${leader.externalHttp.host}:${leader.externalHttp.port}, epoch ${leader.epochNumber}; ${members.filter((m) => m.isAlive).length} of ${members.length} members alive`
            : `No leader known; ${members.filter((m) => m.isAlive).length} of ${members.length} members alive`}
      </p>
      <table>
        <thead>
          <tr>
            <th>Instance</th>
            <th>State</th>
            <th>Alive</th>
            <th>HTTP</th>
            <th>Epoch</th>
            <th>Epoch position</th>
            <th>Commit position</th>
            <th>Lag (bytes)</th>
            <th>Priority</th>
            <th>Last heard</th>
          </tr>
        </thead>
        <tbody>
          {members.map((m) => {
            const lag =
              leaderPos !== undefined && m.isAlive
                ? Math.max(0, leaderPos - Number(m.writerCheckpoint))
                : undefined;
            return (
              <tr
                key={m.instanceId}
                data-member={m.instanceId}
                data-state={m.state}
                data-alive={String(m.isAlive)}
                class={m.isAlive ? `state-${m.state}` : "dead"}
              >
                <td title={m.instanceId}>
                  <code>{shortId(m.instanceId)}</code>
                </td>
                <td>
                  <span class={`badge ${m.isAlive ? m.state : "dead"}`}>
                    {m.isAlive ? m.state : `unreachable (was ${m.state})`}
                  </span>
                  {m.isReadOnlyReplica ? " (read-only)" : ""}
                </td>
                <td>{m.isAlive ? "yes" : "no"}</td>
                <td>
                  <a href={`http://${m.externalHttp.host}:${m.externalHttp.port}/ui/`}>
                    {m.externalHttp.host}:{m.externalHttp.port}
                  </a>
                </td>
                <td>{m.epochNumber}</td>
                <td>{formatNumber(m.epochPosition)}</td>
                <td>{formatNumber(m.writerCheckpoint)}</td>
                <td>{lag === undefined ? "-" : formatNumber(lag)}</td>
                <td>{m.nodePriority}</td>
                <td>{formatTime(m.timestamp)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}
