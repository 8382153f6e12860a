/**
 * A bound on the client input a node holds before it is whole: a WebSocket frame is buffered
 * until its last byte arrives, and it may be as large as `--max-frame-bytes` (16 MiB). Each
 * connection alone is bounded by that, but nothing bounded them together: a thousand
 * connections that each send most of a large frame, and then nothing, hold 16 GB, before any
 * request is decoded or its credentials are checked, and the node runs out of memory.
 *
 * HTTP request bodies are read whole before they are parsed, up to the same size, likewise.
 *
 * Every connection's incomplete input (a frame's, or a body's) counts against one budget
 * (`--receive-budget-bytes`).
 * When a chunk takes the total past it, the connection holding the most is closed (1008,
 * naming the budget), and the next, until the total fits. A client sending whole frames at any
 * rate holds next to nothing: a connection's count restarts with each whole message.
 */
import type { Logger } from "pino";
import type { Counter } from "prom-client";

/** What the budget knows of one connection. */
export class ReceiveHolder {
  /** Bytes received since the connection's last whole message. */
  held = 0;
  /** Closed for the budget: what still arrives before the socket ends is not counted. */
  evicted = false;
  constructor(
    private readonly budget: ReceiveBudget,
    /** Closes the connection (the budget has already forgotten its bytes). */
    readonly evict: (reason: string) => void,
  ) {}

  /** `bytes` more arrived. */
  received(bytes: number): void {
    this.budget.received(this, bytes);
  }

  /** A whole message arrived (or the connection ended): its bytes are no longer held. */
  release(): void {
    this.budget.release(this);
  }
}

export class ReceiveBudget {
  #used = 0;
  /** Holders that hold something now (the ones eviction looks at). */
  readonly #holding = new Set<ReceiveHolder>();

  constructor(
    readonly limitBytes: number,
    private readonly evictions: Counter,
    private readonly logger: Logger,
  ) {}

  /** Bytes held by all connections now. */
  get used(): number {
    return this.#used;
  }

  holder(evict: (reason: string) => void): ReceiveHolder {
    return new ReceiveHolder(this, evict);
  }

  received(holder: ReceiveHolder, bytes: number): void {
    if (holder.evicted) return;
    holder.held += bytes;
    this.#used += bytes;
    this.#holding.add(holder);
    while (this.#used > this.limitBytes) {
      let largest: ReceiveHolder | undefined;
      for (const h of this.#holding)
        if (largest === undefined || h.held > largest.held) largest = h;
      if (largest === undefined) break;
      const held = largest.held;
      this.release(largest);
      largest.evicted = true;
      this.evictions.inc();
      this.logger.warn(
        { heldBytes: held, budgetBytes: this.limitBytes },
        "closing the client connection that holds the most unfinished input: the receive budget is spent",
      );
      largest.evict(
        `the node holds more than ${this.limitBytes} bytes of unfinished input from its clients (--receive-budget-bytes); this connection held the most (${held} bytes)`,
      );
    }
  }

  release(holder: ReceiveHolder): void {
    this.#used -= holder.held;
    holder.held = 0;
    this.#holding.delete(holder);
  }
}
