import { createServer, connect, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Endpoint } from "./node.js";
import { resetSocket } from "./reset.js";

export interface StartFaultProxyOptions {
  /** Where the proxy forwards every connection to. */
  target: Endpoint;
  /** Where the proxy listens. Default 127.0.0.1 and a free port chosen by the OS. */
  listen?: { host?: string; port?: number };
  /**
   * Largest number of bytes one direction of one connection keeps in the proxy (chunks
   * waiting out a latency). Past it the proxy stops reading from the sender (TCP
   * backpressure) until the queue drains. Default 1 MiB.
   */
  maxQueuedBytes?: number;
}

export interface LatencyOptions {
  /** Every chunk is held at least this long, in each direction. */
  delayMs: number;
  /** Plus a random extra of 0..jitterMs (uniform). Order per direction is kept. Default 0. */
  jitterMs?: number;
}

export interface DropRepliesOptions {
  /**
   * Discard only this many server->client chunks (counted over all connections), then
   * forward again by itself. Default: discard until heal().
   *
   * A chunk is what one read from the server's socket returns. On loopback a reply the
   * server writes with one write() (one WebSocket frame, one HTTP response written at
   * once) arrives as one chunk, but TCP does not promise it: replies written in several
   * writes, or sent back to back, may split or merge.
   */
  count?: number;
}

/** Bytes the proxy moved or discarded since it started, over all connections. */
export interface FaultProxyStats {
  /** Client->server bytes delivered to the target. */
  upstreamBytes: number;
  /** Server->client bytes delivered to clients. */
  downstreamBytes: number;
  droppedUpstreamBytes: number;
  droppedDownstreamBytes: number;
  /** Server->client chunks discarded (see DropRepliesOptions.count). */
  droppedDownstreamChunks: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections cut by resetAll(). */
  reset: number;
}

export interface FaultProxy {
  /** Give this to the client instead of the target. */
  readonly endpoint: Endpoint;
  /** The proxied target. */
  readonly target: Endpoint;
  /** Open proxied connections. */
  readonly connections: number;
  /** A copy of the counters. */
  readonly stats: FaultProxyStats;
  /**
   * Partition: nothing flows either way, on open and new connections. The proxy stops
   * reading (the senders' TCP windows fill up, as over a dead link); new connections are
   * accepted but not connected to the target until heal(). Bytes sent meanwhile are held,
   * not lost: heal() delivers them, as TCP retransmission would after a short partition.
   * For "the link died", follow with resetAll().
   */
  blackhole(): void;
  /**
   * One-way drop: client->server bytes are discarded (server->client unchanged). The byte
   * stream then has a gap: framed protocols on such a connection are corrupt after heal().
   */
  dropUpstream(): void;
  /** One-way drop: server->client bytes are discarded (client->server unchanged). */
  dropDownstream(): void;
  /** Delays each chunk by delayMs (+ jitter) in both directions, preserving order. */
  latency(options: LatencyOptions): void;
  /**
   * Requests reach the server and are executed; their replies are discarded. Client->server
   * bytes flow even if they were held or dropped before.
   */
  dropRepliesAfterForwarding(options?: DropRepliesOptions): void;
  /** Cuts every open connection with a TCP RST to both ends; new connections are unaffected. */
  resetAll(): void;
  /** Ends every fault: a transparent pipe again. Held and delayed bytes are delivered now. */
  heal(): void;
  /** Stops listening, destroys every connection, clears every timer. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;

/** What happens to bytes in one direction. */
type Mode = "pass" | "hold" | "drop";

interface Faults {
  up: Mode;
  down: Mode;
  /** Remaining server->client chunks to drop while down is "drop"; Infinity = until heal. */
  downDropsLeft: number;
  latency: { delayMs: number; jitterMs: number } | undefined;
}

interface QueuedChunk {
  data: Buffer;
  dueAt: number;
}

/** One direction of one connection: reads `from`, writes `to`. */
class Pipe {
  readonly #queue: QueuedChunk[] = [];
  #queuedBytes = 0;
  #lastDueAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #blocked = false;
  #ended = false;
  // Both sockets start paused (pauseOnConnect, pause() after connect()).
  #paused = true;
  #closeTarget = false;
  #disposed = false;
  readonly #from: Socket;
  readonly #upstream: boolean;
  readonly #proxy: FaultProxyImpl;
  #to: Socket | undefined;

  constructor(proxy: FaultProxyImpl, from: Socket, upstream: boolean) {
    this.#proxy = proxy;
    this.#from = from;
    this.#upstream = upstream;
    from.on("data", (data: Buffer) => this.#onData(data));
    from.on("end", () => {
      this.#ended = true;
      this.pump();
    });
  }

  get #mode(): Mode {
    return this.#upstream ? this.#proxy.faults.up : this.#proxy.faults.down;
  }

