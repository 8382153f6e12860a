import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { ClusterView, FollowerLag, NodeState, RoleChangeCounts } from "../node-types.js";
import type { ConsumerHandle, GroupInfo, GroupKey } from "../persistent/group.js";
import type { StreamStore } from "../streams/types.js";

/** Every state `chorus_node_role` reports, so a dashboard sees a 0 for each state not held. */
const NODE_STATES: readonly NodeState[] = [
  "Initializing",
  "Unknown",
  "Leader",
  "Follower",
  "CatchingUp",
  "PreReadOnlyReplica",
  "ReadOnlyReplica",
  "ShuttingDown",
  "Shutdown",
];

/** Latency buckets in seconds, 0.1 ms to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

let processRegistry: Registry | undefined;

/**
 * prom-client's default metrics left out: gauges named `_total`, which Prometheus reserves for
 * counters (`promtool check metrics` refuses them). `nodejs_active_handles`,
 * `nodejs_active_requests` and `nodejs_active_resources` (by type) remain; their sum is the
 * same number.
 */
const EXCLUDED_PROCESS_METRICS: ReadonlySet<string> = new Set([
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
]);

/**
 * prom-client's default metrics (process_cpu_seconds_total, nodejs_eventloop_lag_seconds, ...),
 * collected once per process: they describe the process, and each collection starts an event
 * loop delay monitor and a GC observer that prom-client never stops. Both are unref'd, so they
 * do not keep the process alive. Every node's registry shares these metric objects.
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** What the node-level gauges read at scrape time; node.ts passes its NodeContext. */
export interface MetricsNodeView {
  state(): NodeState;
  cluster(): ClusterView | undefined;
  /** Why only a restart brings the node back; undefined otherwise (NodeContext's). */
  restartNeeded?(): string | undefined;
}

