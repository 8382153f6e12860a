/**
 * A bound on the client connections a node holds (its external ports: the native protocol and
 * the HTTP API). Each holds a file descriptor. Without a bound, a flood of connections (a
 * client that leaks them, or an attack) took every descriptor the process may have: the node
 * then accepted nothing more (its own clients, requests to its HTTP API) while the flood
 * lasted, and a write that needed a new file (the log's next segment) failed, after which the
 * node serves no write until it is restarted.
 *
 * - Up to `limit` connections are served.
 * - The next REFUSAL_MARGIN are answered 503 naming the limit (a WebSocket upgrade, or an
 *   HTTP request) and closed: a client learns why, and tries another node.
 * - Beyond that, a connection is closed as it is accepted, with nothing said: a flood must
 *   not cost an answer each.
 *
 * The limit is `--max-client-connections`, lowered at start to what the process's open-files
 * limit leaves after FILE_DESCRIPTOR_RESERVE for the node's own files and peer links.
 */
import { readFileSync } from "node:fs";
import type { Server } from "node:net";
import type { Logger } from "pino";
import type { Counter } from "prom-client";

/** Connections over the limit that are still answered (503) before they are closed. */
export const REFUSAL_MARGIN = 64;
/** Descriptors kept for the node itself: log segments, the index, peer links, the database. */
export const FILE_DESCRIPTOR_RESERVE = 256;
/** How often, at most, a refusal is logged while connections are refused. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** The process's soft limit of open files (Linux: /proc/self/limits); undefined if unknown. */
export function openFilesLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (m === null || m[1] === "unlimited") return undefined;
  return Number(m[1]);
}

/**
 * The limit in force: the configured one, or less when the open-files limit leaves less room
 * (`lowered` says so, for a warning at start).
 */
export function effectiveConnectionLimit(
  configured: number,
  openFiles: number | undefined,
): { limit: number; lowered: boolean } {
  if (openFiles === undefined) return { limit: configured, lowered: false };
  const room = Math.max(1, openFiles - FILE_DESCRIPTOR_RESERVE - REFUSAL_MARGIN);
  return room < configured ? { limit: room, lowered: true } : { limit: configured, lowered: false };
}

export class ClientConnections {
  #open = 0;
  #lastLogMs = -Infinity;

  constructor(
    readonly limit: number,
    private readonly refused: Counter,
    private readonly logger: Logger,
  ) {}

  /** Counts the connections `server` accepts (and closes those beyond the margin). */
  watch(server: Server): void {
    server.on("connection", (socket) => {
      if (this.#open >= this.limit + REFUSAL_MARGIN) {
        this.refused.inc();
        this.#logRefusal();
        socket.destroy();
        return;
      }
      this.#open++;
      socket.once("close", () => this.#open--);
    });
  }

  /** Client connections open now. */
  get open(): number {
    return this.#open;
  }

  /**
   * While over the limit: the reason a new upgrade or request is refused (503); undefined
   * otherwise. The connection asking is counted already.
   */
  refusal(): string | undefined {
    if (this.#open <= this.limit) return undefined;
    this.refused.inc();
    this.#logRefusal();
    return `this node holds ${this.#open - 1} client connections, its limit (--max-client-connections ${this.limit}); connect to another node or close unused connections`;
  }

  #logRefusal(): void {
    const now = performance.now();
    if (now - this.#lastLogMs < REFUSAL_LOG_INTERVAL_MS) return;
    this.#lastLogMs = now;
    this.logger.warn(
      { open: this.#open, limit: this.limit },
      "refusing client connections: the limit is reached",
    );
  }
}
