import type { TimerHandle, Timers } from "../types.js";

/** Read once: `performance.timeOrigin` is a getter that costs more than `performance.now()`. */
const TIME_ORIGIN_MS = performance.timeOrigin;

/**
 * The real clock, backed by the global timers. Timers never keep the process alive. `now()`
 * is milliseconds since the epoch on the monotonic clock: deadlines measured on it hold
 * across steps of the wall clock.
 */
export const systemTimers: Timers = Object.freeze({
  now: () => TIME_ORIGIN_MS + performance.now(),
  setTimeout: (fn: () => void, ms: number): TimerHandle => {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return handle;
  },
  clearTimeout: (handle: TimerHandle) => clearTimeout(handle as NodeJS.Timeout),
});

/** A logger that drops everything. */
export const silentLogger = Object.freeze({
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
});

/** Rejects with the signal's reason when it is (or becomes) aborted. */
export function abortReason(signal: Abortable): Error {
  // The reason is handed on as it is (usually an Error); typed as Error for rejections.
  return (signal.reason ?? new DOMException("This operation was aborted", "AbortError")) as Error;
}

/**
 * Waits `ms` on the given timers. Rejects with the signal's reason when aborted.
 */
export function sleep(timers: Timers, ms: number, signal?: Abortable): Promise<void> {
  return new Promise<void>((resolve, reject: (reason: Error) => void) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      timers.clearTimeout(handle);
      reject(abortReason(signal!));
    };
    const handle = timers.setTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * An AbortSignal that aborts when any of `signals` aborts, or after `ms` with `timeoutReason()`
 * on the given timers. `dispose()` clears the timer and the listeners.
 */
export function linkedSignal(
  timers: Timers,
  signals: ReadonlyArray<AbortSignal | undefined>,
  ms?: number,
  timeoutReason?: () => unknown,
): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const cleanups: Array<() => void> = [];
  const dispose = () => {
    for (const fn of cleanups.splice(0)) fn();
  };
  for (const s of signals) {
    if (!s) continue;
    if (s.aborted) {
      controller.abort(abortReason(s));
      break;
    }
    const onAbort = () => {
      controller.abort(abortReason(s));
      dispose();
    };
    s.addEventListener("abort", onAbort, { once: true });
    cleanups.push(() => s.removeEventListener("abort", onAbort));
  }
  if (ms !== undefined && Number.isFinite(ms) && !controller.signal.aborted) {
    const handle = timers.setTimeout(
      () => {
        controller.abort(timeoutReason ? timeoutReason() : new Error(`timed out after ${ms} ms`));
        dispose();
      },
      Math.max(0, ms),
    );
    cleanups.push(() => timers.clearTimeout(handle));
  }
  return { signal: controller.signal, dispose };
}

/**
 * What the operation pipeline needs of a cancellation signal: the abort event and its
 * reason. An AbortSignal is one; {@link CancelSource} is a cheaper one.
 */
export interface Abortable {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/**
 * A cancellation source without EventTarget: every operation makes one, and an
 * AbortController costs several times more to create and to listen to. Like an
 * AbortSignal, listeners added after the abort are never called.
 */
export class CancelSource implements Abortable {
  aborted = false;
  reason: unknown = undefined;
  /** The first listener in a field of its own: an operation's signal has one listener, rarely more. */
  #first: (() => void) | undefined;
  #more: Set<() => void> | undefined;

  addEventListener(_type: "abort", listener: () => void): void {
    if (this.aborted) return;
    if (this.#first === undefined && !this.#more?.has(listener)) this.#first = listener;
    else if (this.#first !== listener) (this.#more ??= new Set()).add(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    if (this.#first === listener) this.#first = undefined;
    else this.#more?.delete(listener);
  }

  /** Throws the reason when aborted, like AbortSignal's. */
  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const first = this.#first;
    const more = this.#more;
    this.#first = undefined;
    this.#more = undefined;
    if (first) first();
    if (more) for (const fn of more) fn();
  }
}

/**
 * The deadlines of many operations on one timer. Operations of a client nearly all have
 * the same timeout, so a deadline is almost always the latest one: they are kept in a
 * doubly linked list sorted by due time, inserted from the tail (O(1) in practice) and
 * unlinked in O(1) when the operation settles. ONE timer of the injected `timers` is armed
 * for the earliest deadline; a deadline removed before it is due leaves the timer as it is
 * (the timer then finds nothing due, and is armed again for the new earliest one), so a
 * steady stream of operations sets about one timer per timeout period instead of a
 * setTimeout and a clearTimeout per operation. Deadlines fire when due, never early, and no
 * later than the timers run them. The timer is cleared once no deadline is left, so an idle
 * client holds no timer.
 */
class DeadlineQueue {
  readonly #timers: Timers;
  #head: OperationDeadline | undefined;
  #tail: OperationDeadline | undefined;
  #timer: TimerHandle | undefined;
  /** When the armed timer fires. */
  #timerDueMs = 0;
  /** Expiring deadlines: the timer is armed once that is done. */
  #firing = false;

