/**
 * Node-to-node links on the internal TCP port: WebSocket, one InternalFrame per binary
 * message. Each node sends on its own outbound link to every peer and receives on the
 * links its peers opened, so a reply travels on the replier's outbound link. Consensus
 * tolerates lost messages, so a frame for a peer that is not connected (or whose link is
 * backed up) is dropped, never queued without bound.
 */
import type { IncomingMessage, Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { isIP } from "node:net";
import type { Duplex } from "node:stream";
import {
  DEFAULT_MAX_FRAME_BYTES,
  decodeInternalFrame,
  encodeInternalFrame,
  FrameError,
  messageBytes,
  type InternalFrame,
  type InternalFrameInit,
} from "@chorus/protocol";
import { WebSocket, WebSocketServer, type RawData } from "ws";

export interface PeerEndpoint {
  readonly host: string;
  readonly port: number;
}

export interface PeerIdentity {
  readonly instanceId: string;
  readonly clusterSize: number;
  readonly readOnlyReplica: boolean;
}

export interface PeerLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface PeerNetworkOptions {
  readonly self: PeerIdentity;
  readonly logger: PeerLogger;
  /** Called for every frame a peer sends (after its hello). */
  readonly onFrame: (from: PeerIdentity, frame: InternalFrame) => void;
  /** Called when a peer's inbound link (after its hello) closes. */
  readonly onPeerGone?: (peer: PeerIdentity) => void;
  /**
   * TLS for outbound links (wss): the roots that signed the peers' certificates, and this
   * node's certificate and key, which the peers' internal port demands.
   */
  readonly tls?: {
    readonly ca: readonly (string | Buffer)[];
    readonly cert?: string | Buffer;
    readonly key?: string | Buffer;
  };
  /**
   * Outbound links leave from this address (the node's internal IP), so peers see a member's
   * connections come from its internal interface. Used for peers of the same address family.
   */
  readonly localAddress?: string;
  /** Base of the capped backoff between reconnection attempts. Default 50 ms. */
  readonly reconnectDelayMs?: number;
  /** Cap of that backoff. Default 1,000 ms. */
  readonly maxReconnectDelayMs?: number;
  /** A peer must say hello within this after connecting. Default 2,000 ms. */
  readonly helloTimeoutMs?: number;
  /** Frames are dropped while this many bytes wait in a link's socket. Default 8 MiB. */
  readonly maxBufferedBytes?: number;
  readonly maxFrameBytes?: number;
}

export const DEFAULT_PEER_RECONNECT_DELAY_MS = 50;
export const DEFAULT_PEER_MAX_RECONNECT_DELAY_MS = 1_000;
export const DEFAULT_PEER_HELLO_TIMEOUT_MS = 2_000;
export const DEFAULT_PEER_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

function key(endpoint: PeerEndpoint): string {
  return `${endpoint.host}:${endpoint.port}`;
}

/**
 * The source address for a connection to `host`: `localAddress` when it is a specific IP of
 * the same family as `host` (an IP); otherwise undefined (the system chooses).
 */
export function sourceAddressFor(
  localAddress: string | undefined,
  host: string,
): string | undefined {
  if (localAddress === undefined || localAddress === "0.0.0.0" || localAddress === "::") {
    return undefined;
  }
  const family = isIP(localAddress);
  return family !== 0 && family === isIP(host) ? localAddress : undefined;
}

/** One outbound link that keeps reconnecting until closed. */
class OutboundLink {
  #ws: WebSocket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #closed = false;

  constructor(
    readonly endpoint: PeerEndpoint,
    private readonly net: PeerNetwork,
  ) {
    this.#connect();
  }

  get open(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  send(bytes: Uint8Array): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    if (ws.bufferedAmount > this.net.maxBufferedBytes) return false;
    ws.send(bytes, { binary: true });
    return true;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws) {
      ws.removeAllListeners();
      ws.on("error", () => undefined);
      ws.terminate();
    }
  }

  #connect(): void {
    if (this.#closed) return;
    const tls = this.net.options.tls;
    const scheme = tls ? "wss" : "ws";
    const localAddress = sourceAddressFor(this.net.options.localAddress, this.endpoint.host);
    const ws = new WebSocket(`${scheme}://${key(this.endpoint)}/`, {
      perMessageDeflate: false,
      maxPayload: this.net.maxFrameBytes,
      handshakeTimeout: this.net.helloTimeoutMs,
      ...(localAddress !== undefined && { localAddress }),
      ...(tls && {
        ca: [...tls.ca],
        cert: tls.cert,
        key: tls.key,
      }),
    });
    this.#ws = ws;
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      this.#attempt = 0;
      ws.send(this.net.helloBytes, { binary: true });
      this.net.options.logger.debug({ peer: key(this.endpoint) }, "peer link open");
    });
    // Inbound traffic on an outbound link is not expected; drain it.
    ws.on("message", () => undefined);
    ws.on("error", (err) => {
      this.net.options.logger.debug(
        { peer: key(this.endpoint), err: err.message },
        "peer link error",
      );
    });
    ws.on("close", () => {
      if (this.#ws !== ws || this.#closed) return;
      this.#ws = undefined;
      this.#attempt++;
      const base = this.net.options.reconnectDelayMs ?? DEFAULT_PEER_RECONNECT_DELAY_MS;
      const cap = this.net.options.maxReconnectDelayMs ?? DEFAULT_PEER_MAX_RECONNECT_DELAY_MS;
      const delayMs = Math.min(cap, base * 2 ** Math.min(this.#attempt - 1, 10));
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#connect();
      }, delayMs);
    });
  }
}

