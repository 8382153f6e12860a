import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { api, errorText, type NodeStats } from "../api.js";
import { formatBytes, formatNumber } from "../format.js";
import { interval, type Interval } from "../stats-math.js";

const POLL_MS = 1000;
const KEEP = 300;
const WINDOW_S = 120;

interface Series {
  label: string;
  stroke: string;
  pick: (i: Interval) => number | null;
}

/** A line chart of the intervals; redrawn when they change. */
function Chart({
  title,
  unit,
  series,
  data,
}: {
  title: string;
  unit: string;
  series: Series[];
  data: Interval[];
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const p = new uPlot(
      {
        width: Math.max(300, el.clientWidth),
        height: 220,
        // The last WINDOW_S seconds, however few samples there are yet.
        scales: {
          x: {
            time: true,
            // Up to the last WINDOW_S seconds: what has been sampled so far fills the width.
            range: (_u, min, max) => {
              const end = Number.isFinite(max) ? max : Date.now() / 1000;
              const start = Number.isFinite(min) ? Math.max(min, end - WINDOW_S) : end - WINDOW_S;
              return [Math.min(start, end - 10), end];
            },
          },
        },
        axes: [{}, { label: unit, size: 60 }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2 }))],
      },
      [[], ...series.map(() => [])],
      el,
    );
    plot.current = p;
    const resize = new ResizeObserver(() =>
      p.setSize({ width: Math.max(300, el.clientWidth), height: 220 }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      p.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData([data.map((d) => d.t), ...series.map((s) => data.map(s.pick))]);
  }, [data]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} />
    </figure>
  );
}

/** The node's rates and append latencies, from its own metrics, over the last few minutes. */
export function StatsPage() {
  const [last, setLast] = useState<NodeStats | undefined>(undefined);
  const [intervals, setIntervals] = useState<Interval[]>([]);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let prev: NodeStats | undefined;
    const poll = async (): Promise<void> => {
      try {
        const next = await api<NodeStats>("stats", { signal: abort.signal });
        if (prev) {
          const i = interval(prev, next);
          if (i) setIntervals((old) => [...old, i].slice(-KEEP));
        }
        prev = next;
        setLast(next);
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
  }, []);
  const maxEventsRate = intervals.reduce((m, i) => Math.max(m, i.eventsPerSec), 0);
  return (
    <section data-intervals={intervals.length} data-max-events-rate={maxEventsRate}>
      <h2>Node stats</h2>
      {error && <p class="error">{error}</p>}
      {last && (
        <dl class="cards">
          <div>
            <dt>State</dt>
            <dd>{last.state}</dd>
          </div>
          <div>
            <dt>Events</dt>
            <dd>{formatNumber(last.store.events)}</dd>
          </div>
          <div>
            <dt>Streams</dt>
            <dd>{formatNumber(last.store.streams)}</dd>
          </div>
          <div>
            <dt>Commit position</dt>
            <dd>{formatNumber(last.store.commitPosition)}</dd>
          </div>
          <div>
            <dt>Log size</dt>
            <dd>{formatBytes(last.store.logBytes)}</dd>
          </div>
          <div>
            <dt>Events written</dt>
            <dd>{formatNumber(last.totals.eventsWritten)}</dd>
          </div>
          <div>
            <dt>Append p50 / p99 (since start)</dt>
            <dd>
              {formatNumber(last.appendLatency.p50Ms)} / {formatNumber(last.appendLatency.p99Ms)} ms
            </dd>
          </div>
          <div>
            <dt>Connections</dt>
            <dd>{formatNumber(last.totals.connectionsActive)}</dd>
          </div>
        </dl>
      )}
      <Chart
        title="Append rate"
        unit="per second"
        data={intervals}
        series={[
          { label: "events/s", stroke: "#2563eb", pick: (i) => i.eventsPerSec },
          { label: "appends/s", stroke: "#16a34a", pick: (i) => i.appendsPerSec },
          { label: "reads/s", stroke: "#9333ea", pick: (i) => i.readsPerSec },
        ]}
      />
      <Chart
        title="Append latency (each second)"
        unit="ms"
        data={intervals}
        series={[
          { label: "p50", stroke: "#16a34a", pick: (i) => i.p50Ms },
          { label: "p90", stroke: "#d97706", pick: (i) => i.p90Ms },
          { label: "p99", stroke: "#dc2626", pick: (i) => i.p99Ms },
        ]}
      />
    </section>
  );
}