/** The node's Prometheus metrics, in a registry of its own (never the global one). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly appends: Counter<"interface" | "result">;
  readonly eventsWritten: Counter<"interface">;
  readonly reads: Counter<"interface" | "kind">;
  readonly deletes: Counter<"interface" | "result">;
  readonly subscriptionsStarted: Counter<"kind">;
  readonly subscriptionsActive: Gauge;
  readonly connectionsOpened: Counter;
  readonly connectionsActive: Gauge;
  readonly requestErrors: Counter<"interface" | "code">;
  readonly protocolErrors: Counter<"reason">;
  readonly clientConnectionsRefused: Counter;
  readonly receiveBudgetEvictions: Counter;
  readonly sendBudgetEvictions: Counter;
  readonly httpRequests: Counter<"method" | "status">;
  readonly pings: Counter;
  readonly appendDuration: LatencyHistogram;
  /** The native API's append outcomes, counted in plain numbers (see `AppendTally`). */
  readonly nativeAppends = new AppendTally();
  /** Observed once per log sync: a bound series, so the write path pays a bucket search. */
  readonly fsyncDuration: LatencySeries;
  /** A leader's replication round trips (one per follower reply); fed by the cluster role. */
  readonly replicationRoundTrip: LatencySeries;
  readonly persistentAckLatency: LatencyHistogram;
  /** A leader's view of its followers' lag; set by node.ts on a replicated cluster node. */
  replicationLag: () => readonly FollowerLag[] = () => [];
  /** The persistent subscription groups this node serves; set by the native API. */
  persistentGroups: () => readonly GroupInfo[] = () => [];
  /** The node's state and cluster view; set by node.ts once its context exists. */
  node: MetricsNodeView | undefined;

  constructor(store: () => StreamStore | undefined) {
    const registers = [this.registry];
    for (const metric of processMetrics().getMetricsAsArray()) {
      if (EXCLUDED_PROCESS_METRICS.has(metric.name)) continue;
      this.registry.registerMetric(metric as unknown as Parameters<Registry["registerMetric"]>[0]);
    }
    // The native appends' tally joins these counters whenever either is read.
    const tally = this.nativeAppends;
    const addTally = (): void => tally.addTo(this.appends, this.eventsWritten);
    this.appends = new Counter({
      name: "chorus_appends_total",
      help: "Append requests answered",
      labelNames: ["interface", "result"],
      registers,
      collect: addTally,
    });
    this.eventsWritten = new Counter({
      name: "chorus_events_written_total",
      help: "Events written by appends",
      labelNames: ["interface"],
      registers,
      collect: addTally,
    });
    this.reads = new Counter({
      name: "chorus_reads_total",
      help: "Read requests answered",
      labelNames: ["interface", "kind"],
      registers,
    });
    this.deletes = new Counter({
      name: "chorus_deletes_total",
      help: "Delete requests answered",
      labelNames: ["interface", "result"],
      registers,
    });
    this.subscriptionsStarted = new Counter({
      name: "chorus_subscriptions_total",
      help: "Subscriptions started",
      labelNames: ["kind"],
      registers,
    });
    this.subscriptionsActive = new Gauge({
      name: "chorus_subscriptions_active",
      help: "Subscriptions currently open",
      registers,
    });
    this.connectionsOpened = new Counter({
      name: "chorus_connections_total",
      help: "Native protocol connections accepted",
      registers,
    });
    this.connectionsActive = new Gauge({
      name: "chorus_connections_active",
      help: "Native protocol connections open",
      registers,
    });
    this.requestErrors = new Counter({
      name: "chorus_request_errors_total",
      help: "Requests answered with an error",
      labelNames: ["interface", "code"],
      registers,
    });
    this.protocolErrors = new Counter({
      name: "chorus_protocol_errors_total",
      help: "Connections closed for a protocol violation",
      labelNames: ["reason"],
      registers,
    });
    this.receiveBudgetEvictions = new Counter({
      name: "chorus_receive_budget_evictions_total",
      help: "Client connections closed because the node held its receive budget of unfinished input (--receive-budget-bytes)",
      registers,
    });
    this.sendBudgetEvictions = new Counter({
      name: "chorus_send_budget_evictions_total",
      help: "Client connections (native and HTTP) closed because the node held its send budget of unsent output (--send-budget-bytes)",
      registers,
    });
    this.clientConnectionsRefused = new Counter({
      name: "chorus_client_connections_refused_total",
      help: "Client connections refused because the node held its limit (--max-client-connections)",
      registers,
    });
    this.httpRequests = new Counter({
      name: "chorus_http_requests_total",
      help: "HTTP requests answered",
      labelNames: ["method", "status"],
      registers,
    });
    this.pings = new Counter({
      name: "chorus_pings_total",
      help: "Native pings answered (a cluster client asks the node it is on whether it still serves every 2 s)",
      registers,
    });

    this.appendDuration = new LatencyHistogram(
      "chorus_append_duration_seconds",
      "Time from an append request's arrival to its answer (any result), in seconds",
      "interface",
    );
    this.registry.registerMetric(
      this.appendDuration as unknown as Parameters<Registry["registerMetric"]>[0],
    );

    const unlabelled = (name: string, help: string): LatencySeries => {
      const histogram = new LatencyHistogram(name, help, []);
      this.registry.registerMetric(
        histogram as unknown as Parameters<Registry["registerMetric"]>[0],
      );
      return histogram.seriesFor({});
    };
    this.fsyncDuration = unlabelled(
      "chorus_fsync_duration_seconds",
      "Time the write loop waited for each log sync (fdatasync) to finish, in seconds",
    );
    this.replicationRoundTrip = unlabelled(
      "chorus_replication_round_trip_seconds",
      "Leader: time from sending records to a follower until it reports them durable, in seconds",
    );
    this.persistentAckLatency = new LatencyHistogram(
      "chorus_persistent_ack_latency_seconds",
      "Time from a persistent subscription event's delivery to a consumer until its ack arrives, in seconds",
      ["stream", "group"],
    );
    this.registry.registerMetric(
      this.persistentAckLatency as unknown as Parameters<Registry["registerMetric"]>[0],
    );
    const lagGauge = (name: string, help: string, pick: (l: FollowerLag) => number): void => {
      const lag = () => this.replicationLag();
      new Gauge({
        name,
        help,
        labelNames: ["follower"],
        registers,
        collect() {
          this.reset();
          for (const l of lag()) this.set({ follower: l.follower }, pick(l));
        },
      });
    };
    lagGauge(
      "chorus_replication_lag_bytes",
      "Leader: its log end minus the position each follower acknowledged as durable",
      (l) => l.bytes,
    );
    lagGauge(
      "chorus_replication_lag_seconds",
      "Leader: age of the oldest record each follower has not acknowledged as durable, in seconds",
      (l) => l.ms / 1000,
    );

    const node = (): MetricsNodeView | undefined => this.node;
    new Gauge({
      name: "chorus_node_role",
      help: "The node's state: 1 for the state it is in, 0 for the others",
      labelNames: ["role"],
      registers,
      collect() {
        const n = node();
        if (!n) return;
        const current = n.state();
        for (const role of NODE_STATES) this.set({ role }, role === current ? 1 : 0);
      },
    });
    new Gauge({
      name: "chorus_restart_needed",
      help: "1 when only a restart brings the node back (a failed log write; /health/live says why), else 0",
      registers,
      collect() {
        this.set(node()?.restartNeeded?.() === undefined ? 0 : 1);
      },
    });
    new Gauge({
      name: "chorus_epoch",
      help: "The cluster's current epoch (term) as this node knows it; 0 for a single node",
      registers,
      collect() {
        this.set(node()?.cluster()?.epoch ?? 0);
      },
    });
    const roleCounter = (name: string, help: string, pick: (c: RoleChangeCounts) => number) => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          const counts = node()?.cluster()?.roleChanges?.();
          this.reset();
          if (counts) this.inc(pick(counts));
        },
      });
    };
    roleCounter(
      "chorus_elections_total",
      "Elections this node started as a candidate",
      (c) => c.elections,
    );
    roleCounter(
      "chorus_leader_changes_total",
      "Times this node saw a new leader (itself included)",
      (c) => c.leaderChanges,
    );
    roleCounter(
      "chorus_role_restarts_total",
      "Times this node started its part in the cluster over after a failed write (a full disk, a failed sync)",
      (c) => c.roleRestarts,
    );

    const storeGauge = (
      name: string,
      help: string,
      pick: (s: ReturnType<StreamStore["stats"]>) => number,
    ): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = store();
          if (s) this.set(pick(s.stats()));
        },
      });
    };
    storeGauge("chorus_store_events", "Events in the store", (s) => s.events);
    storeGauge("chorus_store_streams", "Streams in the store", (s) => s.streams);
    storeGauge("chorus_store_log_bytes", "Bytes of log on disk", (s) => s.logBytes);
    storeGauge("chorus_store_commit_position", "Committed end of the log", (s) => s.commitPosition);
    storeGauge(
      "chorus_fsync_running_seconds",
      "How long the log sync in flight has been running, in seconds (0 when none is): a stalled disk",
      (s) => (s.syncRunningMs ?? 0) / 1000,
    );

    new Counter({
      name: "chorus_store_slow_read_pauses_total",
      help: "Times slow synchronous log reads sent stream reads to the thread pool for a while: reads were served by the disk, not the page cache",
      registers,
      collect() {
        this.reset();
        this.inc(store()?.stats().slowReadPauses ?? 0);
      },
    });

    // Per persistent subscription group served here (the leader). The totals count from when
    // this node took the group on, so they are gauges: they restart on a leader change.
    const groupGauge = (name: string, help: string, pick: (g: GroupInfo) => number): void => {
      const persistentGroups = () => this.persistentGroups();
      new Gauge({
        name,
        help,
        labelNames: ["stream", "group"],
        registers,
        collect() {
          this.reset();
          for (const g of persistentGroups()) {
            this.set({ stream: g.streamId, group: g.group }, pick(g));
          }
        },
      });
    };
    const perGroup: [string, string, (g: GroupInfo) => number][] = [
      [
        "consumers",
        "Consumers connected to a persistent subscription group",
        (g) => g.consumers.length,
      ],
      ["in_flight", "Events handed to consumers and not yet acknowledged", (g) => g.inFlight],
      [
        "buffered_events",
        "Events the group has read ahead and not yet seen done (handed out or waiting)",
        (g) => g.bufferedEvents,
      ],
      [
        "buffered_bytes",
        "Bytes of the events the group holds read ahead (at most about 32 MiB)",
        (g) => g.bufferedBytes,
      ],
      ["parked", "Events in the group's parked stream", (g) => g.parkedCount],
      ["delivered", "Events delivered since this node took the group on", (g) => g.totalDelivered],
      ["acked", "Events acknowledged since this node took the group on", (g) => g.totalAcked],
    ];
    for (const [name, help, pick] of perGroup) groupGauge(`chorus_persistent_${name}`, help, pick);
  }

  /** Gauges of the node's page reads (read-gate.ts): running now, and waiting for a turn. */
  watchReads(gate: {
    readonly limit: number;
    readonly running: number;
    readonly waiting: number;
  }): void {
    const registers = [this.registry];
    new Gauge({
      name: "chorus_reads_running",
      help: "Page reads (streams, $all) the node runs now for clients, subscriptions and groups",
      registers,
      collect() {
        this.set(gate.running);
      },
    });
    new Gauge({
      name: "chorus_reads_waiting",
      help: `Page reads waiting for their turn: the node runs at most ${gate.limit} at once`,
      registers,
      collect() {
        this.set(gate.waiting);
      },
    });
  }

  /** Times the acks of one consumer of persistent subscription group `key` (the native API). */
  ackTimer(key: GroupKey, bufferSize: number): AckTimer {
    const series = this.persistentAckLatency.seriesFor({ stream: key.streamId, group: key.group });
    return new AckTimer((seconds) => series.observe(seconds), bufferSize);
  }
}

