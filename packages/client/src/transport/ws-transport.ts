import {
  decodeFrame,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  messageBytes,
  FrameError,
  MAX_FRAME_BYTES_HEADER,
  NODE_PARTITION_HEADER,
  NODE_PARTITIONS_HEADER,
  WebSocketOutbox,
  socketOfWebSocket,
  type Frame,
} from "@chorus/protocol";
import type { Socket } from "node:net";
import WebSocket from "ws";
import { ConnectionError, InvalidArgumentError, NotAuthenticatedError } from "../errors.js";
import { formatEndpoint } from "../settings/endpoint.js";
import type { Credentials, Endpoint, Logger, TimerHandle, Timers } from "../types.js";
import { abortReason } from "../util/timers.js";
import { explainTlsFailure } from "../util/tls-failure.js";
import { Channels } from "./channels.js";
import type {
  Channel,
  ChannelHandler,
  NodePartition,
  OutgoingFrame,
  Transport,
  TransportConnectOptions,
  TransportFactory,
} from "./transport.js";

export interface WebSocketTransportOptions {
  tls?:
    | { ca?: string | Buffer | ReadonlyArray<string | Buffer>; rejectUnauthorized: boolean }
    | undefined;
  /** Sent as HTTP Basic on the upgrade. Never logged. */
  credentials?: Credentials | undefined;
  heartbeat: { intervalMs: number; timeoutMs: number };
  connectTimeoutMs: number;
  maxFrameBytes?: number;
  timers: Timers;
  logger: Logger;
}

/** A TransportFactory opening ws:// (or wss://) connections. */
export function webSocketTransportFactory(options: WebSocketTransportOptions): TransportFactory {
  return (connect) => WebSocketTransport.connect(options, connect);
}

