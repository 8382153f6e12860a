import type { Frame } from "@chorus/protocol";
import {
  ConnectionError,
  errorFromWire,
  InvalidArgumentError,
  type WireErrorContext,
} from "../errors.js";
import type { Session } from "../connection/connection.js";
import type { Channel, ChannelHandler, OutgoingFrame } from "../transport/transport.js";
import type { Credentials } from "../types.js";
import { abortReason, type Abortable } from "../util/timers.js";

export interface RequestOptions {
  credentials?: Credentials | undefined;
  signal?: Abortable | undefined;
  errorContext?: WireErrorContext | undefined;
  /**
   * A read: when `signal` aborts (the operation's deadline passed, or the caller's signal),
   * tell the node with an Unsubscribe of the request's id, so that a read still waiting for
   * its turn there is dropped rather than run for nobody (a node that does not know the id
   * ignores it).
   */
  cancel?: boolean | undefined;
}

/**
 * Sends one request on a fresh channel and resolves with its single reply. An `error`
 * or `not_handled` reply rejects with the mapped error; a lost connection with
 * ConnectionError; an aborted signal with its reason.
 */
export function sendRequest(
  session: Session,
  frame: OutgoingFrame,
  options: RequestOptions,
): Promise<Frame>;
/**
 * The same, resolving with `map(reply)` (a throw of `map` rejects): the reply is read as it
 * arrives, without a further promise and turn of the microtask queue.
 */
export function sendRequest<T>(
  session: Session,
  frame: OutgoingFrame,
  options: RequestOptions,
  map: (reply: Frame) => T,
): Promise<T>;
export function sendRequest<T>(
  session: Session,
  frame: OutgoingFrame,
  options: RequestOptions,
  map?: (reply: Frame) => T,
): Promise<T | Frame> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  let resolve!: (value: T | Frame) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T | Frame>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  new PendingRequest<T>(session, frame, options, map, resolve, reject);
  return promise;
}

/** One request waiting for its reply: the channel's handler, and the signal's listener. */
class PendingRequest<T> implements ChannelHandler {
  readonly #options: RequestOptions;
  readonly #map: ((reply: Frame) => T) | undefined;
  readonly #resolve: (value: T | Frame) => void;
  readonly #reject: (error: unknown) => void;
  readonly #channel: Channel;
  #settled = false;
  readonly #onAbort = (): void => {
    if (this.#settled) return;
    if (this.#options.cancel === true) {
      try {
        this.#channel.send({ unsubscribe: {} });
      } catch {
        // The connection is gone: the node drops the read with it.
      }
    }
    this.#finish();
    this.#reject(abortReason(this.#options.signal!));
  };

  constructor(
    session: Session,
    frame: OutgoingFrame,
    options: RequestOptions,
    map: ((reply: Frame) => T) | undefined,
    resolve: (value: T | Frame) => void,
    reject: (error: unknown) => void,
  ) {
    this.#options = options;
    this.#map = map;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#channel = session.transport.open(this);
    options.signal?.addEventListener("abort", this.#onAbort, { once: true });
    try {
      this.#channel.send(
        options.credentials ? { ...frame, credentials: { ...options.credentials } } : frame,
      );
    } catch (err) {
      if (this.#settled) return;
      this.#finish();
      // A request refused before it left (too large) fails as it is, not as a lost connection.
      reject(
        err instanceof ConnectionError || err instanceof InvalidArgumentError
          ? err
          : new ConnectionError(String(err), { cause: err }),
      );
    }
  }

  onFrame(reply: Frame): void {
    if (this.#settled) return;
    this.#finish();
    if (reply.error)
      this.#reject(errorFromWire({ error: reply.error }, this.#options.errorContext));
    else if (reply.notHandled)
      this.#reject(errorFromWire({ notHandled: reply.notHandled }, this.#options.errorContext));
    else if (this.#map === undefined) this.#resolve(reply);
    else {
      let value: T;
      try {
        value = this.#map(reply);
      } catch (err) {
        this.#reject(err);
        return;
      }
      this.#resolve(value);
    }
  }

  onClose(error: Error): void {
    if (this.#settled) return;
    this.#finish();
    this.#reject(
      error instanceof ConnectionError
        ? error
        : new ConnectionError(error.message, { cause: error }),
    );
  }

  #finish(): void {
    this.#settled = true;
    this.#channel.close();
    this.#options.signal?.removeEventListener("abort", this.#onAbort);
  }
}
