import type { Frame } from "@chorus/protocol";
import type { Logger } from "../types.js";
import type { Channel, ChannelHandler, OutgoingFrame } from "./transport.js";

/**
 * Slots of the channel table: more than the requests a client keeps in flight on one
 * connection in practice (a pipelined writer keeps hundreds).
 */
const SLOTS = 4096;

/**
 * The open channels by correlation id: slot `id % SLOTS` for each, and a Map for the few a
 * newer id displaced from their slot (long-lived ones: subscriptions).
 *
 * Not one Map for all: a request opens and closes one channel, so a Map would see an insert
 * and a delete per request, and V8 rebuilds a Map's table every few hundred of those. A
 * replaced table keeps its entries and a link to its successor, so once one table has been
 * promoted to the old generation (a client idle while another works is enough), every
 * later table, and every request its entries point to, was kept alive by its dead
 * predecessor until the next full collection: measured, all of a pipelined writer's
 * requests were promoted (2.7 MB per scavenge) and an append cost 60% more CPU. The slots
 * here are cleared on close and never reallocated.
 */
class ChannelTable {
  readonly #ids = new Float64Array(SLOTS); // 0: a free slot (ids start at 1)
  readonly #handlers = new Array<ChannelHandler | undefined>(SLOTS).fill(undefined);
  readonly #displaced = new Map<number, ChannelHandler>();

  set(id: number, handler: ChannelHandler): void {
    const slot = id % SLOTS;
    const previous = this.#ids[slot]!;
    if (previous !== 0) this.#displaced.set(previous, this.#handlers[slot]!);
    this.#ids[slot] = id;
    this.#handlers[slot] = handler;
  }

  get(id: number): ChannelHandler | undefined {
    const slot = id % SLOTS;
    if (this.#ids[slot] === id) return this.#handlers[slot];
    return this.#displaced.size === 0 ? undefined : this.#displaced.get(id);
  }

  delete(id: number): void {
    const slot = id % SLOTS;
    if (this.#ids[slot] === id) {
      this.#ids[slot] = 0;
      this.#handlers[slot] = undefined;
    } else if (this.#displaced.size !== 0) this.#displaced.delete(id);
  }

  /** Every open channel's handler, oldest first; the table is empty afterwards. */
  takeAll(): ChannelHandler[] {
    const open: [number, ChannelHandler][] = [...this.#displaced];
    for (let slot = 0; slot < SLOTS; slot++) {
      const id = this.#ids[slot]!;
      if (id !== 0) open.push([id, this.#handlers[slot]!]);
    }
    this.#ids.fill(0);
    this.#handlers.fill(undefined);
    this.#displaced.clear();
    return open.sort((a, b) => a[0] - b[0]).map(([, handler]) => handler);
  }
}

/**
 * The channels of one transport by correlation id, whatever carries the frames: opening
 * one, handing each incoming frame to its channel, and telling every channel once when the
 * transport has ended.
 */
export class Channels {
  readonly #handlers = new ChannelTable();
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
    for (const h of this.#handlers.takeAll()) {
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
  readonly #handlers: ChannelTable;
  readonly #send: (id: number, frame: OutgoingFrame) => void;

  constructor(
    id: number,
    handlers: ChannelTable,
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