export class PeerNetwork {
  readonly options: PeerNetworkOptions;
  readonly helloBytes: Uint8Array;
  readonly maxFrameBytes: number;
  readonly maxBufferedBytes: number;
  readonly helloTimeoutMs: number;
  readonly #links = new Map<string, OutboundLink>();
  readonly #wss: WebSocketServer;
  #closed = false;

  constructor(options: PeerNetworkOptions) {
    this.options = options;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_PEER_MAX_BUFFERED_BYTES;
    this.helloTimeoutMs = options.helloTimeoutMs ?? DEFAULT_PEER_HELLO_TIMEOUT_MS;
    this.helloBytes = encodeInternalFrame({
      from: options.self.instanceId,
      hello: {
        instanceId: options.self.instanceId,
        clusterSize: options.self.clusterSize,
        readOnlyReplica: options.self.readOnlyReplica,
      },
    });
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: this.maxFrameBytes,
    });
  }

  /** Opens (and keeps open) a link to a peer's internal TCP endpoint. Idempotent. */
  connect(endpoint: PeerEndpoint): void {
    if (this.#closed || this.#links.has(key(endpoint))) return;
    this.#links.set(key(endpoint), new OutboundLink(endpoint, this));
  }

  /** Closes the link to a peer that left. */
  disconnect(endpoint: PeerEndpoint): void {
    const link = this.#links.get(key(endpoint));
    this.#links.delete(key(endpoint));
    link?.close();
  }

  isConnected(endpoint: PeerEndpoint): boolean {
    return this.#links.get(key(endpoint))?.open === true;
  }

  /** Sends one frame to a peer; false when it was dropped (not connected, or backed up). */
  send(endpoint: PeerEndpoint, frame: Omit<InternalFrameInit, "from">): boolean {
    const link = this.#links.get(key(endpoint));
    if (!link) return false;
    return link.send(encodeInternalFrame({ ...frame, from: this.options.self.instanceId }));
  }

  /** Takes WebSocket upgrades of the internal TCP port's server. */
  attach(server: HttpServer | HttpsServer): void {
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (this.#closed) {
        socket.destroy();
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req));
    });
  }

  #accept(ws: WebSocket, req: IncomingMessage): void {
    const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    const log = this.options.logger;
    let peer: PeerIdentity | undefined;
    let refused = false;
    const helloTimer = setTimeout(() => {
      log.info({ remote }, "peer did not say hello in time; closing");
      ws.close(1008, "expected a PeerHello frame first");
    }, this.helloTimeoutMs);
    ws.on("close", () => {
      clearTimeout(helloTimer);
      if (peer && !refused && !this.#closed) this.options.onPeerGone?.(peer);
    });
    ws.on("error", (err) => log.debug({ remote, err: err.message }, "inbound peer link error"));
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (refused) return;
      if (!isBinary) {
        ws.close(1003, "text frames are not supported: send binary InternalFrames");
        return;
      }
      let frame: InternalFrame;
      try {
        frame = decodeInternalFrame(messageBytes(data), this.maxFrameBytes);
      } catch (err) {
        const reason = err instanceof FrameError ? err.message : "undecodable frame";
        ws.close(1002, `protocol error: ${reason}`.slice(0, 120));
        return;
      }
      if (!peer) {
        const hello = frame.hello;
        if (!hello?.instanceId) {
          ws.close(1008, "expected a PeerHello frame first");
          return;
        }
        clearTimeout(helloTimer);
        const clusterSize = hello.clusterSize ?? 0;
        if (clusterSize !== this.options.self.clusterSize) {
          refused = true;
          log.warn(
            {
              remote,
              peer: hello.instanceId,
              theirs: clusterSize,
              ours: this.options.self.clusterSize,
            },
            "peer has a different cluster size; refusing it",
          );
          ws.close(1008, `cluster size mismatch: ours is ${this.options.self.clusterSize}`);
          return;
        }
        peer = {
          instanceId: hello.instanceId,
          clusterSize,
          readOnlyReplica: hello.readOnlyReplica === true,
        };
        return;
      }
      try {
        this.options.onFrame(peer, frame);
      } catch (err) {
        log.warn({ remote, err: (err as Error).message }, "peer frame handler threw");
      }
    });
  }

  /** Closes every link, inbound and outbound. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}
