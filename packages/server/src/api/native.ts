import type { IncomingMessage, Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { Duplex } from "node:stream";
import {
  chorus,
  type AppendFrameScan,
  type Frame,
  type FrameBodyKind,
  type FrameInit,
  type InProcessClientEnd,
  type InProcessOpenResult,
  MAX_FRAME_BYTES_HEADER,
  NODE_PARTITION_HEADER,
  NODE_PARTITIONS_HEADER,
  wireNumber,
} from "@chorus/protocol";
import { WebSocket, WebSocketServer } from "ws";
import { parseBasicAuth, type Credentials } from "../auth/index.js";
import type { Direction, StoredEvent } from "../streams/types.js";
import {
  Subscription,
  type DropCode,
  type SubscriptionStart,
  type SubscriptionTarget,
} from "../subscriptions/index.js";
import type { NodeContext } from "./context.js";
import type { LatencySeries } from "./metrics.js";
import {
  MAX_PAGE_EVENTS,
  MAX_SCAN_RECORDS,
  checkWireAppendSize,
  refuseOversized,
  storedAppendBytes,
  checkClientWrite,
  checkStreamName,
  eventsFromWire,
  expectedFromWire,
  checkpointIntervalFromWire,
  filterFromWire,
  wrongExpectedToWire,
} from "./convert.js";
import { RequestError, codeName, dropCodeToWire, invalidArgument, toWireError } from "./errors.js";
import { eventBytes } from "../streams/page-bytes.js";
import { checkFrameOwnership } from "./partition-guard.js";
import { ReaderGone } from "../streams/types.js";
import type { EventsBody } from "./event-frames.js";
import {
  closeReason,
  InProcessLink,
  WebSocketLink,
  type NativeLink,
  type PreparedFrame,
} from "./native-links.js";
import { checkGroupName, PersistentService } from "../persistent/service.js";
import {
  MAX_RETRY_DELAY_MS,
  type ConsumerHandle,
  type GroupInfo,
  type GroupKey,
  type NackAction,
} from "../persistent/group.js";
import { settingsToWire } from "../persistent/settings.js";

const Code = chorus.ErrorResponse.Code;

/**
 * Append frames the link scanned and the connection found too large to store (events not
 * decoded): what the refusal says.
 */
const scannedOversized = new WeakMap<Frame, { events: number; bytes: number }>();

export interface NativeApiOptions {
  /** Stop pushing subscription events while a connection buffers more than this many bytes. */
  readonly highWaterMarkBytes?: number;
  /** Requests one connection may have in flight before the server stops reading from it. */
  readonly maxInflightRequests?: number;
  /** Subscriptions one connection may hold. */
  readonly maxSubscriptionsPerConnection?: number;
}

/**
 * Reads (readStream, readAll) of one connection that run at once. Each holds a page of events,
 * up to a frame (batchBytesLimit), from the store read until its frame is written; a client
 * that sends many reads and does not read the answers would otherwise have the node hold all
 * of them (256 unread 4 MiB pages: a gigabyte).
 */
const READS_AT_ONCE = 4;

/** Largest number of bytes of events put into one pushed or read frame. */
function batchBytesLimit(maxFrameBytes: number): number {
  return Math.max(64 * 1024, Math.min(4 * 1024 * 1024, Math.floor(maxFrameBytes / 2)));
}

export { closeReason } from "./native-links.js";

/**
 * The native client protocol (docs/protocol.md): WebSocket on the external TCP port, one
 * protobuf Frame per binary message; or the same frames as objects for a client in this
 * process (openInProcess).
 */
export class NativeApi {
  readonly #ctx: NodeContext;
  readonly #wss: WebSocketServer;
  readonly #connections = new Set<NativeConnection>();
  readonly #heartbeat: NodeJS.Timeout;
  readonly #settings: Required<NativeApiOptions>;
  readonly #persistent: PersistentService;
  #closing = false;

  #inProcessCount = 0;

  /** `server`: the external TCP listener; none for a node that does not listen. */
  constructor(
    ctx: NodeContext,
    server: HttpServer | HttpsServer | undefined,
    options: NativeApiOptions = {},
  ) {
    this.#ctx = ctx;
    this.#persistent = new PersistentService({
      store: () => ctx.store,
      cluster: () => ctx.persistentCluster(),
      logger: ctx.logger,
    });
    const persistent = this.#persistent;
    ctx.metrics.persistentGroups = () => persistent.groupsServed();
    this.#settings = {
      highWaterMarkBytes: options.highWaterMarkBytes ?? 1024 * 1024,
      maxInflightRequests: options.maxInflightRequests ?? 256,
      maxSubscriptionsPerConnection: options.maxSubscriptionsPerConnection ?? 1024,
    };
    const maxFrameBytes = ctx.options.maxFrameBytes;
    /** ws closes an oversized message with a bare 1009; give the client a reason. */
    class ChorusWebSocket extends WebSocket {
      override close(code?: number, data?: string | Buffer): void {
        if (code === 1009 && data === undefined) {
          super.close(1009, closeReason(`frame exceeds the limit of ${maxFrameBytes} bytes`));
          return;
        }
        super.close(code, data);
      }
    }
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: maxFrameBytes,
      perMessageDeflate: false,
      WebSocket: ChorusWebSocket,
    });
    // The node's frame limit, for a client to refuse a larger request before sending it:
    // sent, it would close the connection under every other request and subscription on it.
    // With partitions, its group: a partitioned client refuses a node of another group (or
    // of none) listed under a group's name, rather than route that group's streams to it.
    const { partition, partitions } = ctx.options;
    this.#wss.on("headers", (headers: string[]) => {
      headers.push(`${MAX_FRAME_BYTES_HEADER}: ${maxFrameBytes}`);
      if (partition !== null) {
        headers.push(`${NODE_PARTITION_HEADER}: ${partition}`);
        headers.push(`${NODE_PARTITIONS_HEADER}: ${partitions.join(",")}`);
      }
    });
    server?.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket, head),
    );
    server?.on("request", (req: IncomingMessage, res) => {
      // A plain HTTP request on the native port: say what this port is, then hang up.
      ctx.logger.debug(
        { method: req.method, url: req.url },
        "plain HTTP request on the native port",
      );
      res.writeHead(426, {
        "Content-Type": "text/plain; charset=utf-8",
        Connection: "close",
        Upgrade: "websocket",
      });
      res.end(
        "426 Upgrade Required: this is the Chorus native protocol port; connect with a WebSocket (ws:// or wss://)\n",
      );
    });
    server?.on("clientError", (err: Error, socket: Duplex) => {
      ctx.metrics.protocolErrors.inc({ reason: "not_http" });
      ctx.logger.debug({ err: err.message }, "non-WebSocket bytes on the native port");
      if (socket.writable) {
        const body =
          "400 Bad Request: this is the Chorus native protocol port; it speaks WebSocket only\n";
        socket.end(
          `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    });
    this.#heartbeat = setInterval(() => {
      for (const c of this.#connections) c.heartbeat();
    }, ctx.options.clientPingIntervalMs);
    this.#heartbeat.unref();
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const refuse = (status: number, text: string, extra = ""): void => {
      const body = `${status} ${text}\n`;
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\n${extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      socket.destroy();
    };
    if (this.#closing) {
      refuse(503, "Service Unavailable: the node is shutting down");
      return;
    }
    const crowded = this.#ctx.clientConnectionRefusal();
    if (crowded !== undefined) {
      refuse(503, `Service Unavailable: ${crowded}`);
      return;
    }
    let credentials: Credentials | null = null;
    const header = req.headers.authorization;
    if (header !== undefined) {
      const parsed = parseBasicAuth(header);
      const result = parsed ? this.#ctx.auth.check(parsed) : this.#ctx.auth.checkHeader(header);
      if (this.#ctx.auth.enabled && !result.ok) {
        this.#ctx.logger.info(
          { remote: req.socket.remoteAddress },
          "WebSocket upgrade refused: wrong credentials",
        );
        refuse(401, "Unauthorized", 'WWW-Authenticate: Basic realm="chorus"\r\n');
        return;
      }
      credentials = parsed;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      if (this.#closing) {
        ws.close(1001, "the node is shutting down");
        return;
      }
      const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? 0}`;
      const link = new WebSocketLink(
        ws,
        remote,
        this.#ctx.options.maxFrameBytes,
        this.#settings.highWaterMarkBytes,
      );
      ws.on("error", (err: Error & { code?: string }) => {
        // ws closes the connection itself (1009 for oversized, 1002 for bad framing).
        this.#ctx.metrics.protocolErrors.inc({ reason: err.code ?? "ws_error" });
        this.#ctx.logger.info({ remote, err: err.message }, "native connection error");
      });
      const conn = this.#accept(link, credentials);
      ws.on("close", () => this.#ended(conn));
      this.#budget(socket, head, ws);
      this.#sendBudget(link, ws);
    });
  }

  /**
   * Counts what the connection has not taken off its socket against the node's send budget
   * (byte-budget.ts): a client that reads nothing holds its own reads and subscriptions up
   * past its high-water mark, and many such clients together are held to the budget.
   */
  #sendBudget(link: WebSocketLink, ws: WebSocket): void {
    const holder = this.#ctx.sendBudget.holder((reason) => {
      ws.pause();
      ws.close(1008, closeReason(reason));
      // Its output is not read: the socket goes at once, with what it held.
      setImmediate(() => ws.terminate());
    });
    link.onBuffered((bytes) => holder.holds(bytes));
    ws.on("close", () => holder.release());
  }

  /**
   * Counts the connection's unfinished input against the node's receive budget
   * (byte-budget.ts). Its listener goes before ws's, so a chunk is counted before the
   * messages it completes release it.
   */
  #budget(socket: Duplex, head: Buffer, ws: WebSocket): void {
    const holder = this.#ctx.receiveBudget.holder((reason) => {
      ws.pause();
      ws.close(1008, closeReason(reason));
      // The close frame is written; the socket goes at once, with what it held.
      setImmediate(() => ws.terminate());
    });
    if (head.length > 0) holder.received(head.length);
    socket.prependListener("data", (chunk: Buffer) => holder.received(chunk.length));
    ws.on("message", () => holder.release());
    ws.on("close", () => holder.release());
  }

  /**
   * A connection from a client in this process (InProcessNode.openInProcess): the same
   * protocol, the same checks and limits, with frames handed over as objects.
   */
  openInProcess(
    client: InProcessClientEnd,
    credentials: Credentials | undefined,
  ): InProcessOpenResult {
    if (this.#closing) return { ok: false, status: 503, message: "the node is shutting down" };
    if (credentials !== undefined && this.#ctx.auth.enabled) {
      if (!this.#ctx.auth.check(credentials).ok) {
        this.#ctx.logger.info("in-process connection refused: wrong credentials");
        return { ok: false, status: 401, message: "wrong username or password" };
      }
    }
    const link = new InProcessLink(client, `in-process#${++this.#inProcessCount}`, () =>
      this.#ended(conn),
    );
    const conn = this.#accept(link, credentials ?? null);
    const { partition, partitions } = this.#ctx.options;
    return {
      ok: true,
      connection: link.serverEnd(),
      ...(partition !== null && { partition: { name: partition, names: partitions } }),
    };
  }

  #accept(link: NativeLink, credentials: Credentials | null): NativeConnection {
    const conn = new NativeConnection(
      this.#ctx,
      link,
      credentials,
      this.#settings,
      this.#persistent,
    );
    this.#connections.add(conn);
    this.#ctx.metrics.connectionsOpened.inc();
    this.#ctx.metrics.connectionsActive.inc();
    return conn;
  }

  #ended(conn: NativeConnection): void {
    if (!this.#connections.delete(conn)) return;
    this.#ctx.metrics.connectionsActive.dec();
    conn.dispose();
  }

  /** The node's persistent subscription groups (the HTTP admin endpoints serve them too). */
  get persistent(): PersistentService {
    return this.#persistent;
  }

  /**
   * This node cannot reach its storage (an instance cut off from its shared database): every
   * catch-up subscription is answered NOT_LEADER, and its client subscribes again elsewhere.
   */
  storageUnreachable(message: string): void {
    for (const c of this.#connections) c.dropSubscriptions("NOT_LEADER", message);
  }

  /** Stops accepting connections and new requests (existing ones keep running). */
  beginShutdown(): void {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    this.#persistent.close();
    for (const c of this.#connections) c.beginShutdown();
  }

  /** Closes every connection with 1001; resolves when they are gone (or after timeoutMs). */
  async closeConnections(timeoutMs = 2_000): Promise<void> {
    this.beginShutdown();
    const closed = [...this.#connections].map((c) => c.closeGoingAway(timeoutMs));
    await Promise.all(closed);
    this.#wss.close();
  }
}

/** A page of $all with its reply prepared, so that a page read ahead is also encoded ahead. */
interface AllPage {
  endOfStream: boolean;
  nextPosition: number;
  frame: PreparedFrame;
}

/** Identifies a $all page request, to match it with a page read ahead. */
function readAheadKey(
  direction: Direction,
  fromPosition: number | "end",
  maxCount: number,
  filter: chorus.IFilter | null | undefined,
): string {
  return JSON.stringify([direction, fromPosition, maxCount, filter ?? null]);
}

class NativeConnection {
  readonly #ctx: NodeContext;
  readonly #link: NativeLink;
  readonly #credentials: Credentials | null;
  readonly #settings: Required<NativeApiOptions>;
  readonly #remote: string;
  readonly #subs = new Map<number, Subscription>();
  readonly #persistentService: PersistentService;
  /** Persistent subscription consumers by correlation id; undefined while joining. */
  readonly #consumers = new Map<number, ConsumerHandle | undefined>();
  readonly #batchBytes: number;
  /** The native series of the append duration histogram, bound once. */
  readonly #appendLatency: LatencySeries;
  #writableWaiters: (() => void)[] = [];
  /** Reads running now (READS_AT_ONCE), and those waiting for their turn. */
  #readsRunning = 0;
  #readWaiters: (() => void)[] = [];
  /** Aborts when the connection ends: its reads still waiting for a turn are dropped. */
  readonly #gone = new AbortController();
  /** Reads in flight, by correlation id: an Unsubscribe with the id drops one still waiting. */
  readonly #reads = new Map<number, AbortController>();
  #inflight = 0;
  #pausedForInflight = false;
  #pausedForOutput = false;
  #shuttingDown = false;
  /** The next $all page, read ahead for a sequential reader. */
  #readAhead: { key: string; page: Promise<AllPage>; commitPosition: number } | undefined;

  constructor(
    ctx: NodeContext,
    link: NativeLink,
    credentials: Credentials | null,
    settings: Required<NativeApiOptions>,
    persistent: PersistentService,
  ) {
    this.#ctx = ctx;
    this.#persistentService = persistent;
    this.#link = link;
    this.#credentials = credentials;
    this.#settings = settings;
    this.#remote = link.remote;
    this.#batchBytes = batchBytesLimit(ctx.options.maxFrameBytes);
    this.#appendLatency = ctx.metrics.appendDuration.series("native");
    link.attach({
      receive: (frame, body, correlationId) => this.#receive(frame, body, correlationId),
      largeAppend: (scan) => this.#largeAppend(scan),
      unknownBody: (id) =>
        this.#sendError(
          id,
          Code.BAD_REQUEST,
          "unknown request type (the frame carries no body this server knows)",
        ),
      violation: (closeCode, reason) => this.#protocolError(closeCode, reason),
      writable: () => this.#onWritable(),
    });
  }

  heartbeat(): void {
    this.#link.heartbeat(() =>
      this.#ctx.logger.info(
        { remote: this.#remote },
        "closing a native connection that missed its heartbeat",
      ),
    );
  }

  beginShutdown(): void {
    this.#shuttingDown = true;
  }

  /** Ends every catch-up subscription of this connection with `code`. */
  dropSubscriptions(code: DropCode, message: string): void {
    for (const sub of [...this.#subs.values()]) sub.drop(code, message);
  }

  async closeGoingAway(timeoutMs: number): Promise<void> {
    this.dispose();
    await this.#link.closeGoingAway(timeoutMs);
  }

  dispose(): void {
    this.#gone.abort(new ReaderGone("the connection closed"));
    for (const read of this.#reads.values()) read.abort(new ReaderGone("the connection closed"));
    for (const sub of this.#subs.values()) sub.close();
    if (this.#subs.size > 0) this.#ctx.metrics.subscriptionsActive.dec(this.#subs.size);
    this.#subs.clear();
    for (const c of this.#consumers.values()) c?.close();
    this.#consumers.clear();
    this.#writableWaiters = [];
    this.#wakeReads();
  }

  // ---------------------------------------------------------------- output

  #send(frame: FrameInit): void {
    this.#link.send(frame);
    this.#checkOutput();
  }

  /** Sends a frame that carries events (the bulk of the bytes a node sends). */
  #sendEventsFrame(correlationId: number, body: EventsBody, events: readonly StoredEvent[]): void {
    this.#link.sendEvents(correlationId, body, events);
    this.#checkOutput();
  }

  #checkOutput(): void {
    if (
      !this.#pausedForOutput &&
      this.#link.bufferedAmount > this.#settings.highWaterMarkBytes * 8
    ) {
      // The client does not read its replies: stop reading its requests until it does.
      this.#pausedForOutput = true;
      this.#updatePause();
    }
  }

  #onWritable(): void {
    if (this.#pausedForOutput) {
      this.#pausedForOutput = false;
      this.#updatePause();
    }
    const waiters = this.#writableWaiters;
    this.#writableWaiters = [];
    for (const w of waiters) w();
    this.#wakeReads();
  }

  /**
   * Waits for a read's turn: fewer than READS_AT_ONCE running, and the answers sent so far
   * drained to the high-water mark (a client that does not read them holds up its own reads,
   * not the node's memory). False: the connection closed meanwhile.
   */
  async #readTurn(signal: AbortSignal): Promise<boolean> {
    while (this.#readsRunning >= READS_AT_ONCE || !this.#canSend()) {
      await new Promise<void>((resolve) => this.#readWaiters.push(resolve));
      if (!this.#link.isOpen || signal.aborted) return false;
    }
    this.#readsRunning++;
    return true;
  }

  #readDone(): void {
    this.#readsRunning--;
    this.#wakeReads();
  }

  #wakeReads(): void {
    const waiters = this.#readWaiters;
    this.#readWaiters = [];
    for (const w of waiters) w();
  }

  #updatePause(): void {
    this.#link.pauseInput(this.#pausedForInflight || this.#pausedForOutput);
  }

  #canSend(): boolean {
    return this.#link.bufferedAmount <= this.#settings.highWaterMarkBytes;
  }

  #sendError(
    correlationId: number,
    code: chorus.ErrorResponse.Code,
    message: string,
    streamId?: string,
    owner?: string,
  ): void {
    this.#ctx.metrics.requestErrors.inc({ interface: "native", code: codeName(code) });
    this.#send({
      correlationId,
      error: { code, message, streamId: streamId ?? "", ...(owner !== undefined && { owner }) },
    });
  }

  #protocolError(closeCode: number, reason: string): void {
    this.#ctx.metrics.protocolErrors.inc({ reason: String(closeCode) });
    this.#ctx.logger.info(
      { remote: this.#remote, closeCode, reason },
      "closing a native connection: protocol violation",
    );
    this.dispose();
    this.#link.close(closeCode, reason);
  }

  // ---------------------------------------------------------------- input

  /**
   * An append too large to store is refused from the link's scan, its events never decoded
   * (it goes through the same checks as any request first: authentication, the stream's
   * name and owner); anything else is decoded as usual (false).
   */
  #largeAppend(scan: AppendFrameScan): boolean {
    const streamId = scan.frame.append?.streamId ?? "";
    const bytes = storedAppendBytes(scan.events, streamId, scan.payloadBytes);
    if (bytes <= this.#ctx.options.maxAppendBytes) return false;
    scannedOversized.set(scan.frame, { events: scan.events, bytes });
    this.#receive(scan.frame, "append", Number(scan.frame.correlationId ?? 0));
    return true;
  }

  #receive(frame: Frame, body: FrameBodyKind, correlationId: number): void {
    if (correlationId === 0) {
      this.#sendError(0, Code.BAD_REQUEST, "correlation_id must not be 0");
      return;
    }
    this.#dispatch(correlationId, frame, body);
  }

  #dispatch(id: number, frame: Frame, body: FrameBodyKind): void {
    switch (body) {
      case "ping":
        this.#ctx.metrics.pings.inc();
        this.#send({
          correlationId: id,
          pong: { instanceId: this.#ctx.instanceId, state: this.#ctx.state() },
        });
        return;
      case "subscriptionCredit": {
        this.#subs.get(id)?.grant(Number(frame.subscriptionCredit?.credit ?? 0));
        return;
      }
      case "unsubscribe": {
        // A read the client gave up on (its deadline passed, its signal aborted): dropped if
        // it still waits for its turn; one that runs is answered, and the answer ignored.
        const read = this.#reads.get(id);
        if (read !== undefined) {
          read.abort(new ReaderGone("the client cancelled the read"));
          this.#wakeReads();
        }
        const sub = this.#subs.get(id);
        if (sub) {
          this.#subs.delete(id);
          this.#ctx.metrics.subscriptionsActive.dec();
          sub.close();
        }
        if (this.#consumers.has(id)) {
          this.#consumers.get(id)?.close();
          this.#consumers.delete(id);
        }
        return;
      }
      case "persistentAck": {
        const positions = (frame.persistentAck?.positions ?? []).map(wireNumber);
        this.#consumers.get(id)?.ack(positions);
        return;
      }
      case "persistentNack": {
        const nack = frame.persistentNack ?? {};
        const action = nackAction(nack.action);
        if (action === undefined) {
          this.#sendError(id, Code.BAD_REQUEST, `unknown nack action ${String(nack.action)}`);
          return;
        }
        const delayMs = nack.delayMs ?? 0;
        if (delayMs > MAX_RETRY_DELAY_MS || (delayMs > 0 && action !== "retry")) {
          this.#sendError(
            id,
            Code.BAD_REQUEST,
            delayMs > MAX_RETRY_DELAY_MS
              ? `nack delayMs must be at most ${MAX_RETRY_DELAY_MS}, got ${delayMs}`
              : `nack delayMs is for "retry" only, not "${action}"`,
          );
          return;
        }
        this.#consumers
          .get(id)
          ?.nack((nack.positions ?? []).map(wireNumber), action, nack.reason ?? "", delayMs);
        return;
      }
      case "persistentCreate":
      case "persistentUpdate":
      case "persistentDelete":
      case "persistentList":
      case "persistentGetInfo":
      case "persistentReplayParked":
      case "persistentSubscribe":
      case "append":
      case "readStream":
      case "readAll":
      case "deleteStream":
      case "subscribe":
        break;
      default:
        this.#sendError(id, Code.BAD_REQUEST, `${String(body)} is not a request a client may send`);
        return;
    }
    if (this.#shuttingDown) {
      this.#sendError(id, Code.SHUTTING_DOWN, "the node is shutting down");
      return;
    }
    const authProblem = this.#authenticate(frame);
    if (authProblem !== null) {
      this.#sendError(id, Code.NOT_AUTHENTICATED, authProblem);
      return;
    }
    this.#inflight++;
    if (this.#inflight >= this.#settings.maxInflightRequests && !this.#pausedForInflight) {
      this.#pausedForInflight = true;
      this.#updatePause();
    }
    void this.#serve(id, frame, body);
  }

  /**
   * Handles a request and answers its failure; the request is no longer in flight after.
   * (One async function rather than `.catch().finally()`: two promises fewer per request.)
   */
  async #serve(id: number, frame: Frame, body: FrameBodyKind): Promise<void> {
    try {
      await this.#handle(id, frame, body);
    } catch (err: unknown) {
      if (err instanceof ReaderGone) return;
      const wire = toWireError(err);
      if (wire.internal) this.#ctx.logger.error({ err, request: body }, "native request failed");
      if (wire.kind === "notHandled")
        this.#send({ correlationId: id, notHandled: wire.notHandled });
      else this.#sendError(id, wire.nativeCode, wire.message, wire.streamId, wire.owner);
    } finally {
      this.#inflight--;
      if (this.#pausedForInflight && this.#inflight < this.#settings.maxInflightRequests / 2) {
        this.#pausedForInflight = false;
        this.#updatePause();
      }
    }
  }

  /** null when allowed; otherwise why not. Credentials are never logged. */
  #authenticate(frame: Frame): string | null {
    const auth = this.#ctx.auth;
    if (!auth.enabled) return null;
    const c = frame.credentials;
    const perRequest =
      c && ((c.username ?? "") !== "" || (c.password ?? "") !== "")
        ? { username: c.username ?? "", password: c.password ?? "" }
        : null;
    const result = auth.check(perRequest ?? this.#credentials);
    if (result.ok) return null;
    return result.reason === "missing"
      ? "authentication required: this node takes requests only with a username and password (HTTP Basic credentials on the WebSocket upgrade, or Frame.credentials; with @chorus/client, user:password@ in the connection string or withDefaultCredentials)"
      : "wrong username or password";
  }

  async #handle(id: number, frame: Frame, body: FrameBodyKind): Promise<void> {
    const { store, metrics } = this.#ctx;
    checkFrameOwnership(this.#ctx.options, frame, body);
    switch (body) {
      case "append": {
        const started = performance.now();
        try {
          const req = frame.append ?? {};
          const streamId = checkStreamName(req.streamId ?? "");
          checkClientWrite(streamId);
          const expected = expectedFromWire(req.expected, streamId);
          // Before the events are checked one by one: an oversized append costs nothing more.
          const scanned = scannedOversized.get(frame);
          if (scanned !== undefined) {
            refuseOversized(
              scanned.events,
              scanned.bytes,
              streamId,
              this.#ctx.options.maxAppendBytes,
            );
          }
          checkWireAppendSize(req.events, streamId, this.#ctx.options.maxAppendBytes);
          const events = eventsFromWire(req.events, streamId);
          const result = await this.#ctx.track(store.append(streamId, expected, events));
          // Counted in plain numbers (AppendTally): prom-client's inc costs a label hash.
          const tally = metrics.nativeAppends;
          if (result.ok) {
            tally.success++;
            tally.events += events.length;
            this.#link.sendAppendSuccess(id, result.nextExpectedVersion, result.position);
            this.#checkOutput();
          } else {
            tally.wrongExpectedVersion++;
            this.#send({
              correlationId: id,
              appendResult: {
                wrongExpectedVersion: wrongExpectedToWire(expected, result.wrongExpectedVersion),
              },
            });
          }
        } finally {
          this.#appendLatency.observe((performance.now() - started) / 1000);
        }
        return;
      }
      case "deleteStream": {
        const req = frame.deleteStream ?? {};
        const streamId = checkStreamName(req.streamId ?? "");
        checkClientWrite(streamId);
        const expected = expectedFromWire(req.expected, streamId);
        const result = await this.#ctx.track(store.delete(streamId, expected, req.hard === true));
        metrics.deletes.inc({
          interface: "native",
          result: result.ok ? "success" : "wrong_expected_version",
        });
        this.#send({
          correlationId: id,
          deleteResult: result.ok
            ? { success: { position: result.position } }
            : { wrongExpectedVersion: wrongExpectedToWire(expected, result.wrongExpectedVersion) },
        });
        return;
      }
      case "readStream":
      case "readAll": {
        const cancel = new AbortController();
        this.#reads.set(id, cancel);
        try {
          if (!(await this.#readTurn(cancel.signal))) return;
          try {
            if (body === "readStream")
              await this.#readStream(id, frame.readStream ?? {}, cancel.signal);
            else await this.#readAll(id, frame.readAll ?? {}, cancel.signal);
          } finally {
            this.#readDone();
          }
        } finally {
          if (this.#reads.get(id) === cancel) this.#reads.delete(id);
        }
        return;
      }
      case "subscribe":
        this.#subscribe(id, frame.subscribe ?? {});
        return;
      case "persistentCreate": {
        const req = frame.persistentCreate ?? {};
        await this.#persistentService.create(groupKey(req), req.settings);
        this.#send({ correlationId: id, persistentDone: {} });
        return;
      }
      case "persistentUpdate": {
        const req = frame.persistentUpdate ?? {};
        await this.#persistentService.update(groupKey(req), req.settings);
        this.#send({ correlationId: id, persistentDone: {} });
        return;
      }
      case "persistentDelete": {
        await this.#persistentService.delete(groupKey(frame.persistentDelete ?? {}));
        this.#send({ correlationId: id, persistentDone: {} });
        return;
      }
      case "persistentList": {
        const streamId = frame.persistentList?.streamId ?? "";
        const groups = await this.#persistentService.list(
          streamId === "" ? undefined : streamIdOrAll(streamId),
        );
        this.#send({
          correlationId: id,
          persistentListResult: { groups: groups.map(groupInfoToWire) },
        });
        return;
      }
      case "persistentGetInfo": {
        const info = await this.#persistentService.getInfo(groupKey(frame.persistentGetInfo ?? {}));
        this.#send({ correlationId: id, persistentInfoResult: { info: groupInfoToWire(info) } });
        return;
      }
      case "persistentReplayParked": {
        const req = frame.persistentReplayParked ?? {};
        await this.#persistentService.replayParked(
          groupKey(req),
          safeNumber(req.stopAt, "stop_at"),
        );
        this.#send({ correlationId: id, persistentDone: {} });
        return;
      }
      case "persistentSubscribe":
        await this.#persistentSubscribe(id, frame.persistentSubscribe ?? {});
        return;
      default:
        return;
    }
  }

  async #persistentSubscribe(id: number, req: chorus.IPersistentSubscribe): Promise<void> {
    if (this.#consumers.has(id) || this.#subs.has(id)) {
      throw new RequestError(
        Code.BAD_REQUEST,
        `correlation id ${id} already identifies a subscription on this connection`,
      );
    }
    const key = groupKey(req);
    const bufferSize = Number(req.bufferSize ?? 0);
    if (!Number.isSafeInteger(bufferSize) || bufferSize < 1 || bufferSize > 100_000)
      throw invalidArgument(`buffer_size must be in 1..100000, got ${String(req.bufferSize)}`);
    // Counted from here (joining included) until it ends: dropped, unsubscribed or disconnected.
    if (this.#refuseOverSubscriptionLimit(id)) return;
    this.#consumers.set(id, undefined);
    // Times each event from its delivery here until the consumer's ack for it arrives.
    const acks = this.#ctx.metrics.ackTimer(key, bufferSize);
    let handle: ConsumerHandle;
    try {
      handle = await this.#persistentService.subscribe(
        key,
        {
          deliver: (events, retryCounts) => {
            acks.delivered(events, performance.now());
            this.#sendEventsFrame(id, { persistentEvents: { retryCounts } }, events);
          },
          acked: (positions) => this.#send({ correlationId: id, persistentAcked: { positions } }),
          dropped: (code, message) => {
            if (this.#consumers.has(id)) this.#consumers.delete(id);
            this.#send({
              correlationId: id,
              subscriptionDropped: {
                reason: { code: dropCodeToWire(code), message, streamId: key.streamId },
              },
            });
          },
        },
        {
          bufferSize,
          name: req.consumerName ?? "",
          connection: this.#remote,
          held: (req.heldPositions ?? []).slice(0, bufferSize).map(wireNumber),
        },
      );
    } catch (err) {
      this.#consumers.delete(id);
      throw err;
    }
    if (!this.#consumers.has(id) || !this.#link.isOpen) {
      // Unsubscribed or disconnected while joining.
      handle.close();
      return;
    }
    this.#consumers.set(id, acks.wrap(handle));
    this.#send({
      correlationId: id,
      persistentConfirmed: { subscriptionId: `${key.streamId}::${key.group}::${handle.id}` },
    });
  }

  /** One page of $all, no larger in bytes than a frame may carry, with its reply encoded. */
  async #readAllPage(
    direction: Direction,
    fromPosition: number | "end",
    maxCount: number,
    filter: ((e: StoredEvent) => boolean) | undefined,
    signal: AbortSignal,
  ): Promise<AllPage> {
    const store = this.#ctx.store;
    // No more events than one frame carries (the store ends the page before them).
    const r = await store.readAll({
      direction,
      fromPosition,
      maxCount,
      maxBytes: this.#batchBytes,
      ...(filter ? { filter, maxScan: MAX_SCAN_RECORDS } : {}),
      signal,
    });
    const { endOfStream, nextPosition } = r;
    // Forwards the next page starts at nextPosition (inclusive), backwards before it (exclusive).
    const frame = this.#link.prepareEvents({ readResult: { endOfStream, nextPosition } }, r.events);
    return { endOfStream, nextPosition, frame };
  }

  /**
   * Catch-up subscriptions and persistent subscription consumers together may number at most
   * `maxSubscriptionsPerConnection`; beyond it a new one is answered TOO_BUSY (true).
   */
  #refuseOverSubscriptionLimit(id: number): boolean {
    const max = this.#settings.maxSubscriptionsPerConnection;
    if (this.#subs.size + this.#consumers.size < max) return false;
    this.#send({
      correlationId: id,
      notHandled: {
        reason: chorus.NotHandled.Reason.TOO_BUSY,
        message: `at most ${max} subscriptions (catch-up and persistent together) per connection`,
      },
    });
    return true;
  }

  #subscribe(id: number, req: chorus.ISubscribeRequest): void {
    if (this.#subs.has(id) || this.#consumers.has(id)) {
      throw new RequestError(
        Code.BAD_REQUEST,
        `correlation id ${id} already identifies a subscription on this connection`,
      );
    }
    if (this.#refuseOverSubscriptionLimit(id)) return;
    const streamIdText = req.streamId ?? "";
    const all = req.all === true || streamIdText === "$all";
    if (all && streamIdText !== "" && streamIdText !== "$all") {
      throw invalidArgument("a $all subscription must not name a stream");
    }
    const target: SubscriptionTarget = all
      ? {
          kind: "all",
          filter: filterFromWire(req.filter),
          checkpointInterval: checkpointIntervalFromWire(req.filter),
        }
      : { kind: "stream", streamId: checkStreamName(streamIdText) };
    const Kind = chorus.SubscribeRequest.StartKind;
    let start: SubscriptionStart;
    switch (req.start ?? Kind.START) {
      case Kind.START:
        start = { kind: "start" };
        break;
      case Kind.END:
        start = { kind: "end" };
        break;
      case Kind.AFTER:
        start = {
          kind: "after",
          value: all
            ? safeNumber(req.afterPosition, "after_position")
            : safeNumber(req.afterRevision, "after_revision"),
        };
        break;
      default:
        throw invalidArgument(`unknown subscription start kind ${String(req.start)}`);
    }
    const streamId = target.kind === "stream" ? target.streamId : "";
    const sub = new Subscription({
      store: this.#ctx.store,
      target,
      start,
      initialCredit: Number(req.credit ?? 0),
      logger: this.#ctx.logger,
      pageSize: MAX_PAGE_EVENTS,
      maxScan: MAX_SCAN_RECORDS,
      mayLag: (position) => {
        const cluster = this.#ctx.cluster();
        if (cluster === undefined) return false; // a single node's log is the whole log
        if (cluster.writeRefusal() !== undefined) return true; // a follower or replica
        // A leader holds every committed position, but may not have committed all of it yet.
        return position !== undefined && position < cluster.logEnd;
      },
      sink: {
        confirmed: (headPosition) =>
          this.#send({ correlationId: id, subscriptionConfirmed: { headPosition } }),
        events: (events, checkpointPosition) => this.#sendEvents(id, events, checkpointPosition),
        caughtUp: (position) =>
          this.#send({ correlationId: id, subscriptionCaughtUp: { position } }),
        dropped: (code: DropCode, message: string, droppedStream?: string) => {
          if (this.#subs.get(id) === sub) {
            this.#subs.delete(id);
            this.#ctx.metrics.subscriptionsActive.dec();
          }
          // The storage is out of reach for now (NOT_READY), or out of this node's reach
          // (NOT_LEADER): a NotHandled, which a client answers by subscribing again from where
          // it was, on this node or on another (a drop would end its subscription).
          if (code === "NOT_READY" || code === "NOT_LEADER") {
            this.#send({
              correlationId: id,
              notHandled: { reason: chorus.NotHandled.Reason[code], message },
            });
            return;
          }
          this.#send({
            correlationId: id,
            subscriptionDropped: {
              reason: {
                code: dropCodeToWire(code),
                message,
                streamId: droppedStream ?? streamId,
              },
            },
          });
        },
        canSend: () => this.#canSend(),
        whenWritable: (resume) => {
          this.#writableWaiters.push(resume);
        },
      },
    });
    this.#subs.set(id, sub);
    this.#ctx.metrics.subscriptionsStarted.inc({ kind: all ? "all" : "stream" });
    this.#ctx.metrics.subscriptionsActive.inc();
    void sub.start();
  }

  async #readStream(
    id: number,
    req: chorus.IReadStreamRequest,
    signal: AbortSignal,
  ): Promise<void> {
    const { store, metrics } = this.#ctx;
    const streamId = checkStreamName(req.streamId ?? "");
    const direction = directionOf(req.direction);
    const fromRevision = req.fromEnd ? "end" : safeNumber(req.fromRevision, "from_revision");
    const maxCount = pageSize(req.maxCount);
    // No more events than one frame carries (the store ends the page before them).
    const r = await store.readStream(streamId, {
      direction,
      fromRevision,
      maxCount,
      maxBytes: this.#batchBytes,
      signal,
    });
    metrics.reads.inc({ interface: "native", kind: "stream" });
    this.#sendEventsFrame(
      id,
      {
        readResult: {
          endOfStream: r.endOfStream,
          nextRevision: r.nextRevision,
          lastRevision: r.lastRevision,
        },
      },
      r.events,
    );
  }

  async #readAll(id: number, req: chorus.IReadAllRequest, signal: AbortSignal): Promise<void> {
    const { store, metrics } = this.#ctx;
    const direction = directionOf(req.direction);
    const fromPosition = req.fromEnd ? "end" : safeNumber(req.fromPosition, "from_position");
    const filter = filterFromWire(req.filter);
    if (checkpointIntervalFromWire(req.filter) !== undefined)
      throw invalidArgument("filter: checkpoint_interval applies to $all subscriptions, not reads");
    const maxCount = pageSize(req.maxCount);
    const key = readAheadKey(direction, fromPosition, maxCount, req.filter);
    const ahead = this.#readAhead;
    this.#readAhead = undefined;
    let r: AllPage;
    if (ahead?.key === key && (await ahead.page.catch(() => undefined)) !== undefined) {
      r = await ahead.page;
      // A page that ended at the then-committed end is only current if nothing committed since.
      if (r.endOfStream && ahead.commitPosition !== store.commitPosition) {
        r = await this.#readAllPage(direction, fromPosition, maxCount, filter, signal);
      }
    } else {
      r = await this.#readAllPage(direction, fromPosition, maxCount, filter, signal);
    }
    if (!r.endOfStream && typeof fromPosition === "number" && this.#link.isOpen) {
      // Sequential readers ask for the next page next: read it while this one travels.
      const next = r.nextPosition;
      // Read for the connection, not for this request: a later request may take it.
      const page = this.#readAllPage(direction, next, maxCount, filter, this.#gone.signal);
      page.catch(() => undefined);
      this.#readAhead = {
        key: readAheadKey(direction, next, maxCount, req.filter),
        page,
        commitPosition: store.commitPosition,
      };
    }
    metrics.reads.inc({ interface: "native", kind: "all" });
    r.frame.send(id);
  }

  #sendEvents(id: number, events: StoredEvent[], checkpointPosition: number | undefined): void {
    const checkpoint = checkpointPosition ?? 0;
    if (events.length === 0) {
      this.#send({
        correlationId: id,
        subscriptionEvents: { events: [], checkpointPosition: checkpoint },
      });
      return;
    }
    let batch: StoredEvent[] = [];
    let bytes = 0;
    for (const e of events) {
      const size = eventBytes(e);
      if (batch.length > 0 && bytes + size > this.#batchBytes) {
        this.#sendEventsFrame(id, { subscriptionEvents: {} }, batch);
        batch = [];
        bytes = 0;
      }
      batch.push(e);
      bytes += size;
    }
    this.#sendEventsFrame(id, { subscriptionEvents: { checkpointPosition: checkpoint } }, batch);
  }
}

