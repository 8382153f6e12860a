import type { TimerHandle, Timers } from "../types.js";

/** The real clock, backed by the global timers. Timers never keep the process alive. */
export const systemTimers: Timers = Object.freeze({
  now: () => Date.now(),
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
  #listeners: Set<() => void> | undefined;

  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.aborted) (this.#listeners ??= new Set()).add(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    this.#listeners?.delete(listener);
  }

  /** Throws the reason when aborted, like AbortSignal's. */
  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) for (const fn of listeners) fn();
  }
}

/**
 * The deadline of one operation: aborts when the caller's signal aborts, or after `ms`
 * with `timeoutReason()`. `dispose()` clears the timer and the listener.
 */
export function operationDeadline(
  timers: Timers,
  userSignal: AbortSignal | undefined,
  ms: number,
  timeoutReason: () => unknown,
): { signal: Abortable; dispose(): void } {
  const source = new CancelSource();
  let handle: TimerHandle | undefined;
  const onAbort = () => {
    source.abort(abortReason(userSignal!));
    dispose();
  };
  const dispose = () => {
    if (handle !== undefined) timers.clearTimeout(handle);
    handle = undefined;
    userSignal?.removeEventListener("abort", onAbort);
  };
  if (userSignal?.aborted) {
    source.abort(abortReason(userSignal));
    return { signal: source, dispose };
  }
  userSignal?.addEventListener("abort", onAbort, { once: true });
  if (Number.isFinite(ms)) {
    handle = timers.setTimeout(
      () => {
        handle = undefined;
        source.abort(timeoutReason());
        dispose();
      },
      Math.max(0, ms),
    );
  }
  return { signal: source, dispose };
}