export class WebSocketTransport implements Transport {
  readonly endpoint: Endpoint;
  readonly closed: Promise<Error>;
  readonly #ws: WebSocket;
  readonly #options: WebSocketTransportOptions;
  /** The largest frame this connection sends, and whose limit it is. */
  readonly #sendLimit: FrameLimit;
  readonly partition: NodePartition | undefined;
  readonly #channels: Channels;
  #closeReason: Error | undefined;
  #resolveClosed!: (reason: Error) => void;
  #pingTimer: TimerHandle | undefined;
  #pongDeadline: TimerHandle | undefined;
  /**
   * The frames sent in this tick, written to the socket together at its end: pipelined
   * appends and credit grants leave in one write (ws-outbox.ts).
   */
  readonly #outbox: WebSocketOutbox;
  readonly #sendOnChannel = (id: number, frame: OutgoingFrame): void => this.#send(id, frame);
  readonly #onWritten = (err?: Error | null): void => {
    if (err)
      this.destroy(
        new ConnectionError(`send to ${formatEndpoint(this.endpoint)} failed: ${err.message}`, {
          cause: err,
        }),
      );
  };

  private constructor(
    ws: WebSocket,
    endpoint: Endpoint,
    options: WebSocketTransportOptions,
    node: UpgradeInfo,
  ) {
    this.#ws = ws;
    this.endpoint = endpoint;
    this.#options = options;
    this.#sendLimit = sendLimitOf(options.maxFrameBytes, node.maxFrameBytes);
    this.partition = node.partition;
    this.#channels = new Channels(options.logger);
    this.closed = new Promise<Error>((resolve) => (this.#resolveClosed = resolve));
    this.#outbox = new WebSocketOutbox({
      masked: true,
      schedule: (flush) => process.nextTick(flush),
      // A connection that has begun to end writes nothing more: its channels learn of the
      // end from the close.
      socket: () => (this.isOpen ? socketOfWebSocket(ws) : undefined),
      onWritten: this.#onWritten,
    });
    // An open connection alone does not keep the process alive (an idle client that nobody
    // closed must not stop a script from exiting); the client holds the process while it
    // has work pending (see ProcessHold).
    (ws as unknown as { _socket?: Socket | null })._socket?.unref();
    ws.on("message", (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on("pong", () => this.#alive());
    ws.on("close", (code, reason) => {
      const text = reason.toString("utf8");
      this.#finish(
        this.#closeReason ??
          new ConnectionError(
            `connection to ${formatEndpoint(endpoint)} closed (${code}${text ? `: ${text}` : ""})`,
          ),
      );
    });
    ws.on("error", (err) => {
      this.#closeReason ??= new ConnectionError(
        `connection to ${formatEndpoint(endpoint)} failed: ${err.message}`,
        { cause: err },
      );
    });
    this.#schedulePing();
  }

  /** Opens a WebSocket to the endpoint; resolves once the upgrade succeeded. */
  static connect(
    options: WebSocketTransportOptions,
    connect: TransportConnectOptions,
  ): Promise<WebSocketTransport> {
    const { endpoint, signal } = connect;
    const url = `${options.tls ? "wss" : "ws"}://${formatEndpoint(endpoint)}/`;
    return new Promise<WebSocketTransport>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const headers: Record<string, string> = {};
      if (options.credentials) {
        const token = Buffer.from(
          `${options.credentials.username}:${options.credentials.password}`,
        ).toString("base64");
        headers.authorization = `Basic ${token}`;
      }
      const ws = new WebSocket(url, {
        headers,
        handshakeTimeout: options.connectTimeoutMs,
        maxPayload: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
        perMessageDeflate: false,
        // A zero masking key, as the outbox frames the data messages (ws-outbox.ts: masking
        // guards proxies against scripts a browser runs, which a Node.js client is not).
        generateMask: (mask: Buffer) => mask.fill(0),
        ...(options.tls && {
          ca: options.tls.ca as string | Buffer | Array<string | Buffer> | undefined,
          rejectUnauthorized: options.tls.rejectUnauthorized,
        }),
      });
      ws.binaryType = "nodebuffer";
      let settled = false;
      let upgrade: UpgradeInfo = {};
      const cleanup = () => {
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        ws.off("open", onOpen);
        ws.off("error", onError);
        ws.off("unexpected-response", onUnexpected);
        ws.off("upgrade", onUpgrade);
        ws.off("close", onCloseEarly);
      };
      const fail = (err: Error) => {
        if (settled) return;
        cleanup();
        ws.on("error", () => undefined);
        ws.terminate();
        reject(err);
      };
      const onAbort = () => fail(abortReason(signal!));
      const onOpen = () => {
        if (settled) return;
        cleanup();
        resolve(new WebSocketTransport(ws, endpoint, options, upgrade));
      };
      const onError = (err: Error) => {
        const tls = options.tls ? explainTlsFailure(err, endpoint.host) : undefined;
        const why = tls === undefined ? err.message : `TLS: ${tls.text} (${tls.code})`;
        fail(new ConnectionError(`cannot connect to ${url}: ${why}`, { cause: err }));
      };
      const onUnexpected = (_req: unknown, res: { statusCode?: number; resume(): void }) => {
        res.resume();
        const status = res.statusCode ?? 0;
        fail(
          status === 401
            ? new NotAuthenticatedError(
                options.credentials
                  ? `${url} refused the credentials of user ${JSON.stringify(options.credentials.username)} (HTTP 401): wrong username or password`
                  : `${url} asks for credentials (HTTP 401): give a username and password (user:password@ in the connection string, or withDefaultCredentials)`,
              )
            : new ConnectionError(`${url} refused the WebSocket upgrade (HTTP ${status})`),
        );
      };
      const onUpgrade = (res: { headers: Record<string, string | string[] | undefined> }) => {
        upgrade = upgradeInfoOf(res.headers);
      };
      const onCloseEarly = () =>
        fail(new ConnectionError(`connection to ${url} closed during the handshake`));
      signal?.addEventListener("abort", onAbort, { once: true });
      ws.on("open", onOpen);
      ws.on("error", onError);
      ws.on("unexpected-response", onUnexpected);
      ws.on("upgrade", onUpgrade);
      ws.on("close", onCloseEarly);
    });
  }

  get isOpen(): boolean {
    return this.#closeReason === undefined && this.#ws.readyState === WebSocket.OPEN;
  }

  /** Bytes queued in the socket and not yet sent (gathered frames included). */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount + this.#outbox.pendingBytes;
  }

  open(handler: ChannelHandler): Channel {
    const ended = this.isOpen
      ? undefined
      : (this.#closeReason ??
        new ConnectionError(`connection to ${formatEndpoint(this.endpoint)} is closed`));
    return this.#channels.open(handler, ended, this.#sendOnChannel);
  }

  #send(id: number, frame: OutgoingFrame): void {
    if (!this.isOpen) {
      throw (
        this.#closeReason ??
        new ConnectionError(`connection to ${formatEndpoint(this.endpoint)} is closed`)
      );
    }
    const bytes = encodeFrame(frame, id);
    // A larger frame would make the node close the connection (WebSocket 1009), failing
    // every other request and subscription on it, and the retried request would do it again.
    if (bytes.byteLength > this.#sendLimit.bytes)
      throw frameTooLarge(frame, bytes.byteLength, this.#sendLimit, this.endpoint);
    this.#outbox.push(bytes);
  }

  #onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    this.#alive();
    if (!isBinary) {
      this.destroy(
        new ConnectionError(`protocol error: ${formatEndpoint(this.endpoint)} sent a text message`),
      );
      return;
    }
    const bytes = messageBytes(data);
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, this.#options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    } catch (err) {
      if (err instanceof FrameError) {
        this.destroy(
          new ConnectionError(
            `protocol error from ${formatEndpoint(this.endpoint)}: ${err.message}`,
            { cause: err },
          ),
        );
        return;
      }
      throw err;
    }
    this.#channels.dispatch(frame);
  }

  #schedulePing(): void {
    const { intervalMs, timeoutMs } = this.#options.heartbeat;
    const timers = this.#options.timers;
    this.#pingTimer = timers.setTimeout(() => {
      this.#pingTimer = undefined;
      if (!this.isOpen) return;
      if (this.#pongDeadline === undefined) {
        this.#pongDeadline = timers.setTimeout(() => {
          this.#pongDeadline = undefined;
          this.#options.logger.warn("heartbeat timeout", {
            node: formatEndpoint(this.endpoint),
            timeoutMs,
          });
          this.destroy(
            new ConnectionError(
              `heartbeat timeout: no pong from ${formatEndpoint(this.endpoint)} within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
      }
      try {
        this.#ws.ping();
      } catch {
        // the close event follows
      }
      this.#schedulePing();
    }, intervalMs);
  }

  /** Proof of life: any message or pong. */
  #alive(): void {
    if (this.#pongDeadline !== undefined) {
      this.#options.timers.clearTimeout(this.#pongDeadline);
      this.#pongDeadline = undefined;
    }
  }

  #clearTimers(): void {
    const timers = this.#options.timers;
    if (this.#pingTimer !== undefined) timers.clearTimeout(this.#pingTimer);
    if (this.#pongDeadline !== undefined) timers.clearTimeout(this.#pongDeadline);
    this.#pingTimer = undefined;
    this.#pongDeadline = undefined;
  }

  #finish(reason: Error): void {
    this.#closeReason ??= reason;
    this.#clearTimers();
    this.#channels.closeAll(this.#closeReason);
    this.#resolveClosed(this.#closeReason);
  }

  async close(reason = "client closing"): Promise<void> {
    if (this.#ws.readyState === WebSocket.CLOSED) return;
    // Frames sent before the close go out before the close frame.
    this.#outbox.flush();
    this.#closeReason ??= new ConnectionError(
      `connection to ${formatEndpoint(this.endpoint)} closed by the client`,
    );
    this.#clearTimers();
    const timers = this.#options.timers;
    // A peer that never answers the close handshake is cut off after the heartbeat timeout.
    const force = timers.setTimeout(() => this.#ws.terminate(), this.#options.heartbeat.timeoutMs);
    this.#ws.close(1000, reason);
    await this.closed;
    timers.clearTimeout(force);
  }

  destroy(error?: Error): void {
    this.#closeReason ??=
      error ?? new ConnectionError(`connection to ${formatEndpoint(this.endpoint)} destroyed`);
    this.#clearTimers();
    this.#ws.terminate();
  }
}

/** The largest frame a connection sends: the client's limit, or the node's when smaller. */
interface FrameLimit {
  readonly bytes: number;
  readonly node: boolean;
}

function sendLimitOf(own: number | undefined, node: number | undefined): FrameLimit {
  const mine = own ?? DEFAULT_MAX_FRAME_BYTES;
  return node !== undefined && node < mine
    ? { bytes: node, node: true }
    : { bytes: mine, node: false };
}

/** What a node says of itself in its upgrade answer. */
interface UpgradeInfo {
  readonly maxFrameBytes?: number | undefined;
  readonly partition?: NodePartition | undefined;
}

function upgradeInfoOf(headers: Record<string, string | string[] | undefined>): UpgradeInfo {
  const name = headers[NODE_PARTITION_HEADER.toLowerCase()];
  const names = headers[NODE_PARTITIONS_HEADER.toLowerCase()];
  return {
    maxFrameBytes: headerBytes(headers[MAX_FRAME_BYTES_HEADER.toLowerCase()]),
    partition:
      typeof name === "string" && name !== ""
        ? { name, names: typeof names === "string" && names !== "" ? names.split(",") : [] }
        : undefined,
  };
}

/** A node's frame limit from its upgrade answer; undefined when absent or not a byte count. */
function headerBytes(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string" || !/^[1-9][0-9]{0,15}$/.test(value)) return undefined;
  const bytes = Number(value);
  // A node takes frames of at least 1 KiB (its --max-frame-bytes floor).
  return Number.isSafeInteger(bytes) && bytes >= 1024 ? bytes : undefined;
}

function frameTooLarge(
  frame: OutgoingFrame,
  bytes: number,
  limit: FrameLimit,
  endpoint: Endpoint,
): InvalidArgumentError {
  const what = frame.append
    ? `an append of ${frame.append.events?.length ?? 0} event(s) to ${JSON.stringify(frame.append.streamId)}`
    : "the request";
  const whose = limit.node ? ", the node's --max-frame-bytes" : "";
  return new InvalidArgumentError(
    `${what} is ${bytes} bytes encoded, more than one frame to ${formatEndpoint(endpoint)} may carry (${limit.bytes} bytes${whose})` +
      (frame.append
        ? "; a node takes at most its --max-append-bytes (1 MiB by default) of events in one append: split them over several appends"
        : ""),
  );
}
