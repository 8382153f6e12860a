/**
 * Node-to-node links on the internal TCP port: WebSocket, one InternalFrame per binary
 * message. Each node sends on its own outbound link to every peer and receives on the
 * links its peers opened, so a reply travels on the replier's outbound link. The node that
 * accepts a link answers with its own hello, so both ends know which instance is at the
 * other end of every link (an older node drains that hello unread).
 *
 * Liveness. Every open link is pinged (WebSocket ping) every `keepaliveIntervalMs`; a link that
 * has heard nothing (no frame, no ping, no pong) for `keepaliveTimeoutMs` is terminated (and an
 * outbound one reopened), so a half-open link (a peer host gone without a FIN, a middlebox that
 * lost the connection) is noticed instead of swallowing frames until TCP gives up.
 *
 * Peer loss (`onPeerGone`). A peer is gone when no link with it is open, neither one it opened
 * to this node nor this node's own to it, and either this node's attempt to reopen its link
 * failed (refused: nothing listens at the peer's address any more; or no handshake in time) or
 * no link came back within `lossGraceMs`. A link that breaks and reconnects (a TCP reset, a
 * proxy restart), or an old socket that closes after a new one opened, is not a loss. A loss is
 * reported once; a link to that instance opening again starts over.
 *
 * Back-pressure. Consensus tolerates lost messages, but nothing is dropped silently and small
 * control frames are never dropped: votes, replies, TimeoutNow and Appends without records
 * (heartbeats) are always written to an open link. An Append that carries records is not sent
 * while the link holds more than `maxBufferedBytes` not yet handed to the kernel: `send` returns
 * false, a warning is logged (at most once per BACKPRESSURE_LOG_INTERVAL_MS per peer, with the
 * counts), and the leader sends those records again once the follower tells it where its log
 * ends. `bufferedBytes` and `writable` let the sender hold catch-up data before that.
 */
