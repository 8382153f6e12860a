import pRetry, { type RetryContext } from "p-retry";
import type { Connection, Session } from "../connection/connection.js";
import { backoffDelayMs } from "../connection/backoff.js";
import {
  ClientClosedError,
  isRetriable,
  NotHandledError,
  NotLeaderError,
  TimeoutError,
} from "../errors.js";
import { DEFAULT_MAX_BACKOFF_DELAY_MS } from "../settings/defaults.js";
import type { OperationOptions } from "../types.js";
import { operationDeadline, sleep, type Abortable } from "../util/timers.js";
import { connectionFor, type OperationContext } from "./context.js";

export interface RetryOptions extends OperationOptions {
  /** For messages: "appendToStream", ... */
  name: string;
  /** Effective requireLeader (the caller applies the operation's default). */
  requireLeader: boolean;
}

/**
 * Runs `attempt` on a live session until it succeeds, fails with a non-retriable error,
 * runs out of retries (limitRetriesForOperationTo), out of the client's retry budget, or
 * out of time (the operation timeout spans every attempt and the waits between them ->
 * TimeoutError). Retried: connection loss, NOT_LEADER (after moving to the leader),
 * NOT_READY, TOO_BUSY. The caller's request must be the same on every attempt (same event
 * ids), so a retried append is idempotent. With `requireLeader` the operation goes through
 * the leader connection, otherwise through the one of the node preference.
 *
 * The loop is p-retry's:
 * - `retries`: limitRetriesForOperationTo;
 * - `signal`: the operation's deadline, which aborts with TimeoutError when the timeout
 *   passes (on the injected timers) or with the reason of the caller's signal;
 * - `maxRetryTime`: the same timeout on p-retry's monotonic clock, so a failure that comes
 *   after the deadline (its timer not run yet) is not retried either (-> TimeoutError);
 * - `onFailedAttempt`: every failure; an aborted operation stops there with the signal's
 *   reason, and a NOT_LEADER (or read-only) reply moves the connection to the leader;
 * - `shouldRetry`: whether the error is retriable and the client's retry budget allows
 *   one more retry; when it does, it waits the backoff before the next attempt.
 * The first attempt runs before p-retry is involved: an operation that succeeds at once (all
 * but a few) costs no retry machinery, and its failure is the first one p-retry handles.
 * On a live session it is even made synchronously, without an await, and the returned
 * promise is the attempt's with one reaction: an append's reply reaches its caller in two
 * turns of the microtask queue.
 * p-retry's own wait is turned off (`minTimeout: 0`, `randomize: false`): it would sleep
 * on the global setTimeout and jitter with Math.random, where the client's backoff runs on
 * the injected timers and randomness (settings.timers, settings.random) so that tests can
 * be deterministic. The backoff is the client's capped, jittered exponential one
 * (backoffDelayMs from reconnectionDelay), skipped after a lost connection (the next
 * attempt waits for the reconnect) and after a move to a leader a NOT_LEADER named.
 */
export function withRetry<T>(
  ctx: OperationContext,
  options: RetryOptions,
  attempt: (session: Session, signal: Abortable) => Promise<T>,
): Promise<T> {
  return new RetriedOperation(ctx, options, attempt).start();
}

/** One run of withRetry: its state in one object rather than in a closure each. */
class RetriedOperation<T> {
  readonly #ctx: OperationContext;
  readonly #options: RetryOptions;
  readonly #attempt: (session: Session, signal: Abortable) => Promise<T>;
  readonly #connection: Connection;
  readonly #timeoutMs: number;
  readonly #startedMs: number;
  readonly #deadline: { readonly signal: Abortable; dispose(): void };
  /** The session of the latest attempt (undefined when it failed before having one). */
  #session: Session | undefined;
  #lastError: unknown;

