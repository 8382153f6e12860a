/** How many retries one client may make, as a share of its operations. */
export interface RetryBudgetSettings {
  /** Retries allowed per operation started (0.2: one retry per five operations). */
  readonly ratio: number;
  /** Retries allowed per second whatever the traffic, so a quiet client can retry too. */
  readonly minRetriesPerSecond: number;
  /** Operations and retries count towards the budget for this long, in ms. */
  readonly windowMs: number;
}

/** The window is kept in this many slots; a deposit or withdrawal expires with its slot. */
const SLOTS = 10;
/** Balances are sums of multiples of `ratio`: tolerate the rounding of those sums. */
const EPSILON = 1e-9;

interface Slot {
  /** Index of the slot's time span since the epoch: floor(now / slotMs). */
  span: number;
  deposits: number;
  withdrawals: number;
}

/**
 * One client's allowance of retries (after Finagle's RetryBudget; gRPC's retry throttling
 * is the same idea without the clock). Every operation deposits `ratio` of a retry, every
 * retry withdraws one; both count for `windowMs`. A reserve of `minRetriesPerSecond`
 * per second of the window comes on top. Within any window the client so retries at most
 * `ratio` × its operations + the reserve: when a leader change fails every request in
 * flight at once, each may be retried, but a cluster that keeps failing them is not met
 * with a storm of retries. Pure: the clock is injected.
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #reserve: number;
  readonly #slotMs: number;
  readonly #now: () => number;
  readonly #slots: Slot[] = Array.from({ length: SLOTS }, () => ({
    span: -Infinity,
    deposits: 0,
    withdrawals: 0,
  }));
  #refusalsInARow = 0;

  constructor(settings: RetryBudgetSettings, now: () => number) {
    this.#ratio = settings.ratio;
    this.#reserve = (settings.minRetriesPerSecond * settings.windowMs) / 1000;
    this.#slotMs = settings.windowMs / SLOTS;
    this.#now = now;
  }

  /** An operation started: it earns the client `ratio` of a retry. */
  deposit(): void {
    // Deposits earn nothing at a ratio of 0 (the unlimited budget): no clock read then.
    if (this.#ratio === 0) return;
    this.#current().deposits++;
  }

  /** A retry is about to be made: true when the budget allows it (and it is then counted). */
  tryWithdraw(): boolean {
    if (this.balance < 1 - EPSILON) {
      this.#refusalsInARow++;
      return false;
    }
    this.#current().withdrawals++;
    this.#refusalsInARow = 0;
    return true;
  }

  /** Retries the budget allows now (may be fractional). */
  get balance(): number {
    const oldest = this.#span() - SLOTS + 1;
    let deposits = 0;
    let withdrawals = 0;
    for (const slot of this.#slots) {
      if (slot.span < oldest) continue;
      deposits += slot.deposits;
      withdrawals += slot.withdrawals;
    }
    return this.#reserve + deposits * this.#ratio - withdrawals;
  }

  /** Retries refused since the last one allowed (1 on the first refusal). */
  get refusalsInARow(): number {
    return this.#refusalsInARow;
  }

  #span(): number {
    return Math.floor(this.#now() / this.#slotMs);
  }

  #current(): Slot {
    const span = this.#span();
    const slot = this.#slots[((span % SLOTS) + SLOTS) % SLOTS]!;
    if (slot.span !== span) {
      slot.span = span;
      slot.deposits = 0;
      slot.withdrawals = 0;
    }
    return slot;
  }
}

/** Settings of a budget that never refuses: retries are then limited per operation only. */
export const UNLIMITED_RETRY_BUDGET: RetryBudgetSettings = Object.freeze({
  ratio: 0,
  minRetriesPerSecond: Infinity,
  windowMs: 1_000,
});