/**
 * Counts of one interface's appends kept in plain numbers, added to the `appends` and
 * `eventsWritten` counters when they are read: prom-client validates and hashes the labels
 * on every `inc`, too much for a call per append.
 */
export class AppendTally {
  success = 0;
  wrongExpectedVersion = 0;
  events = 0;

  constructor(private readonly iface = "native") {}

  addTo(appends: Counter<"interface" | "result">, eventsWritten: Counter<"interface">): void {
    const labels = { interface: this.iface };
    if (this.success > 0) appends.inc({ ...labels, result: "success" }, this.success);
    if (this.wrongExpectedVersion > 0)
      appends.inc({ ...labels, result: "wrong_expected_version" }, this.wrongExpectedVersion);
    if (this.events > 0) eventsWritten.inc(labels, this.events);
    this.success = this.wrongExpectedVersion = this.events = 0;
  }
}

/** One label value's series of a `LatencyHistogram`. */
export class LatencySeries {
  /** Observations per bucket (not cumulative); the last one is above every bound (+Inf). */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] as number)) i++;
    (this.counts[i] as number)++;
    this.sum += seconds;
  }
}

/**
 * A histogram of durations over LATENCY_BUCKETS, served by a prom-client registry like
 * prom-client's own (same exposition). Its series are bound once per set of label values
 * (`series`, `seriesFor`), so an observation is a bucket search and two additions:
 * prom-client's Histogram builds, validates and hashes a label object on every observation.
 */
