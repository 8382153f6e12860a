import { useEffect, useState } from "preact/hooks";
import { api, errorText, type AllPage, type EventJson } from "../api.js";
import { formatTime, json, seg } from "../format.js";

const KEEP = 500;
const POLL_MS = 500;

/** A live tail of `$all`: the latest events, then new ones as they are committed. */
export function TailPage() {
  const [events, setEvents] = useState<EventJson[]>([]);
  const [error, setError] = useState<string | undefined>(undefined);
  const [paused, setPaused] = useState(false);
  const [system, setSystem] = useState(false);
  useEffect(() => {
    if (paused) return;
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let cursor: string | undefined;
    let newest = -1;
    const poll = async (): Promise<void> => {
      try {
        if (cursor === undefined) {
          const last = await api<AllPage>("streams/%24all?from=end&direction=backwards&count=50", {
            signal: abort.signal,
          });
          const top = last.events[0];
          newest = top ? Number(top.position) : -1;
          cursor = top ? top.position : "start";
          setEvents(last.events);
        }
        for (;;) {
          const page: AllPage = await api<AllPage>(`streams/%24all?from=${cursor}&count=200`, {
            signal: abort.signal,
          });
          const fresh = page.events.filter((e) => Number(e.position) > newest);
          cursor = page.nextPosition;
          if (fresh.length > 0) {
            newest = Number(fresh[fresh.length - 1]?.position ?? newest);
            setEvents((old) => [...fresh.reverse(), ...old].slice(0, KEEP));
          }
          if (page.endOfStream || page.events.length === 0) break;
        }
        setError(undefined);
      } catch (err) {
        if (abort.signal.aborted) return;
        setError(errorText(err));
      }
      if (!abort.signal.aborted) timer = setTimeout(() => void poll(), POLL_MS);
    };
    void poll();
    return () => {
      abort.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [paused]);
  const shown = system ? events : events.filter((e) => !e.streamId.startsWith("$"));
  return (
    <section>
      <h2>Live tail of $all</h2>
      <div class="row">
        <button onClick={() => setPaused(!paused)}>{paused ? "Resume" : "Pause"}</button>
        <label>
          <input
            type="checkbox"
            checked={system}
            onChange={(e) => setSystem(e.currentTarget.checked)}
          />{" "}
          Show system streams ($...)
        </label>
        <span class="note">{paused ? "paused" : "following"}</span>
      </div>
      {error && <p class="error">{error}</p>}
      {shown.length === 0 && <p class="note">No events yet.</p>}
      <table class="tail">
        <thead>
          <tr>
            <th>Position</th>
            <th>Stream</th>
            <th>Revision</th>
            <th>Type</th>
            <th>Written</th>
            <th>Data</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((e) => (
            <tr key={e.position} data-event={e.eventId}>
              <td>{e.position}</td>
              <td>
                <a href={`#/streams/${seg(e.streamId)}`}>{e.streamId}</a>
              </td>
              <td>{e.revision}</td>
              <td>{e.eventType}</td>
              <td>{formatTime(e.created)}</td>
              <td>
                <code class="inline-json">{json(e.data).slice(0, 200)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
