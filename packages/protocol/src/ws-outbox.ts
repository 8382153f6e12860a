/**
 * The binary WebSocket messages one connection sends, gathered and written to its socket as
 * one buffer of frames: one write of one buffer for many messages (the replies one group
 * commit releases, the requests of pipelined appends), where `ws.send` costs a header and a
 * payload write and its own per-message work for each (a microsecond or so of CPU per
 * message on a loaded node).
 *
 * Each message is one final binary frame (RFC 6455 5.2). A client's frames are masked with a
 * zero key (the mask guards proxies against scripts a browser runs; a Node.js peer over TCP
 * or TLS does not need it, and a zero key spares both ends a pass over every payload); a
 * server's are not masked. `ws` writes its own control frames (ping, pong, close) to the same
 * socket, only ever between whole messages: the owner flushes before it closes.
 */

/** The part of a Node.js socket the outbox writes to. */
export interface OutboxSocket {
  write(data: Uint8Array, callback: (err?: Error | null) => void): boolean;
}

/** The socket under a `ws` WebSocket (its `_socket`), or undefined when it has none (closed). */
export function socketOfWebSocket(ws: object): OutboxSocket | undefined {
  return (ws as { _socket?: OutboxSocket | null })._socket ?? undefined;
}

export interface WebSocketOutboxOptions {
  /** True for a client's frames (masked, zero key), false for a server's. */
  readonly masked: boolean;
  /** Runs the flush later (`process.nextTick`, `setImmediate`): what it gathers until then. */
  readonly schedule: (flush: () => void) => void;
  /** The socket to write to, or undefined when the connection can no longer take messages. */
  readonly socket: () => OutboxSocket | undefined;
  /** Called once each buffer is written (with the error if the write failed). */
  readonly onWritten: (err?: Error | null) => void;
}

export class WebSocketOutbox {
  readonly #options: WebSocketOutboxOptions;
  #payloads: Uint8Array[] = [];
  /** Their bytes on the wire, headers included. */
  #bytes = 0;
  readonly #flush = (): void => this.flush();

  constructor(options: WebSocketOutboxOptions) {
    this.#options = options;
  }

  /** Bytes gathered and not yet handed to the socket. */
  get pendingBytes(): number {
    return this.#bytes;
  }

  /** Queues one binary message; the first of a batch schedules the flush. */
  push(payload: Uint8Array): void {
    if (this.#payloads.length === 0) this.#options.schedule(this.#flush);
    this.#payloads.push(payload);
    this.#bytes += frameHeaderBytes(payload.byteLength, this.#options.masked) + payload.byteLength;
  }

  /** Writes what is gathered now, as one buffer (nothing when the socket is gone). */
  flush(): void {
    const payloads = this.#payloads;
    if (payloads.length === 0) return;
    const total = this.#bytes;
    this.#payloads = [];
    this.#bytes = 0;
    const socket = this.#options.socket();
    if (socket === undefined) return;
    const masked = this.#options.masked;
    const out = Buffer.allocUnsafe(total);
    let pos = 0;
    for (const payload of payloads) {
      pos = writeFrameHeader(out, pos, payload.byteLength, masked);
      out.set(payload, pos);
      pos += payload.byteLength;
    }
    socket.write(out, this.#options.onWritten);
  }
}

/** Bytes of the header of a final binary frame of `length` bytes (mask key included if masked). */
export function frameHeaderBytes(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 65_536 ? 4 : 10) + (masked ? 4 : 0);
}

/** Writes the header of a final binary frame of `length` bytes at `pos`; the position after it. */
export function writeFrameHeader(
  buf: Buffer,
  pos: number,
  length: number,
  masked: boolean,
): number {
  const maskBit = masked ? 0x80 : 0;
  buf[pos++] = 0x82; // FIN, binary
  if (length < 126) {
    buf[pos++] = maskBit | length;
  } else if (length < 65_536) {
    buf[pos++] = maskBit | 126;
    buf.writeUInt16BE(length, pos);
    pos += 2;
  } else {
    buf[pos++] = maskBit | 127;
    // A frame's length is below 2^53; the high word carries what is above 2^32.
    buf.writeUInt32BE(Math.floor(length / 2 ** 32), pos);
    buf.writeUInt32BE(length >>> 0, pos + 4);
    pos += 8;
  }
  if (!masked) return pos;
  buf.writeUInt32BE(0, pos); // the masking key: zero, the payload goes as it is
  return pos + 4;
}