export class LatencyHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly labelNames: readonly string[];
  readonly #series = new Map<string, { labels: Record<string, string>; series: LatencySeries }>();

  constructor(
    readonly name: string,
    readonly help: string,
    labelNames: string | readonly string[],
  ) {
    this.labelNames = typeof labelNames === "string" ? [labelNames] : [...labelNames];
  }

  /** The series of one value of the first label (kept; call once and hold it on a hot path). */
  series(value: string): LatencySeries {
    return this.seriesFor({ [this.labelNames[0] as string]: value });
  }

  /** The series of these label values (kept; call once and hold it on a hot path). */
  seriesFor(labels: Readonly<Record<string, string>>): LatencySeries {
    const values = this.labelNames.map((name) => labels[name] ?? "");
    const key = values.join("\u0000");
    let entry = this.#series.get(key);
    if (entry === undefined) {
      const bound: Record<string, string> = {};
      this.labelNames.forEach((name, i) => (bound[name] = values[i] as string));
      entry = { labels: bound, series: new LatencySeries() };
      this.#series.set(key, entry);
    }
    return entry.series;
  }

  observe(labels: Readonly<Record<string, string>>, seconds: number): void {
    if (!Number.isFinite(seconds)) throw new TypeError(`Value is not a valid number: ${seconds}`);
    this.seriesFor(labels).observe(seconds);
  }

  /** Starts timing; the function returned observes the seconds since and returns them. */
  startTimer(labels: Readonly<Record<string, string>>): () => number {
    const series = this.seriesFor(labels);
    const start = performance.now();
    return () => {
      const seconds = (performance.now() - start) / 1000;
      series.observe(seconds);
      return seconds;
    };
  }

  reset(): void {
    this.#series.clear();
  }

  /** What a prom-client registry reads (the shape of prom-client's Histogram#get). */
  get(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }>;
  }> {
    const values: Array<{
      labels: Record<string, string | number>;
      value: number;
      metricName: string;
    }> = [];
    for (const { labels, series: s } of this.#series.values()) {
      let acc = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        acc += s.counts[i] as number;
        values.push({ labels: { le, ...labels }, value: acc, metricName: `${this.name}_bucket` });
      });
      const count = acc + (s.counts[LATENCY_BUCKETS.length] as number);
      values.push({
        labels: { le: "+Inf", ...labels },
        value: count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }
}

