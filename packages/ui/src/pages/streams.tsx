import { useState } from "preact/hooks";
import { api, type StreamList, type StreamPage } from "../api.js";
import { formatNumber, formatTime, json, seg } from "../format.js";
import { usePoll } from "../hooks.js";

const PAGE = 50;

/** Streams by name prefix, a page at a time. */
export function StreamsPage() {
  const [input, setInput] = useState("");
  const [prefix, setPrefix] = useState("");
  const [after, setAfter] = useState<string[]>([]);
  const cursor = after[after.length - 1];
  const query = new URLSearchParams({ prefix, limit: String(PAGE) });
  if (cursor !== undefined) query.set("after", cursor);
  const { data, error } = usePoll(
    (signal) => api<StreamList>(`streams?${query.toString()}`, { signal }),
    // Each answer scans up to 100,000 events: refreshed twice a minute, or on Find.
    30_000,
    query.toString(),
  );
  return (
    <section>
      <h2>Streams</h2>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          setPrefix(input);
          setAfter([]);
        }}
      >
        <input
          name="prefix"
          placeholder="Stream name prefix"
          value={input}
          onInput={(e) => setInput(e.currentTarget.value)}
        />
        <button type="submit">Find</button>
      </form>
      {error && <p class="error">{error}</p>}
      {data && !data.complete && (
        <p class="note">
          Only streams written to within the most recent 100,000 events are listed.
        </p>
      )}
      {data && data.streams.length === 0 && <p class="note">No streams found.</p>}
      {data && data.streams.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Stream</th>
              <th>Last revision</th>
              <th>Last event type</th>
              <th>Last written</th>
            </tr>
          </thead>
          <tbody>
            {data.streams.map((s) => (
              <tr key={s.streamId} data-stream={s.streamId}>
                <td>
                  <a href={`#/streams/${seg(s.streamId)}`}>{s.streamId}</a>
                </td>
                <td>{s.lastRevision}</td>
                <td>{s.lastEventType}</td>
                <td>{formatTime(s.lastCreated)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="row">
        <button disabled={after.length === 0} onClick={() => setAfter(after.slice(0, -1))}>
          Previous page
        </button>
        <button
          disabled={!data?.next}
          onClick={() => data?.next && setAfter([...after, data.next])}
        >
          Next page
        </button>
      </div>
    </section>
  );
}

/** A stream's events, newest first, a page at a time, with their JSON. */
export function StreamPageView({ streamId }: { streamId: string }) {
  const [from, setFrom] = useState<string[]>(["end"]);
  const current = from[from.length - 1] ?? "end";
  const path = `streams/${seg(streamId)}?direction=backwards&count=20&from=${current}`;
  const { data, error } = usePoll(
    (signal) => api<StreamPage>(path, { signal }),
    current === "end" ? 2000 : 60_000,
    path,
  );
  return (
    <section>
      <h2>
        <a href="#/streams">Streams</a> / <span data-testid="stream-name">{streamId}</span>
      </h2>
      {error && <p class="error">{error}</p>}
      {data && (
        <p class="summary">
          Last revision {formatNumber(data.lastRevision)}; showing {data.events.length} events
          {data.events.length > 0
            ? ` (revisions ${data.events[data.events.length - 1]?.revision} to ${data.events[0]?.revision})`
            : ""}
        </p>
      )}
      <div class="row">
        <button disabled={from.length === 1} onClick={() => setFrom(["end"])}>
          Newest
        </button>
        <button disabled={from.length === 1} onClick={() => setFrom(from.slice(0, -1))}>
          Newer
        </button>
        <button
          disabled={!data || data.endOfStream}
          onClick={() => data && setFrom([...from, data.nextRevision])}
        >
          Older
        </button>
      </div>
      {data?.events.map((e) => (
        <article class="event" key={e.eventId} data-event={e.eventId}>
          <header>
            <strong>#{e.revision}</strong> <span class="type">{e.eventType}</span>
            <span class="meta">
              position {e.position} · {formatTime(e.created)} · id <code>{e.eventId}</code>
            </span>
          </header>
          <pre class="json" data-testid="event-data">
            {json(e.data)}
          </pre>
          {e.metadata !== null && (
            <details>
              <summary>Metadata</summary>
              <pre class="json">{json(e.metadata)}</pre>
            </details>
          )}
        </article>
      ))}
    </section>
  );
}
