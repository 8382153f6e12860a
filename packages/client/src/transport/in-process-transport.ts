import type { InProcessClientEnd, InProcessNode, InProcessServerEnd } from "@chorus/protocol";
import { ConnectionError, NotAuthenticatedError } from "../errors.js";
import type { Credentials, Endpoint, Logger } from "../types.js";
import { abortReason } from "../util/timers.js";
import { Channels } from "./channels.js";
import type {
  Channel,
  ChannelHandler,
  NodePartition,
  OutgoingFrame,
  Transport,
  TransportConnectOptions,
} from "./transport.js";

/** The endpoint a node reached in-process goes by (it may open no port at all). */
export const IN_PROCESS_ENDPOINT: Endpoint = Object.freeze({ host: "in-process", port: 0 });

export interface InProcessTransportOptions {
  /** Connection-wide credentials, as HTTP Basic on a WebSocket upgrade would carry them. */
  credentials?: Credentials | undefined;
  logger: Logger;
}

/**
 * A connection to a node in this process (InProcessNode): the native protocol's frames
 * handed over as objects, with no socket, no encoding and no heartbeat (nothing can get
 * lost between two ends of one process). Channels, ordering and the end of the connection
 * behave as over a WebSocket.
 */
export class InProcessTransport implements Transport {
  readonly endpoint = IN_PROCESS_ENDPOINT;
  readonly closed: Promise<Error>;
  readonly #node: InProcessNode;
  readonly #channels: Channels;
  #partition: NodePartition | undefined;
  #server: InProcessServerEnd | undefined;
  #closeReason: Error | undefined;
  #finished = false;
  #resolveClosed!: (reason: Error) => void;

  private constructor(node: InProcessNode, logger: Logger) {
    this.#node = node;
    this.#channels = new Channels(logger);
    this.closed = new Promise<Error>((resolve) => (this.#resolveClosed = resolve));
  }

  /** Opens a connection to `node`; rejects when the node refuses it (closed, credentials). */
  static connect(
    node: InProcessNode,
    options: InProcessTransportOptions,
    connect: TransportConnectOptions,
  ): Promise<InProcessTransport> {
    if (connect.signal?.aborted) return Promise.reject(abortReason(connect.signal));
    const transport = new InProcessTransport(node, options.logger);
    const clientEnd: InProcessClientEnd = {
      receive: (frame) => transport.#channels.dispatch(frame),
      closed: (code, reason) =>
        transport.#finish(
          new ConnectionError(
            `in-process connection to node ${node.instanceId} closed (${code}${reason ? `: ${reason}` : ""})`,
          ),
        ),
    };
    let result;
    try {
      result = node.openInProcess(
        clientEnd,
        options.credentials ? { credentials: { ...options.credentials } } : {},
      );
    } catch (err) {
      return Promise.reject(
        new ConnectionError(
          `cannot connect to the in-process node ${node.instanceId}: ${(err as Error).message}`,
          { cause: err },
        ),
      );
    }
    if (!result.ok) {
      return Promise.reject(
        result.status === 401
          ? new NotAuthenticatedError(
              `the in-process node ${node.instanceId} refused the credentials: ${result.message}`,
            )
          : new ConnectionError(
              `cannot connect to the in-process node ${node.instanceId}: ${result.message}`,
            ),
      );
    }
    transport.#server = result.connection;
    transport.#partition = result.partition;
    return Promise.resolve(transport);
  }

  get partition(): NodePartition | undefined {
    return this.#partition;
  }

  get isOpen(): boolean {
    return this.#closeReason === undefined;
  }

  open(handler: ChannelHandler): Channel {
    return this.#channels.open(handler, this.#closeReason, this.#sendOnChannel);
  }

  readonly #sendOnChannel = (id: number, frame: OutgoingFrame): void => this.#send(id, frame);

  #send(id: number, frame: OutgoingFrame): void {
    if (this.#closeReason !== undefined) throw this.#closeReason;
    this.#server?.send(id, frame);
  }

  #finish(reason: Error): void {
    this.#closeReason ??= reason;
    if (this.#finished) return;
    this.#finished = true;
    this.#channels.closeAll(this.#closeReason);
    this.#resolveClosed(this.#closeReason);
  }

  /** Ends the connection; the node drops its subscriptions as for a closed socket. */
  async close(reason = "client closing"): Promise<void> {
    this.#end(
      new ConnectionError(
        `in-process connection to node ${this.#node.instanceId} closed by the client (${reason})`,
      ),
    );
    await this.closed;
  }

  destroy(error?: Error): void {
    this.#end(
      error ??
        new ConnectionError(`in-process connection to node ${this.#node.instanceId} destroyed`),
    );
  }

  #end(reason: Error): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    this.#server?.close();
    // Channels learn of it asynchronously, as after a socket's close event.
    queueMicrotask(() => this.#finish(reason));
  }
}
