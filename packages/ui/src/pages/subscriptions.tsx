import { useState } from "preact/hooks";
import { api, errorText, type GroupInfo } from "../api.js";
import { formatNumber, seg } from "../format.js";
import { usePoll } from "../hooks.js";

function groupPath(g: { streamId: string; group: string }): string {
  return `subscriptions/${seg(g.streamId)}/${seg(g.group)}`;
}

/** Every persistent subscription group: consumers, in flight, parked. */
export function SubscriptionsPage() {
  const { data, error } = usePoll(
    (signal) => api<{ subscriptions: GroupInfo[] }>("subscriptions", { signal }),
    2000,
    "subscriptions",
  );
  return (
    <section>
      <h2>Persistent subscriptions</h2>
      {error && <p class="error">{error}</p>}
      {data && data.subscriptions.length === 0 && <p class="note">No groups.</p>}
      {data && data.subscriptions.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Stream</th>
              <th>Group</th>
              <th>Status</th>
              <th>Consumers</th>
              <th>In flight</th>
              <th>Parked</th>
              <th>Delivered</th>
              <th>Acked</th>
              <th>Checkpoint</th>
            </tr>
          </thead>
          <tbody>
            {data.subscriptions.map((g) => (
              <tr key={`${g.streamId}/${g.group}`} data-group={`${g.streamId}/${g.group}`}>
                <td>{g.streamId}</td>
                <td>
                  <a href={`#/${groupPath(g)}`}>{g.group}</a>
                </td>
                <td>{g.status}</td>
                <td>{g.consumers.length}</td>
                <td>{g.inFlight}</td>
                <td data-testid="parked">{g.parkedCount}</td>
                <td>{formatNumber(g.totalDelivered)}</td>
                <td>{formatNumber(g.totalAcked)}</td>
                <td>{g.lastCheckpoint ?? "-"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** One group: its consumers and settings, and replaying its parked events. */
export function GroupPage({ streamId, group }: { streamId: string; group: string }) {
  const path = groupPath({ streamId, group });
  const { data, error, refresh } = usePoll(
    (signal) => api<GroupInfo>(path, { signal }),
    1000,
    path,
  );
  const [replay, setReplay] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const replayParked = async (): Promise<void> => {
    setBusy(true);
    try {
      const r = await api<{ replayed: number }>(`${path}/replay-parked`, { method: "POST" });
      setReplay(`Replaying ${r.replayed} parked event${r.replayed === 1 ? "" : "s"}.`);
      refresh();
    } catch (err) {
      setReplay(`Replay failed: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section>
      <h2>
        <a href="#/subscriptions">Persistent subscriptions</a> / {streamId} / {group}
      </h2>
      {error && <p class="error">{error}</p>}
      {data && (
        <>
          <dl class="cards">
            <div>
              <dt>Status</dt>
              <dd>{data.status}</dd>
            </div>
            <div>
              <dt>Consumers</dt>
              <dd>{data.consumers.length}</dd>
            </div>
            <div>
              <dt>In flight</dt>
              <dd>{data.inFlight}</dd>
            </div>
            <div>
              <dt>Parked</dt>
              <dd data-testid="parked-count">{data.parkedCount}</dd>
            </div>
            <div>
              <dt>Delivered / s</dt>
              <dd>{formatNumber(data.deliveryRate)}</dd>
            </div>
            <div>
              <dt>Acked / s</dt>
              <dd>{formatNumber(data.ackRate)}</dd>
            </div>
            <div>
              <dt>Checkpoint</dt>
              <dd>{data.lastCheckpoint ?? "-"}</dd>
            </div>
          </dl>
          <div class="row">
            <button
              data-testid="replay-parked"
              disabled={busy || data.parkedCount === 0}
              onClick={() => void replayParked()}
            >
              Replay parked events
            </button>
            {replay && (
              <span class="note" data-testid="replay-result">
                {replay}
              </span>
            )}
          </div>
          <h3>Consumers</h3>
          {data.consumers.length === 0 ? (
            <p class="note">No consumers connected.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Connection</th>
                  <th>In flight</th>
                  <th>Buffer</th>
                  <th>Delivered</th>
                  <th>Acked</th>
                </tr>
              </thead>
              <tbody>
                {data.consumers.map((c) => (
                  <tr key={`${c.connection}/${c.name}`}>
                    <td>{c.name || "-"}</td>
                    <td>{c.connection}</td>
                    <td>{c.inFlight}</td>
                    <td>{c.bufferSize}</td>
                    <td>{c.delivered}</td>
                    <td>{c.acked}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h3>Settings</h3>
          <table class="settings">
            <tbody>
              {Object.entries(data.settings).map(([k, v]) => (
                <tr key={k}>
                  <th>{k}</th>
                  <td>{String(v)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
