/**
 * Bounds on bytes a node holds for its clients, all connections together:
 *
 * - The receive budget (`--receive-budget-bytes`): a WebSocket frame is buffered until its last
 *   byte arrives, and it may be as large as `--max-frame-bytes` (16 MiB); HTTP request bodies
 *   are read whole before they are parsed, likewise. Each connection alone is bounded by that,
 *   but nothing bounded them together: a thousand connections that each send most of a large
 *   frame, and then nothing, hold 16 GB, before any request is decoded or its credentials are
 *   checked. A connection's count restarts with each whole message.
 * - The send budget (`--send-budget-bytes`): the answers and pushed events a client
 *   connection has not taken off its socket yet (native or HTTP). Each connection alone is
 *   bounded (it stops being read, its reads and subscriptions wait, past its high-water mark;
 *   an HTTP connection holds one answer at a time), but a page of events is up to 4 MiB, and
 *   many connections that read nothing hold many pages.
 *
 * When the total passes its budget, the connection holding the most is closed (1008, naming
 * the budget), and the next, until the total fits.
 */
import type { Logger } from "pino";
import type { Counter } from "prom-client";

/** What a budget holds: its flag and the words for it in messages. */
export interface BudgetKind {
  /** "unfinished input", "unsent output". */
  readonly holds: string;
  /** "--receive-budget-bytes". */
  readonly flag: string;
}

export const RECEIVE_BUDGET: BudgetKind = {
  holds: "unfinished input",
  flag: "--receive-budget-bytes",
};
export const SEND_BUDGET: BudgetKind = { holds: "unsent output", flag: "--send-budget-bytes" };

/** What a budget knows of one connection. */
export class BudgetHolder {
  /** Bytes the connection holds now. */
  held = 0;
  /** Closed for the budget: what it does before the socket ends is not counted. */
  evicted = false;
  constructor(
    private readonly budget: ByteBudget,
    /** Closes the connection (the budget has already forgotten its bytes). */
    readonly evict: (reason: string) => void,
  ) {}

  /** `bytes` more are held. */
  received(bytes: number): void {
    this.budget.set(this, this.held + bytes);
  }

  /** The connection holds `bytes` now. */
  holds(bytes: number): void {
    this.budget.set(this, bytes);
  }

  /** Nothing is held any more (a whole message arrived, or the connection ended). */
  release(): void {
    this.budget.release(this);
  }
}

export class ByteBudget {
  #used = 0;
  /** Holders that hold something now (the ones eviction looks at). */
  readonly #holding = new Set<BudgetHolder>();

  constructor(
    readonly limitBytes: number,
    private readonly kind: BudgetKind,
    private readonly evictions: Counter,
    private readonly logger: Logger,
  ) {}

  /** Bytes held by all connections now. */
  get used(): number {
    return this.#used;
  }

  holder(evict: (reason: string) => void): BudgetHolder {
    return new BudgetHolder(this, evict);
  }

  set(holder: BudgetHolder, bytes: number): void {
    if (holder.evicted) return;
    this.#used += bytes - holder.held;
    holder.held = bytes;
    if (bytes > 0) this.#holding.add(holder);
    else this.#holding.delete(holder);
    while (this.#used > this.limitBytes) {
      let largest: BudgetHolder | undefined;
      for (const h of this.#holding)
        if (largest === undefined || h.held > largest.held) largest = h;
      if (largest === undefined) break;
      const held = largest.held;
      this.release(largest);
      largest.evicted = true;
      this.evictions.inc();
      this.logger.warn(
        { heldBytes: held, budgetBytes: this.limitBytes },
        `closing the client connection that holds the most ${this.kind.holds}: the budget (${this.kind.flag}) is spent`,
      );
      largest.evict(
        `the node holds more than ${this.limitBytes} bytes of ${this.kind.holds} for its clients (${this.kind.flag}); this connection held the most (${held} bytes)`,
      );
    }
  }

  release(holder: BudgetHolder): void {
    this.#used -= holder.held;
    holder.held = 0;
    this.#holding.delete(holder);
  }
}
