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
  const deadline = operationDeadline(
    settings.timers,
    options.signal,
    timeoutMs,
    () => new TimeoutError(`${options.name} timed out after ${timeoutMs} ms`, { cause: lastError }),
  );
  const signal = deadline.signal;
  retryBudget.deposit();
  try {
    for (let retries = 0; ; retries++) {
      let session: Session | undefined;
      try {
        session = await connection.session({ signal, queueTimeoutMs: settings.queueTimeoutMs });
        if (options.requireLeader && session.node.state !== "Leader") {
          throw new NotLeaderError(
            undefined,
            `${options.name} requires the leader; connected to a ${session.node.state}`,
          );
        }
        return await attempt(session, signal);
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (
          err instanceof ClientClosedError ||
          !isRetriableHere(err) ||
          retries >= settings.maxRetries
        )
          throw err;
        if (!retryBudget.tryWithdraw()) {
          // Said once when the budget runs dry, not for every operation it then fails.
          const level = retryBudget.refusalsInARow === 1 ? "warn" : "debug";
          settings.logger[level](
            "retry budget spent: failing the operation instead of retrying it",
            {
              operation: options.name,
              error: (err as Error).message,
            },
          );
          throw err;
        }
        lastError = err;
        settings.logger.debug("retrying operation", {
          operation: options.name,
          retry: retries + 1,
          error: (err as Error).message,
        });
        if (session && (err instanceof NotLeaderError || isReadOnly(err))) {
          connection.retarget(
            session.transport,
            err instanceof NotLeaderError ? err.leader : undefined,
          );
        }
        // A lost connection waits in session() for the reconnect; everything else backs off.
        const movedToLeader = err instanceof NotLeaderError && err.leader?.tcp !== undefined;
        if (!(err instanceof Error && err.name === "ConnectionError") && !movedToLeader) {
          await sleep(
            settings.timers,
            backoffDelayMs(
              retries + 1,
              settings.reconnectionDelayMs,
              DEFAULT_MAX_BACKOFF_DELAY_MS,
              settings.random,
            ),
            signal,
          ).catch(() => {
            throw signal.reason;
          });
        }
      }
    }
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