function streamIdOrAll(streamId: string): string {
  return streamId === "$all" ? streamId : checkStreamName(streamId);
}

function groupKey(req: { streamId?: string | null; group?: string | null }): GroupKey {
  return { streamId: streamIdOrAll(req.streamId ?? ""), group: checkGroupName(req.group ?? "") };
}

function nackAction(
  action: chorus.PersistentNack.Action | null | undefined,
): NackAction | undefined {
  const A = chorus.PersistentNack.Action;
  switch (action ?? A.PARK) {
    case A.PARK:
      return "park";
    case A.RETRY:
      return "retry";
    case A.SKIP:
      return "skip";
    case A.STOP:
      return "stop";
    default:
      return undefined;
  }
}

function groupInfoToWire(info: GroupInfo): chorus.IPersistentGroupInfo {
  return {
    streamId: info.streamId,
    group: info.group,
    settings: settingsToWire(info.settings),
    status: info.status,
    consumers: info.consumers,
    inFlight: info.inFlight,
    parkedCount: info.parkedCount,
    hasCheckpoint: info.lastCheckpoint !== undefined,
    lastCheckpoint: info.lastCheckpoint ?? 0,
    deliveryRate: info.deliveryRate,
    ackRate: info.ackRate,
    totalDelivered: info.totalDelivered,
    totalAcked: info.totalAcked,
    totalParked: info.totalParked,
  };
}

function directionOf(direction: chorus.Direction | null | undefined): "forwards" | "backwards" {
  switch (direction ?? chorus.Direction.FORWARDS) {
    case chorus.Direction.FORWARDS:
      return "forwards";
    case chorus.Direction.BACKWARDS:
      return "backwards";
    default:
      throw invalidArgument(`unknown read direction ${String(direction)}`);
  }
}

function safeNumber(value: number | null | undefined, field: string): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0)
    throw invalidArgument(`${field} ${String(value)} is out of range (0..2^53-1)`);
  return n;
}

/** 0 (unset) means "as many as the server allows"; pages are capped at 4,096 events. */
function pageSize(maxCount: number | null | undefined): number {
  const n = Number(maxCount ?? 0);
  return n <= 0 ? MAX_PAGE_EVENTS : Math.min(n, MAX_PAGE_EVENTS);
}