import type { IncomingMessage, Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { isIP } from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import {
  WebSocketOutbox,
  socketOfWebSocket,
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
  /**
   * Called once when a peer instance is gone: no link with it is open and reopening failed or
   * did not succeed within `lossGraceMs` (see the module comment).
   */
  readonly onPeerGone?: (peer: PeerIdentity) => void;
  /**
   * Called when this node's own link to `endpoint` has opened and the peer said who it is:
   * frames sent to `endpoint` are delivered again (while no link is open, `send` drops them).
   */
  readonly onPeerReachable?: (endpoint: PeerEndpoint, peer: PeerIdentity) => void;
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
  /**
   * Base of the capped backoff between reconnection attempts. Default 50 ms. A link that had
   * been open for at least PEER_LINK_STABLE_MS is reopened at once when it closes.
   */
  readonly reconnectDelayMs?: number;
  /** Cap of that backoff. Default 1,000 ms. */
  readonly maxReconnectDelayMs?: number;
  /** A peer must say hello within this after connecting. Default 2,000 ms. */
  readonly helloTimeoutMs?: number;
  /**
   * High-water mark of a link: an Append carrying records is not sent while more than this
   * many bytes wait in the link's socket. Control frames are always sent. Default 8 MiB.
   */
  readonly maxBufferedBytes?: number;
  readonly maxFrameBytes?: number;
  /** Every open link is pinged this often. Default 250 ms. */
  readonly keepaliveIntervalMs?: number;
  /** A link that heard nothing for this long is terminated. Default 1,000 ms. */
  readonly keepaliveTimeoutMs?: number;
  /** A peer with no open link for this long (while reconnecting) is gone. Default 500 ms. */
  readonly lossGraceMs?: number;
}

export const DEFAULT_PEER_RECONNECT_DELAY_MS = 50;
export const DEFAULT_PEER_MAX_RECONNECT_DELAY_MS = 1_000;
export const DEFAULT_PEER_HELLO_TIMEOUT_MS = 2_000;
export const DEFAULT_PEER_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
export const DEFAULT_PEER_KEEPALIVE_INTERVAL_MS = 250;
export const DEFAULT_PEER_KEEPALIVE_TIMEOUT_MS = 1_000;
export const DEFAULT_PEER_LOSS_GRACE_MS = 500;
/** A link that stayed open this long is reopened at once when it closes. */
export const PEER_LINK_STABLE_MS = 100;
/** A link's back-pressure warning is logged at most this often (with the counts since). */
export const BACKPRESSURE_LOG_INTERVAL_MS = 5_000;

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

/** What this node knows of one peer instance's links. */
interface PeerLinks {
  identity: PeerIdentity;
  /** Links the peer opened to this node (after their hello). */
  readonly inbound: Set<WebSocket>;
  graceTimer: NodeJS.Timeout | undefined;
  /** The loss was reported; a link opening again clears it. */
  reported: boolean;
}

/** Records dropped for back-pressure on one link since its last warning. */
interface Held {
  frames: number;
  bytes: number;
  lastWarnMs: number;
}

/** ws `generateMask`: the all-zero masking key (see OutboundLink). */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/**
 * A frame for one or more peers, encoded on its first send only: the same Append to every
 * follower costs one encoding.
 */
export class OutgoingFrame {
  #bytes: Uint8Array | undefined;
  constructor(readonly body: Omit<InternalFrameInit, "from">) {}

  /** The encoded frame, as sent by `from`. */
  bytes(from: string): Uint8Array {
    return (this.#bytes ??= encodeInternalFrame(this.body, from));
  }
}

/** One outbound link that keeps reconnecting until closed. */
class OutboundLink {
  #ws: WebSocket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #closed = false;
  #openedAtMs: number | undefined;
  /** The instance at the other end, from its hello (kept across reconnections). */
  peerId: string | undefined;
  /** The latest attempt to (re)open this link failed: refused, or no handshake in time. */
  failed = false;
  readonly held: Held = { frames: 0, bytes: 0, lastWarnMs: Number.NEGATIVE_INFINITY };
  /**
   * Frames sent in one tick (an Append and the heartbeats and replies around it), written to
   * the socket together at its end (ws-outbox.ts; masked with the zero key, as zeroMask).
   */
  readonly #outbox = new WebSocketOutbox({
    masked: true,
    schedule: (flush) => process.nextTick(flush),
    socket: () => {
      const ws = this.#ws;
      return ws?.readyState === WebSocket.OPEN ? socketOfWebSocket(ws) : undefined;
    },
    // A failed write ends the socket, and ws reports the close.
    onWritten: () => undefined,
  });

  constructor(
    readonly endpoint: PeerEndpoint,
    private readonly net: PeerNetwork,
  ) {
    this.#connect();
  }

  get open(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  /** Bytes waiting in the socket (0 when not open). */
  get bufferedBytes(): number {
    const ws = this.#ws;
    return ws && ws.readyState === WebSocket.OPEN
      ? ws.bufferedAmount + this.#outbox.pendingBytes
      : 0;
  }

  send(bytes: Uint8Array): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    this.#outbox.push(bytes);
    return true;
  }

  /** Reconnects now if waiting out a backoff (the peer has just reached this node). */
  retryNow(): void {
    if (this.#closed || this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#connect();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws) {
      this.net.forget(ws);
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
      // A zero masking key: ws then neither masks what it sends nor the peer unmasks what it
      // receives (a pass over every byte each). Masking guards browsers' proxies against
      // forged requests; a node-to-node link carries no browser traffic.
      generateMask: zeroMask,
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
    this.#openedAtMs = undefined;
    ws.binaryType = "nodebuffer";
    let identified = false;
    ws.on("open", () => {
      this.#attempt = 0;
      this.#openedAtMs = performance.now();
      this.failed = false;
      this.net.watch(ws, key(this.endpoint));
      ws.send(this.net.helloBytes, { binary: true });
      this.net.options.logger.debug({ peer: key(this.endpoint) }, "peer link open");
    });
    // The only frame expected back is the acceptor's hello: who is at the other end.
    ws.on("message", (data: RawData, isBinary: boolean) => {
      this.net.heard(ws);
      if (identified || !isBinary) return;
      identified = true;
      const identity = this.net.helloIdentity(data);
      if (identity) this.net.outboundIdentified(this, identity);
    });
    ws.on("pong", () => this.net.heard(ws));
    ws.on("ping", () => this.net.heard(ws));
    ws.on("error", (err) => {
      this.net.options.logger.debug(
        { peer: key(this.endpoint), err: err.message },
        "peer link error",
      );
    });
    ws.on("close", () => {
      this.net.forget(ws);
      if (this.#ws !== ws || this.#closed) return;
      this.#ws = undefined;
      const openedAtMs = this.#openedAtMs;
      this.#openedAtMs = undefined;
      if (openedAtMs === undefined) this.failed = true;
      this.#attempt++;
      const base = this.net.options.reconnectDelayMs ?? DEFAULT_PEER_RECONNECT_DELAY_MS;
      const cap = this.net.options.maxReconnectDelayMs ?? DEFAULT_PEER_MAX_RECONNECT_DELAY_MS;
      // A link that had worked broke (a reset, the peer's process exited): try again at once,
      // so a peer that is still there is back within a round trip and one that is gone refuses
      // at once (see onPeerGone). A link that closes as soon as it opens backs off.
      const stable =
        openedAtMs !== undefined && performance.now() - openedAtMs >= PEER_LINK_STABLE_MS;
      const delayMs = stable ? 0 : Math.min(cap, base * 2 ** Math.min(this.#attempt - 1, 10));
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#connect();
      }, delayMs);
      if (this.peerId !== undefined) this.net.checkLoss(this.peerId);
    });
  }
}

export class PeerNetwork {
  readonly options: PeerNetworkOptions;
  readonly helloBytes: Uint8Array;
  readonly maxFrameBytes: number;
  readonly maxBufferedBytes: number;
  readonly helloTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveTimeoutMs: number;
  readonly lossGraceMs: number;
  readonly #links = new Map<string, OutboundLink>();
  /** Peer instances with a link, or a link that last reached them. */
  readonly #peers = new Map<string, PeerLinks>();
  /** Every open socket (either direction): when it last heard anything, and whom. */
  readonly #heard = new Map<WebSocket, { heardMs: number; peer: string }>();
  readonly #wss: WebSocketServer;
  readonly #keepalive: NodeJS.Timeout;
  #lastSweepMs = performance.now();
  #closed = false;

  constructor(options: PeerNetworkOptions) {
    this.options = options;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_PEER_MAX_BUFFERED_BYTES;
    this.helloTimeoutMs = options.helloTimeoutMs ?? DEFAULT_PEER_HELLO_TIMEOUT_MS;
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? DEFAULT_PEER_KEEPALIVE_INTERVAL_MS;
    this.keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? DEFAULT_PEER_KEEPALIVE_TIMEOUT_MS;
    this.lossGraceMs = options.lossGraceMs ?? DEFAULT_PEER_LOSS_GRACE_MS;
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
    this.#keepalive = setInterval(() => this.#sweep(), this.keepaliveIntervalMs);
    this.#keepalive.unref();
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
    if (link?.peerId !== undefined) this.#dropIfUnused(link.peerId);
  }

  isConnected(endpoint: PeerEndpoint): boolean {
    return this.#links.get(key(endpoint))?.open === true;
  }

  /** Bytes waiting in the outbound link to `endpoint` (0 when it is not open). */
  bufferedBytes(endpoint: PeerEndpoint): number {
    return this.#links.get(key(endpoint))?.bufferedBytes ?? 0;
  }

  /**
   * Whether an Append carrying records to `endpoint` would be sent now: the link is open and
   * holds no more than `maxBufferedBytes`. Control frames go out whenever the link is open.
   */
  writable(endpoint: PeerEndpoint): boolean {
    const link = this.#links.get(key(endpoint));
    return link?.open === true && link.bufferedBytes <= this.maxBufferedBytes;
  }

  /**
   * Sends one frame to a peer. False when it was not sent: the link is not open, or the frame
   * is an Append carrying records and the link is over its high-water mark (logged).
   */
  send(endpoint: PeerEndpoint, frame: OutgoingFrame | Omit<InternalFrameInit, "from">): boolean {
    const link = this.#links.get(key(endpoint));
    if (!link?.open) return false;
    const out = frame instanceof OutgoingFrame ? frame : new OutgoingFrame(frame);
    const records = out.body.appendEntries?.records;
    if (records && records.length > 0 && link.bufferedBytes > this.maxBufferedBytes) {
      this.#noteHeld(link, records.length);
      return false;
    }
    return link.send(out.bytes(this.options.self.instanceId));
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

  /** Closes every link, inbound and outbound. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#keepalive);
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
    for (const p of this.#peers.values()) clearTimeout(p.graceTimer);
    this.#peers.clear();
    this.#heard.clear();
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  // ---- for OutboundLink ------------------------------------------------------------------

  /** Starts keeping `ws` alive (pings, and the silence deadline). */
  watch(ws: WebSocket, peer: string): void {
    this.#heard.set(ws, { heardMs: performance.now(), peer });
  }

  heard(ws: WebSocket): void {
    const entry = this.#heard.get(ws);
    if (entry) entry.heardMs = performance.now();
  }

  forget(ws: WebSocket): void {
    this.#heard.delete(ws);
  }

  /** The identity in a hello frame of this cluster's size; undefined for anything else. */
  helloIdentity(data: RawData): PeerIdentity | undefined {
    try {
      const hello = decodeInternalFrame(messageBytes(data), this.maxFrameBytes).hello;
      if (!hello?.instanceId || hello.clusterSize !== this.options.self.clusterSize) return;
      return {
        instanceId: hello.instanceId,
        clusterSize: hello.clusterSize,
        readOnlyReplica: hello.readOnlyReplica === true,
      };
    } catch {
      return undefined;
    }
  }

  /** An outbound link learnt which instance it reaches. */
  outboundIdentified(link: OutboundLink, identity: PeerIdentity): void {
    if (this.#closed || this.#links.get(key(link.endpoint)) !== link) return;
    const before = link.peerId;
    link.peerId = identity.instanceId;
    this.#peer(identity);
    this.linkUp(identity.instanceId);
    // A new instance answers at that address: the one before it is gone (unless a link it
    // opened is still open).
    if (before !== undefined && before !== identity.instanceId) {
      this.checkLoss(before, true);
      this.#dropIfUnused(before);
    }
    this.options.onPeerReachable?.(link.endpoint, identity);
  }

  /** A link with `instanceId` is open: any loss in progress is over. */
  linkUp(instanceId: string): void {
    const p = this.#peers.get(instanceId);
    if (!p) return;
    clearTimeout(p.graceTimer);
    p.graceTimer = undefined;
    p.reported = false;
  }

  /** A link with `instanceId` closed or failed to reopen: is the peer gone? */
  checkLoss(instanceId: string, graceOver = false): void {
    const p = this.#peers.get(instanceId);
    if (this.#closed || !p || p.reported) return;
    for (const ws of p.inbound) if (ws.readyState === WebSocket.OPEN) return;
    let failed = false;
    for (const link of this.#links.values()) {
      if (link.peerId !== instanceId) continue;
      if (link.open) return;
      failed ||= link.failed;
    }
    if (!failed && !graceOver) {
      p.graceTimer ??= setTimeout(() => {
        p.graceTimer = undefined;
        this.checkLoss(instanceId, true);
      }, this.lossGraceMs);
      return;
    }
    clearTimeout(p.graceTimer);
    p.graceTimer = undefined;
    p.reported = true;
    this.options.logger.info(
      { peer: instanceId, reason: failed ? "reconnecting failed" : "no link came back" },
      "peer gone",
    );
    this.#dropIfUnused(instanceId);
    this.options.onPeerGone?.(p.identity);
  }

  // ---- internals -------------------------------------------------------------------------

  #peer(identity: PeerIdentity): PeerLinks {
    let p = this.#peers.get(identity.instanceId);
    if (!p) {
      p = { identity, inbound: new Set(), graceTimer: undefined, reported: false };
      this.#peers.set(identity.instanceId, p);
    }
    return p;
  }

  /** Forgets an instance nothing refers to any more (instances change on every restart). */
  #dropIfUnused(instanceId: string): void {
    const p = this.#peers.get(instanceId);
    if (!p || p.inbound.size > 0 || p.graceTimer !== undefined) return;
    for (const link of this.#links.values()) if (link.peerId === instanceId) return;
    this.#peers.delete(instanceId);
  }

  #noteHeld(link: OutboundLink, bytes: number): void {
    const held = link.held;
    held.frames++;
    held.bytes += bytes;
    const now = performance.now();
    if (now - held.lastWarnMs < BACKPRESSURE_LOG_INTERVAL_MS) return;
    this.options.logger.warn(
      {
        peer: key(link.endpoint),
        bufferedBytes: link.bufferedBytes,
        maxBufferedBytes: this.maxBufferedBytes,
        heldFrames: held.frames,
        heldBytes: held.bytes,
      },
      "peer link backed up: not sending replication data until it drains",
    );
    held.lastWarnMs = now;
    held.frames = 0;
    held.bytes = 0;
  }

  /** Pings every open link and terminates those silent past the deadline. */
  #sweep(): void {
    const now = performance.now();
    // After a stall of this process (a long GC pause, a blocked event loop) what the peers
    // sent meanwhile has not been read yet: judge silence on the next round, not this one.
    const judge = now - this.#lastSweepMs < 2 * this.keepaliveIntervalMs;
    this.#lastSweepMs = now;
    for (const [ws, entry] of this.#heard) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      const silentMs = now - entry.heardMs;
      if (judge && silentMs > this.keepaliveTimeoutMs) {
        this.options.logger.info(
          { peer: entry.peer, silentMs: Math.round(silentMs) },
          "peer link silent past its deadline; terminating it",
        );
        this.#heard.delete(ws);
        ws.terminate();
        continue;
      }
      ws.ping();
    }
  }

  #accept(ws: WebSocket, req: IncomingMessage): void {
    const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    const log = this.options.logger;
    let peer: PeerLinks | undefined;
    let refused = false;
    const helloTimer = setTimeout(() => {
      log.info({ remote }, "peer did not say hello in time; closing");
      ws.close(1008, "expected a PeerHello frame first");
    }, this.helloTimeoutMs);
    this.watch(ws, remote);
    // Who this node is, so the peer's outbound link knows whom it reaches.
    ws.send(this.helloBytes, { binary: true });
    ws.on("close", () => {
      clearTimeout(helloTimer);
      this.forget(ws);
      if (!peer || refused || this.#closed) return;
      peer.inbound.delete(ws);
      this.checkLoss(peer.identity.instanceId);
    });
    ws.on("error", (err) => log.debug({ remote, err: err.message }, "inbound peer link error"));
    ws.on("pong", () => this.heard(ws));
    ws.on("ping", () => this.heard(ws));
    ws.on("message", (data: RawData, isBinary: boolean) => {
      this.heard(ws);
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
        if (this.#closed) return;
        peer = this.#peer({
          instanceId: hello.instanceId,
          clusterSize,
          readOnlyReplica: hello.readOnlyReplica === true,
        });
        peer.inbound.add(ws);
        this.linkUp(hello.instanceId);
        // The peer reaches this node again (after a partition, say): so may this node's own
        // link to it, without waiting out its backoff. A new instance (a peer that restarted)
        // says nothing of the address it listens on, so every link in backoff tries again: one
        // of them reaches it, and those to peers still down are refused at once.
        const known = [...this.#links.values()].some((l) => l.peerId === hello.instanceId);
        for (const link of this.#links.values()) {
          if (!link.open && (!known || link.peerId === hello.instanceId)) link.retryNow();
        }
        return;
      }
      try {
        this.options.onFrame(peer.identity, frame);
      } catch (err) {
        log.warn({ remote, err: (err as Error).message }, "peer frame handler threw");
      }
    });
  }
}