  constructor(
    ctx: OperationContext,
    options: RetryOptions,
    attempt: (session: Session, signal: Abortable) => Promise<T>,
  ) {
    this.#ctx = ctx;
    this.#options = options;
    this.#attempt = attempt;
    this.#connection = connectionFor(ctx, options.requireLeader);
    this.#timeoutMs = options.timeoutMs ?? ctx.settings.operationTimeoutMs;
    this.#deadline = operationDeadline(ctx.settings.timers, options.signal, this.#timeoutMs, () =>
      this.#timeoutError(),
    );
    this.#startedMs = performance.now();
  }

  start(): Promise<T> {
    this.#ctx.retryBudget.deposit();
    const signal = this.#deadline.signal;
    if (signal.aborted) {
      this.#deadline.dispose();
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as it came
      return Promise.reject(signal.reason);
    }
    let first: Promise<T>;
    const live = this.#connection.liveSession();
    if (live === undefined) first = this.#once();
    else {
      try {
        this.#session = live;
        this.#checkLeader(live);
        first = this.#attempt(live, signal);
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rethrown as it came
        first = Promise.reject(err);
      }
    }
    return first.then(
      (value) => {
        this.#deadline.dispose();
        return value;
      },
      (err: unknown) => this.#retry(err),
    );
  }

  #timeoutError(): TimeoutError {
    const where = this.#ctx.partition === undefined ? "" : ` (partition ${this.#ctx.partition})`;
    // Still waiting for a connection, no attempt made: say why there is none.
    const unconnected =
      this.#lastError === undefined && this.#session === undefined
        ? this.#connection.lastFailure
        : undefined;
    return new TimeoutError(
      `${this.#options.name}${where} timed out after ${this.#timeoutMs} ms` +
        (unconnected ? `: no connection yet: ${unconnected.message}` : ""),
      { cause: this.#lastError ?? unconnected },
    );
  }

  #checkLeader(s: Session): void {
    if (this.#options.requireLeader && s.node.state !== "Leader") {
      throw new NotLeaderError(
        undefined,
        `${this.#options.name} requires the leader; connected to a ${s.node.state}`,
      );
    }
  }

  /** One attempt on the session `session()` gives, once it gives one. */
  async #once(): Promise<T> {
    this.#session = undefined;
    const session = await this.#connection.session({
      signal: this.#deadline.signal,
      queueTimeoutMs: this.#ctx.settings.queueTimeoutMs,
    });
    this.#session = session;
    this.#checkLeader(session);
    return await this.#attempt(session, this.#deadline.signal);
  }

  /** The retries, after the first attempt failed with `firstFailure`. */
  async #retry(firstFailure: unknown): Promise<T> {
    const { settings, retryBudget } = this.#ctx;
    const options = this.#options;
    const signal = this.#deadline.signal;
    const connection = this.#connection;
    try {
      let replayed = false;
      return await pRetry(
        // p-retry's first attempt is the one that already failed.
        () => {
          if (replayed) return this.#once();
          replayed = true;
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rethrown as it came
          return Promise.reject(firstFailure);
        },
        {
          retries: settings.maxRetries,
          // p-retry uses `aborted`, `reason`, `throwIfAborted()` and the "abort" listeners of
          // its signal; the operation's CancelSource has all of them, for a fraction of the
          // cost of an AbortController.
          signal: signal as unknown as AbortSignal,
          // What is left of the timeout after the first attempt.
          maxRetryTime: Math.max(0, this.#timeoutMs - (performance.now() - this.#startedMs)),
          minTimeout: 0,
          randomize: false,
          onFailedAttempt: ({ error }: RetryContext) => {
            // Aborted or timed out: whatever the attempt failed with, the signal says why.
            if (signal.aborted) throw signal.reason;
            this.#lastError = error;
            const session = this.#session;
            if (session && (error instanceof NotLeaderError || isReadOnly(error))) {
              connection.retarget(
                session.transport,
                error instanceof NotLeaderError ? error.leader : undefined,
              );
            }
          },
          shouldRetry: async ({ error, retriesConsumed }: RetryContext) => {
            if (error instanceof ClientClosedError || !isRetriableHere(error)) return false;
            if (!retryBudget.tryWithdraw()) {
              // Said once when the budget runs dry, not for every operation it then fails.
              const level = retryBudget.refusalsInARow === 1 ? "warn" : "debug";
              settings.logger[level](
                "retry budget spent: failing the operation instead of retrying it",
                { operation: options.name, error: error.message },
              );
              return false;
            }
            settings.logger.debug("retrying operation", {
              operation: options.name,
              retry: retriesConsumed + 1,
              error: error.message,
            });
            // A lost connection waits in session() for the reconnect, and a NOT_LEADER that
            // named the leader has already moved there; everything else backs off.
            const movedToLeader =
              error instanceof NotLeaderError && error.leader?.tcp !== undefined;
            if (error.name !== "ConnectionError" && !movedToLeader) {
              const delayMs = backoffDelayMs(
                retriesConsumed + 1,
                settings.reconnectionDelayMs,
                DEFAULT_MAX_BACKOFF_DELAY_MS,
                settings.random,
              );
              // Rejects with the signal's reason when the deadline passes meanwhile.
              await sleep(settings.timers, delayMs, signal);
            }
            return true;
          },
        },
      );
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      // p-retry stopped at maxRetryTime a failure it would have retried: out of time.
      if (
        performance.now() - this.#startedMs >= this.#timeoutMs &&
        !(err instanceof ClientClosedError) &&
        isRetriableHere(err)
      ) {
        this.#lastError = err;
        throw this.#timeoutError();
      }
      throw err;
    } finally {
      this.#deadline.dispose();
    }
  }
}

function isReadOnly(err: unknown): boolean {
  return err instanceof NotHandledError && err.reason === "IS_READ_ONLY";
}

function isRetriableHere(err: unknown): boolean {
  return isRetriable(err) || isReadOnly(err);
}
