/**
 * What catch-up and persistent subscriptions share: following the user's AbortSignal, the
 * loop that subscribes again after a lost connection or a leader change (with backoff and a
 * bound on failures), and one subscribe conversation on a channel.
 */
import type { Frame } from "@chorus/protocol";
import type { Connection, Session } from "../connection/connection.js";
import { backoffDelayMs } from "../connection/backoff.js";
import {
  ClientClosedError,
  ConnectionError,
  NotHandledError,
  NotLeaderError,
  SubscriptionDroppedError,
} from "../errors.js";
import type { ConnectionSettings } from "../settings/connection-settings.js";
import { DEFAULT_MAX_BACKOFF_DELAY_MS } from "../settings/defaults.js";
import type { Channel, OutgoingFrame } from "../transport/transport.js";
import { sleep } from "../util/timers.js";

/**
 * Ends the subscription (via `end`) when the user's signal aborts; stops listening once the
 * subscription's own controller aborts.
 */
export function followSignal(
  signal: AbortSignal | undefined,
  own: AbortController,
  end: (reason: Error) => void,
): void {
  if (!signal) return;
  const onAbort = () =>
    end(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
  if (signal.aborted) queueMicrotask(onAbort);
  else signal.addEventListener("abort", onAbort, { once: true });
  own.signal.addEventListener("abort", () => signal.removeEventListener("abort", onAbort), {
    once: true,
  });
}

export interface RejoinLoop {
  readonly settings: ConnectionSettings;
  readonly connection: Connection;
  /** The subscription's own signal: aborted when it ends. */
  readonly signal: AbortSignal;
  isEnded(): boolean;
  /** When set, a session on another node is refused with NotLeaderError naming `what`. */
  readonly leaderOnly?: string;
  /** Work before each attempt (e.g. resolving a start at "end"). */
  before?(): Promise<void>;
  /** Subscribes on one session; resolves when the connection is lost, rejects when refused or dropped. */
  attempt(session: Session, onConfirmed: () => void): Promise<void>;
  /** Whether subscribing again may help after `err`. */
  retriable(err: unknown): boolean;
  /** Ends the subscription; with an error, it was dropped. */
  end(error: Error | undefined, emitDropped: boolean): void;
  /** The connection was lost or an attempt failed; another follows. */
  onRetry?(err: Error): void;
}

/**
 * Subscribes, and subscribes again after every loss, until the subscription ends, an error is
 * not retriable, or `maxReconnections` attempts in a row failed. Moves to the leader named in a
 * NOT_LEADER answer; backs off between failed attempts (not after a lost connection, whose
 * reconnect the connection paces itself).
 */
export async function runRejoinLoop(o: RejoinLoop): Promise<void> {
  const { settings, connection, signal } = o;
  let failures = 0;
  while (!o.isEnded()) {
    let session: Session | undefined;
    try {
      await o.before?.();
      session = await connection.session({ signal });
      if (o.leaderOnly !== undefined && session.node.state !== "Leader") {
        throw new NotLeaderError(
          undefined,
          `${o.leaderOnly}; connected to a ${session.node.state}`,
        );
      }
      await o.attempt(session, () => (failures = 0));
      if (o.isEnded()) return;
      o.onRetry?.(new ConnectionError("the connection was lost"));
    } catch (err) {
      if (o.isEnded()) return;
      if (err instanceof ClientClosedError) {
        o.end(undefined, false);
        return;
      }
      if (!o.retriable(err) || failures >= settings.maxReconnections) {
        const error =
          err instanceof Error && err.name !== "AbortError"
            ? err
            : new SubscriptionDroppedError("subscription failed", { cause: err });
        o.end(error, true);
        return;
      }
      failures++;
      if (err instanceof Error) o.onRetry?.(err);
      if (
        session &&
        (err instanceof NotLeaderError ||
          (err instanceof NotHandledError && err.reason === "IS_READ_ONLY"))
      ) {
        connection.retarget(
          session.transport,
          err instanceof NotLeaderError ? err.leader : undefined,
        );
      }
      const movedToLeader = err instanceof NotLeaderError && err.leader?.tcp !== undefined;
      if (!(err instanceof ConnectionError) && !movedToLeader) {
        try {
          await sleep(
            settings.timers,
            backoffDelayMs(
              failures,
              settings.reconnectionDelayMs,
              DEFAULT_MAX_BACKOFF_DELAY_MS,
              settings.random,
            ),
            signal,
          );
        } catch {
          return;
        }
      }
    }
  }
}

export interface ChannelConversation {
  /** The subscription's own signal: its abort ends the conversation. */
  readonly signal: AbortSignal;
  /** The subscribe request, built when the channel is open. */
  request(): OutgoingFrame;
  /** Handles a frame; throwing ends the conversation with that error. */
  onFrame(frame: Frame): void;
  /** The channel in use (undefined once it is closed). */
  setChannel(channel: Channel | undefined): void;
  onLost?(error: Error): void;
}

/**
 * One subscribe conversation on a fresh channel of `session`: resolves when the connection is
 * lost or the subscription ends, rejects when a frame handler throws (refused, dropped).
 */
export function converse(session: Session, c: ChannelConversation): Promise<void> {
  // Removed when the conversation is over: a listener per resubscription would pile up.
  let onAbort = () => {};
  return new Promise<void>((resolve, reject) => {
    // Ended while the session was on its way: an aborted signal calls no new listener.
    if (c.signal.aborted) {
      resolve();
      return;
    }
    let current: Channel | undefined;
    const channel = session.transport.open({
      onFrame: (frame) => {
        try {
          c.onFrame(frame);
        } catch (err) {
          channel.close();
          if (current === channel) c.setChannel((current = undefined));
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      },
      onClose: (error) => {
        if (current === channel) c.setChannel((current = undefined));
        c.onLost?.(error);
        resolve();
      },
    });
    c.setChannel((current = channel));
    onAbort = () => resolve();
    c.signal.addEventListener("abort", onAbort, { once: true });
    try {
      channel.send(c.request());
    } catch (err) {
      channel.close();
      c.setChannel((current = undefined));
      reject(
        err instanceof ConnectionError ? err : new ConnectionError(String(err), { cause: err }),
      );
    }
  }).finally(() => c.signal.removeEventListener("abort", onAbort));
}
