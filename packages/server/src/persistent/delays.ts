/**
 * Delayed retries: events a consumer nacked with "retry" and a delay wait here until their due
 * time. Pure bookkeeping (`DelayQueue`) and one timer for the earliest due time (`DueTimer`);
 * the clock and the timer functions are passed in, so both are tested without waiting.
 */

/** What the queue needs of an event: when it is due. */
export interface Delayable {
  dueMs: number;
}

/** Events waiting for their due time, kept in due order (ties: the order they were added). */
export class DelayQueue<T extends Delayable> {
  readonly #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  has(item: T): boolean {
    return this.#items.includes(item);
  }

  /** Adds `item`, due at `dueMs` (Infinity: not due until `reschedule` gives it a time). */
  add(item: T, dueMs: number): void {
    item.dueMs = dueMs;
    // After every item due at the same time or earlier.
    let lo = 0;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#items[mid] as T).dueMs <= dueMs) lo = mid + 1;
      else hi = mid;
    }
    this.#items.splice(lo, 0, item);
  }

  /** Moves an item already here to a new due time; false when it is not here. */
  reschedule(item: T, dueMs: number): boolean {
    if (!this.remove(item)) return false;
    this.add(item, dueMs);
    return true;
  }

  remove(item: T): boolean {
    const i = this.#items.indexOf(item);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    return true;
  }

  /** Takes out every item due at or before `nowMs`, in due order. */
  takeDue(nowMs: number): T[] {
    let n = 0;
    while (n < this.#items.length && (this.#items[n] as T).dueMs <= nowMs) n++;
    return this.#items.splice(0, n);
  }

  /** The earliest due time, or undefined when nothing has one. */
  nextDueMs(): number | undefined {
    const first = this.#items[0]?.dueMs;
    return first === undefined || first === Infinity ? undefined : first;
  }

  clear(): T[] {
    return this.#items.splice(0, this.#items.length);
  }
}

export interface TimerFunctions {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's timers, unref'd: a waiting retry never keeps the process alive. */
export const NODE_TIMERS: TimerFunctions = {
  setTimeout: (callback, ms) => {
    const t = setTimeout(callback, ms);
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * One timer, set for the earliest due time asked for: `arm(dueMs)` keeps the timer when it
 * fires no later than that, and replaces it otherwise. `onFire` runs when it fires; it arms
 * the timer again for what is still waiting.
 */
export class DueTimer {
  #handle: unknown;
  #atMs: number | undefined;
  #closed = false;

  constructor(
    private readonly now: () => number,
    private readonly onFire: () => void,
    private readonly timers: TimerFunctions = NODE_TIMERS,
  ) {}

  /** When the timer fires next, or undefined when it is not set. */
  get atMs(): number | undefined {
    return this.#atMs;
  }

  arm(dueMs: number | undefined): void {
    if (this.#closed || dueMs === undefined) return;
    if (this.#atMs !== undefined && this.#atMs <= dueMs) return;
    this.cancel();
    this.#atMs = dueMs;
    // At least 1 ms: a timer set for a fraction of a millisecond ahead would find nothing due yet.
    const ms = Math.max(1, Math.ceil(dueMs - this.now()));
    this.#handle = this.timers.setTimeout(() => {
      this.#handle = undefined;
      this.#atMs = undefined;
      if (!this.#closed) this.onFire();
    }, ms);
  }

  cancel(): void {
    if (this.#handle !== undefined) this.timers.clearTimeout(this.#handle);
    this.#handle = undefined;
    this.#atMs = undefined;
  }

  /** Cancels the timer for good: `arm` does nothing after this. */
  close(): void {
    this.#closed = true;
    this.cancel();
  }
}
