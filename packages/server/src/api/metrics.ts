import { Counter, Gauge, Registry } from "prom-client";
import type { GroupInfo } from "../persistent/group.js";
import type { StreamStore } from "../streams/types.js";

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
  readonly httpRequests: Counter<"method" | "status">;
  /** The persistent subscription groups this node serves; set by the native API. */
  persistentGroups: () => readonly GroupInfo[] = () => [];

  constructor(store: () => StreamStore | undefined) {
    const registers = [this.registry];
    this.appends = new Counter({
      name: "chorus_appends_total",
      help: "Append requests answered",
      labelNames: ["interface", "result"],
      registers,
    });
    this.eventsWritten = new Counter({
      name: "chorus_events_written_total",
      help: "Events written by appends",
      labelNames: ["interface"],
      registers,
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
    this.httpRequests = new Counter({
      name: "chorus_http_requests_total",
      help: "HTTP requests answered",
      labelNames: ["method", "status"],
      registers,
    });

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
      ["parked", "Events in the group's parked stream", (g) => g.parkedCount],
      ["delivered", "Events delivered since this node took the group on", (g) => g.totalDelivered],
      ["acked", "Events acknowledged since this node took the group on", (g) => g.totalAcked],
    ];
    for (const [name, help, pick] of perGroup) groupGauge(`chorus_persistent_${name}`, help, pick);
  }
}
