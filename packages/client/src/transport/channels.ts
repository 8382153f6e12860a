import type { Frame } from "@chorus/protocol";
import type { Logger } from "../types.js";
import type { Channel, ChannelHandler, OutgoingFrame } from "./transport.js";

/**
 * The channels of one transport by correlation id, whatever carries the frames: opening
 * one, handing each incoming frame to its channel, and telling every channel once when the
 * transport has ended.
 */
export class Channels {
  readonly #handlers = new Map<number, ChannelHandler>();
  readonly #logger: Logger;
  #nextId = 1;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /**
   * Opens a channel whose frames go out through `send` with its id. On a transport that has
   * ended (`ended`: why), the handler learns of it asynchronously, like any other close.
   */
  open(
    handler: ChannelHandler,
    ended: Error | undefined,
    send: (id: number, frame: OutgoingFrame) => void,
  ): Channel {
    const id = this.#nextId++;
    if (ended !== undefined) queueMicrotask(() => handler.onClose(ended));
    else this.#handlers.set(id, handler);
    return new OpenChannel(id, this.#handlers, send);
  }

  /** Hands a frame to the channel of its correlation id; a frame for none is dropped. */
  dispatch(frame: Frame): void {
    const handler = this.#handlers.get(Number(frame.correlationId));
    if (!handler) {
      this.#logger.debug("frame for an unknown correlation id dropped", {
        correlationId: frame.correlationId,
        body: frame.body,
      });
      return;
    }
    handler.onFrame(frame);
  }

  /** The transport ended: every open channel is told, once, and forgotten. */
  closeAll(reason: Error): void {
    const handlers = [...this.#handlers.values()];
    this.#handlers.clear();
    for (const h of handlers) {
      try {
        h.onClose(reason);
      } catch (err) {
        this.#logger.error("channel close handler threw", { error: String(err) });
      }
    }
  }
}

/** A channel as one object, not an object and two closures: one is opened per request. */
class OpenChannel implements Channel {
  readonly id: number;
  readonly #handlers: Map<number, ChannelHandler>;
  readonly #send: (id: number, frame: OutgoingFrame) => void;

  constructor(
    id: number,
    handlers: Map<number, ChannelHandler>,
    send: (id: number, frame: OutgoingFrame) => void,
  ) {
    this.id = id;
    this.#handlers = handlers;
    this.#send = send;
  }

  send(frame: OutgoingFrame): void {
    this.#send(this.id, frame);
  }

  close(): void {
    this.#handlers.delete(this.id);
  }
}