  constructor(timers: Timers) {
    this.#timers = timers;
  }

  add(d: OperationDeadline): void {
    // From the tail: operations with the same timeout come in due order.
    let after = this.#tail;
    while (after !== undefined && after.dueMs > d.dueMs) after = after.prev;
    d.prev = after;
    d.next = after === undefined ? this.#head : after.next;
    if (d.next === undefined) this.#tail = d;
    else d.next.prev = d;
    if (after === undefined) this.#head = d;
    else after.next = d;
    d.queued = true;
    if (!this.#firing && (this.#timer === undefined || d.dueMs < this.#timerDueMs))
      this.#arm(d.dueMs);
  }

  remove(d: OperationDeadline): void {
    if (!d.queued) return;
    d.queued = false;
    if (d.prev === undefined) this.#head = d.next;
    else d.prev.next = d.next;
    if (d.next === undefined) this.#tail = d.prev;
    else d.next.prev = d.prev;
    d.prev = d.next = undefined;
    if (this.#head === undefined && this.#timer !== undefined) {
      this.#timers.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #arm(dueMs: number): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timerDueMs = dueMs;
    // Clamped to what a Node.js timer takes (a longer delay would fire at once); a deadline
    // further away is then reached by arming again.
    this.#timer = this.#timers.setTimeout(
      () => this.#fire(),
      Math.min(MAX_TIMER_DELAY_MS, Math.max(0, dueMs - this.#timers.now())),
    );
  }

  #fire(): void {
    this.#timer = undefined;
    this.#firing = true;
    try {
      const now = this.#timers.now();
      let d = this.#head;
      while (d !== undefined && d.dueMs <= now) {
        this.remove(d);
        d.expire();
        d = this.#head;
      }
    } finally {
      this.#firing = false;
      // The earliest deadline left (a timer that fired a little early finds it here too).
      if (this.#head !== undefined) this.#arm(this.#head.dueMs);
    }
  }
}

/** The longest delay a Node.js timer takes (about 24.8 days). */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** One queue per timers object: the clients on the same clock share its timer. */
const queues = new WeakMap<Timers, DeadlineQueue>();

/**
 * The deadline of one operation, and its cancellation signal (`signal` is itself): aborts
 * when the caller's signal aborts, or when `ms` have passed, with `timeoutReason()`.
 * `dispose()` takes it out of the deadline queue and removes the listener.
 */
class OperationDeadline extends CancelSource {
  dueMs = 0;
  prev: OperationDeadline | undefined;
  next: OperationDeadline | undefined;
  queued = false;
  readonly #queue: DeadlineQueue | undefined;
  readonly #userSignal: AbortSignal | undefined;
  readonly #timeoutReason: () => unknown;
  readonly #onUserAbort: (() => void) | undefined;

  constructor(
    timers: Timers,
    userSignal: AbortSignal | undefined,
    ms: number,
    timeoutReason: () => unknown,
  ) {
    super();
    this.#timeoutReason = timeoutReason;
    this.#userSignal = userSignal;
    if (userSignal?.aborted) {
      this.abort(abortReason(userSignal));
      return;
    }
    if (userSignal) {
      this.#onUserAbort = () => {
        this.abort(abortReason(userSignal));
        this.dispose();
      };
      userSignal.addEventListener("abort", this.#onUserAbort, { once: true });
    }
    if (Number.isFinite(ms)) {
      let queue = queues.get(timers);
      if (queue === undefined) queues.set(timers, (queue = new DeadlineQueue(timers)));
      this.#queue = queue;
      this.dueMs = timers.now() + Math.max(0, ms);
      queue.add(this);
    }
  }

  get signal(): Abortable {
    return this;
  }

  /** Called by the queue when due. */
  expire(): void {
    this.abort(this.#timeoutReason());
    this.dispose();
  }

  dispose(): void {
    this.#queue?.remove(this);
    if (this.#onUserAbort) this.#userSignal?.removeEventListener("abort", this.#onUserAbort);
  }
}

/**
 * The deadline of one operation: aborts when the caller's signal aborts, or after `ms`
 * with `timeoutReason()` (on the client's shared deadline queue: see DeadlineQueue).
 * `dispose()` clears the deadline and the listener.
 */
export function operationDeadline(
  timers: Timers,
  userSignal: AbortSignal | undefined,
  ms: number,
  timeoutReason: () => unknown,
): { readonly signal: Abortable; dispose(): void } {
  return new OperationDeadline(timers, userSignal, ms, timeoutReason);
}
