import { Counter, Gauge, Registry } from "prom-client";
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
  }
}