  /** Sets (once) the socket the pipe writes to. */
  attach(to: Socket): void {
    this.#to = to;
    to.on("drain", () => {
      this.#blocked = false;
      this.pump();
    });
    this.pump();
  }

  #onData(data: Buffer): void {
    if (this.#disposed) return;
    const latency = this.#proxy.faults.latency;
    let dueAt = 0;
    if (latency) {
      const delay = latency.delayMs + Math.random() * latency.jitterMs;
      dueAt = Math.max(performance.now() + delay, this.#lastDueAt);
      this.#lastDueAt = dueAt;
    }
    this.#queue.push({ data, dueAt });
    this.#queuedBytes += data.length;
    this.pump();
  }

  /** Moves due chunks on as the current faults say; call after any change. */
  pump(): void {
    if (this.#disposed) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const to = this.#to;
    const latency = this.#proxy.faults.latency;
    while (to && !this.#blocked && this.#mode !== "hold") {
      const head = this.#queue[0];
      if (!head) break;
      if (latency) {
        const waitMs = head.dueAt - performance.now();
        if (waitMs > 0) {
          // Timers may fire a little early: pump() checks again and re-arms.
          this.#timer = setTimeout(() => this.pump(), Math.ceil(waitMs));
          break;
        }
      }
      this.#queue.shift();
      this.#queuedBytes -= head.data.length;
      if (this.#forwards()) {
        this.#proxy.count(this.#upstream, head.data.length, false);
        if (!to.write(head.data)) this.#blocked = true;
      } else {
        this.#proxy.count(this.#upstream, head.data.length, true);
      }
    }
    if (to && this.#ended && this.#queue.length === 0 && this.#mode !== "hold") {
      if (this.#closeTarget) to.destroySoon();
      else if (!to.writableEnded) to.end();
    }
    this.#updateFlow();
  }

  /** Whether the chunk now leaving the queue is delivered (false: discarded). */
  #forwards(): boolean {
    if (this.#mode === "pass") return true;
    if (!this.#upstream) this.#proxy.downstreamChunkDropped();
    return false;
  }

  /** Reading stops while the queue is full, the receiver is slow, or the link is held. */
  #updateFlow(): void {
    const pause =
      this.#mode === "hold" ||
      this.#blocked ||
      this.#to === undefined ||
      this.#queuedBytes >= this.#proxy.maxQueuedBytes;
    if (pause === this.#paused || this.#from.destroyed) return;
    this.#paused = pause;
    if (pause) this.#from.pause();
    else this.#from.resume();
  }

  /** The sender is gone: deliver what is queued (when the faults let it), then close. */
  finishAndClose(): void {
    this.#ended = true;
    this.#closeTarget = true;
    this.pump();
  }

  dispose(): void {
    this.#disposed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }
}

class Connection {
  readonly #proxy: FaultProxyImpl;
  readonly #client: Socket;
  #server: Socket | undefined;
  readonly #up: Pipe;
  #down: Pipe | undefined;
  #closing = false;
  #forgotten = false;
  readonly #onGone: () => void;
  /** Resolves once both sockets are closed. */
  readonly gone: Promise<void>;

  constructor(proxy: FaultProxyImpl, client: Socket) {
    this.#proxy = proxy;
    this.#client = client;
    let onGone = () => {};
    this.gone = new Promise<void>((resolve) => (onGone = resolve));
    this.#onGone = onGone;
    client.pause();
    this.#up = new Pipe(proxy, client, true);
    client.on("error", () => this.#abort());
    client.on("close", (hadError) => (hadError ? this.#abort() : this.#closed(true)));
    this.update();
  }

  /** Connects to the target once the link is not held, then moves bytes as the faults say. */
  update(): void {
    if (!this.#closing && !this.#server && this.#proxy.faults.up !== "hold") {
      const target = this.#proxy.target;
      const server = connect({ host: target.host, port: target.port, allowHalfOpen: true });
      server.setNoDelay(true);
      server.pause();
      this.#server = server;
      this.#down = new Pipe(this.#proxy, server, false);
      // The target refusing or dying shows the client a reset: a proxy cannot refuse later.
      server.on("error", () => this.#abort());
      server.on("close", (hadError) => (hadError ? this.#abort() : this.#closed(false)));
      this.#up.attach(server);
      this.#down.attach(this.#client);
      return;
    }
    this.#up.pump();
    this.#down?.pump();
  }

  reset(): void {
    this.#abort();
  }

  /**
   * One side closed cleanly: the other still gets what that side sent (as the faults
   * allow), then its connection closes.
   */
  #closed(client: boolean): void {
    if (!this.#closing) {
      this.#closing = true;
      (client ? this.#down : this.#up)?.dispose();
      (client ? this.#up : this.#down)?.finishAndClose();
    }
    this.#forgetWhenGone();
  }

  /** An error or a reset: RST to whoever is still there, nothing more is delivered. */
  #abort(): void {
    this.#closing = true;
    this.#up.dispose();
    this.#down?.dispose();
    for (const socket of [this.#client, this.#server]) if (socket) resetSocket(socket);
    this.#forgetWhenGone();
  }

  #forgetWhenGone(): void {
    if (!this.#forgotten && this.#client.closed && (!this.#server || this.#server.closed)) {
      this.#forgotten = true;
      this.#proxy.forget(this);
      this.#onGone();
    }
  }
}

class FaultProxyImpl implements FaultProxy {
  readonly target: Endpoint;
  readonly maxQueuedBytes: number;
  faults: Faults = { up: "pass", down: "pass", downDropsLeft: 0, latency: undefined };
  readonly #server: Server;
  readonly #connections = new Set<Connection>();
  readonly #stats: FaultProxyStats = {
    upstreamBytes: 0,
    downstreamBytes: 0,
    droppedUpstreamBytes: 0,
    droppedDownstreamBytes: 0,
    droppedDownstreamChunks: 0,
    accepted: 0,
    reset: 0,
  };
  #endpoint: Endpoint | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: StartFaultProxyOptions) {
    this.target = { host: options.target.host, port: options.target.port };
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      if (this.#closing) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      this.#stats.accepted++;
      this.#connections.add(new Connection(this, socket));
    });
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    const address = this.#server.address();
    if (address === null || typeof address === "string") {
      throw new Error("fault proxy: listening on an unexpected address");
    }
    this.#endpoint = { host, port: address.port };
  }

  get endpoint(): Endpoint {
    if (!this.#endpoint) throw new Error("fault proxy is not listening");
    return { ...this.#endpoint };
  }

  get connections(): number {
    return this.#connections.size;
  }

  get stats(): FaultProxyStats {
    return { ...this.#stats };
  }

  blackhole(): void {
    this.#set({ up: "hold", down: "hold", downDropsLeft: 0 });
  }

  dropUpstream(): void {
    this.#set({ up: "drop" });
  }

  dropDownstream(): void {
    this.#set({ down: "drop", downDropsLeft: Infinity });
  }

  latency(options: LatencyOptions): void {
    const delayMs = options.delayMs;
    const jitterMs = options.jitterMs ?? 0;
    if (!(delayMs >= 0) || !(jitterMs >= 0) || !Number.isFinite(delayMs + jitterMs)) {
      throw new RangeError("fault proxy: latency needs finite delayMs >= 0 and jitterMs >= 0");
    }
    this.#set({ latency: delayMs + jitterMs > 0 ? { delayMs, jitterMs } : undefined });
  }

  dropRepliesAfterForwarding(options: DropRepliesOptions = {}): void {
    const count = options.count ?? Infinity;
    if (!(count >= 1)) throw new RangeError("fault proxy: count must be at least 1");
    this.#set({ up: "pass", down: "drop", downDropsLeft: count });
  }

  resetAll(): void {
    for (const connection of [...this.#connections]) {
      this.#stats.reset++;
      connection.reset();
    }
  }

  heal(): void {
    this.#set({ up: "pass", down: "pass", downDropsLeft: 0, latency: undefined });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const listening = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      const connections = [...this.#connections];
      for (const connection of connections) connection.reset();
      await Promise.all([listening, ...connections.map((c) => c.gone)]);
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #set(change: Partial<Faults>): void {
    this.faults = { ...this.faults, ...change };
    for (const connection of [...this.#connections]) connection.update();
  }

  count(upstream: boolean, bytes: number, dropped: boolean): void {
    const s = this.#stats;
    if (upstream) {
      if (dropped) s.droppedUpstreamBytes += bytes;
      else s.upstreamBytes += bytes;
    } else if (dropped) s.droppedDownstreamBytes += bytes;
    else s.downstreamBytes += bytes;
  }

  /** A server->client chunk was discarded: counts down a dropRepliesAfterForwarding({ count }). */
  downstreamChunkDropped(): void {
    this.#stats.droppedDownstreamChunks++;
    if (this.faults.down !== "drop") return;
    this.faults.downDropsLeft--;
    if (this.faults.downDropsLeft <= 0) {
      // Only this pipe is pumping now; the others pick the change up on their next chunk.
      this.faults = { ...this.faults, down: "pass", downDropsLeft: 0 };
    }
  }

  forget(connection: Connection): void {
    this.#connections.delete(connection);
  }
}

/**
 * Starts a TCP proxy in front of `target` whose link can be broken on demand: partitions,
 * one-way drops, latency, resets, lost replies. Faults apply to open and new connections at
 * once and stay until heal(). See the package README.
 */
export async function startFaultProxy(options: StartFaultProxyOptions): Promise<FaultProxy> {
  const proxy = new FaultProxyImpl(options);
  await proxy.listen(options.listen?.host ?? "127.0.0.1", options.listen?.port ?? 0);
  return proxy;
}
