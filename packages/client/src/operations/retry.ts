import pRetry, { type RetryContext } from "p-retry";
import type { Session } from "../connection/connection.js";
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
 * p-retry's own wait is turned off (`minTimeout: 0`, `randomize: false`): it would sleep
 * on the global setTimeout and jitter with Math.random, where the client's backoff runs on
 * the injected timers and randomness (settings.timers, settings.random) so that tests can
 * be deterministic. The backoff is the client's capped, jittered exponential one
 * (backoffDelayMs from reconnectionDelay), skipped after a lost connection (the next
 * attempt waits for the reconnect) and after a move to a leader a NOT_LEADER named.
 */
export async function withRetry<T>(
  ctx: OperationContext,
  options: RetryOptions,
  attempt: (session: Session, signal: Abortable) => Promise<T>,
): Promise<T> {
  const { settings, retryBudget } = ctx;
  const connection = connectionFor(ctx, options.requireLeader);
  const timeoutMs = options.timeoutMs ?? settings.operationTimeoutMs;
  let lastError: unknown;
  const timeoutError = () =>
    new TimeoutError(`${options.name} timed out after ${timeoutMs} ms`, { cause: lastError });
  const deadline = operationDeadline(settings.timers, options.signal, timeoutMs, timeoutError);
  const signal = deadline.signal;
  /** The session of the latest attempt (undefined when it failed before having one). */
  let session: Session | undefined;
  retryBudget.deposit();
  const startedMs = performance.now();
  const sessionOptions = { signal, queueTimeoutMs: settings.queueTimeoutMs };
  const checkLeader = (s: Session): void => {
    if (options.requireLeader && s.node.state !== "Leader") {
      throw new NotLeaderError(
        undefined,
        `${options.name} requires the leader; connected to a ${s.node.state}`,
      );
    }
  };
  const once = async (): Promise<T> => {
    session = undefined;
    session = await connection.session(sessionOptions);
    checkLeader(session);
    return await attempt(session, signal);
  };
  try {
    if (signal.aborted) throw signal.reason;
    let firstFailure: unknown;
    try {
      // once(), inline: one async frame less on every operation.
      session = await connection.session(sessionOptions);
      checkLeader(session);
      return await attempt(session, signal);
    } catch (err) {
      firstFailure = err;
    }
    let replayed = false;
    return await pRetry(
      // p-retry's first attempt is the one that already failed.
      () => {
        if (replayed) return once();
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
        maxRetryTime: Math.max(0, timeoutMs - (performance.now() - startedMs)),
        minTimeout: 0,
        randomize: false,
        onFailedAttempt: ({ error }: RetryContext) => {
          // Aborted or timed out: whatever the attempt failed with, the signal says why.
          if (signal.aborted) throw signal.reason;
          lastError = error;
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
          const movedToLeader = error instanceof NotLeaderError && error.leader?.tcp !== undefined;
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
      performance.now() - startedMs >= timeoutMs &&
      !(err instanceof ClientClosedError) &&
      isRetriableHere(err)
    ) {
      lastError = err;
      throw timeoutError();
    }
    throw err;
  } finally {
    deadline.dispose();
  }
}

function isReadOnly(err: unknown): boolean {
  return err instanceof NotHandledError && err.reason === "IS_READ_ONLY";
}

function isRetriableHere(err: unknown): boolean {
  return isRetriable(err) || isReadOnly(err);
}
