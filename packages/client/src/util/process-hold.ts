/** The longest delay a Node.js timer takes (about 24.8 days). */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * Keeps the Node.js process alive while a client has work pending, and only then.
 *
 * The client's own timers (deadlines, backoffs, heartbeats) and sockets never keep the
 * process alive: an idle client that nobody closed must not stop a script from exiting.
 * But a script awaiting an operation must not exit either (with Node's "unsettled
 * top-level await", exit code 13) before the operation settles: its deadline has to fire.
 * So every piece of pending work (an operation, a subscription until it ends, `close()`)
 * takes a claim here, and while at least one claim is held, one ref'd handle holds the
 * event loop. It is one timer that never fires in practice, made on the first claim and
 * unref'd (not freed) when the last claim is released, so claiming costs a counter
 * update, not a timer, on the hot path. `dispose()` frees it for good.
 */
export class ProcessHold {
  #claims = 0;
  #handle: NodeJS.Timeout | undefined;
  #disposed = false;

  /**
   * Holds the process until the returned function is called (calling it again does
   * nothing). After `dispose()` it holds nothing.
   */
  acquire(): () => void {
    if (!this.claim()) return noop;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#release();
    };
  }

  /**
   * `acquire()` without the release function, for a caller that releases every claim once
   * with `unclaim()` (an operation, where the function would be one more allocation).
   * False (nothing claimed, nothing to release) after `dispose()`.
   */
  claim(): boolean {
    if (this.#disposed) return false;
    if (this.#claims++ === 0) {
      if (this.#handle) this.#handle.ref();
      else this.#handle = setInterval(noop, MAX_TIMER_DELAY_MS);
    }
    return true;
  }

  /** Releases one claim of `claim()`. */
  unclaim(): void {
    this.#release();
  }

  /** Claims not yet released. */
  get claims(): number {
    return this.#claims;
  }

  /** True while the process is held (some claim is not released). */
  get holding(): boolean {
    return this.#handle?.hasRef() ?? false;
  }

  /** Frees the handle whatever the claims; later claims hold nothing. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    this.#claims = 0;
    if (this.#handle) clearInterval(this.#handle);
    this.#handle = undefined;
  }

  #release(): void {
    if (this.#disposed || this.#claims === 0) return;
    if (--this.#claims === 0) this.#handle?.unref();
  }
}

function noop(): void {}