/**
 * Times one persistent subscription consumer's events from their delivery until its acks
 * arrive: delivery times by position, at most `capacity` (the consumer's buffer size: the
 * server never has more in flight with it), the oldest forgotten first.
 */
export class AckTimer {
  readonly #deliveredMs = new Map<number, number>();
  readonly #observe: (seconds: number) => void;
  readonly #capacity: number;

  constructor(observe: (seconds: number) => void, capacity: number) {
    this.#observe = observe;
    this.#capacity = Math.max(1, capacity);
  }

  /** Events went to the consumer (a redelivery restarts the clock). */
  delivered(events: readonly { readonly position: number }[], nowMs: number): void {
    for (const e of events) {
      this.#deliveredMs.delete(e.position);
      if (this.#deliveredMs.size >= this.#capacity) {
        const oldest = this.#deliveredMs.keys().next();
        if (oldest.done !== true) this.#deliveredMs.delete(oldest.value);
      }
      this.#deliveredMs.set(e.position, nowMs);
    }
  }

  /** The consumer acked these positions: one observation each for those delivered to it. */
  acked(positions: readonly number[], nowMs: number): void {
    for (const p of positions) {
      const at = this.#deliveredMs.get(p);
      if (at === undefined) continue;
      this.#deliveredMs.delete(p);
      this.#observe(Math.max(0, nowMs - at) / 1000);
    }
  }

  /** Nacked positions are no longer waited for (a nack is not an ack). */
  forget(positions: readonly number[]): void {
    for (const p of positions) this.#deliveredMs.delete(p);
  }

  get size(): number {
    return this.#deliveredMs.size;
  }

  /** The consumer's handle, with its acks and nacks timed; closing it forgets the rest. */
  wrap(handle: ConsumerHandle): ConsumerHandle {
    return {
      id: handle.id,
      ack: (positions) => {
        this.acked(positions, performance.now());
        handle.ack(positions);
      },
      nack: (positions, action, reason, delayMs) => {
        this.forget(positions);
        handle.nack(positions, action, reason, delayMs);
      },
      close: () => {
        this.#deliveredMs.clear();
        handle.close();
      },
    };
  }
}
