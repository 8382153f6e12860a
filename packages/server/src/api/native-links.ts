/**
 * What carries one native-protocol connection's frames: a WebSocket, or a client in the same
 * process. NativeConnection (native.ts) speaks the protocol over either; a link only moves
 * frames, reports flow control and ends.
 */
import {
  encodeAppendSuccess,
  chorus,
  decodeFrame,
  encodeFrame,
  FrameError,
  messageBytes,
  frameBodyOf,
  scanAppendFrame,
  type AppendFrameScan,
  type Frame,
  type FrameBodyKind,
  type FrameInit,
  type InProcessClientEnd,
  type InProcessServerEnd,
  WebSocketOutbox,
  socketOfWebSocket,
} from "@chorus/protocol";
import { WebSocket, type RawData } from "ws";
import type { StoredEvent } from "../streams/types.js";
import { handOver } from "../fair-turns.js";
import {
  EventsFrame,
  encodeEventsFrame,
  eventsFrameBody,
  type EventsBody,
} from "./event-frames.js";

/** What a link hands to the connection it carries. */
export interface LinkHandler {
  /**
   * A request frame, the name of its body and its correlation id (an in-process client's
   * frame does not carry the id itself).
   */
  receive(frame: Frame, body: FrameBodyKind, correlationId: number): void;
  /**
   * A large append frame, read without decoding its events (`LARGE_APPEND_SCAN_BYTES`). True
   * when the connection has answered it from the scan (it refused it as too large); false to
   * have it decoded and handed to `receive` as usual.
   */
  largeAppend?(scan: AppendFrameScan): boolean;
  /** A well-formed frame of a kind this server does not know (answered, the link stays). */
  unknownBody(correlationId: number): void;
  /** The peer broke the protocol: the connection ends with this close code. */
  violation(closeCode: number, reason: string, metricReason?: string): void;
  /** Output drained below the high-water mark. */
  writable(): void;
}

/** A frame carrying events, made before the correlation id it answers is known. */
export interface PreparedFrame {
  /** Sends it as the reply to `correlationId`. Call once. */
  send(correlationId: number): void;
}

export interface NativeLink {
  readonly isOpen: boolean;
  /** Bytes queued towards the client and not yet taken by it. */
  readonly bufferedAmount: number;
  /** Where "remote" log fields and consumer connections point. */
  readonly remote: string;
  attach(handler: LinkHandler): void;
  send(frame: FrameInit): void;
  /** Answers an append with success (the frame `{ correlationId, appendResult: { success } }`). */
  sendAppendSuccess(correlationId: number, nextExpectedVersion: number, position: number): void;
  /** Sends a frame carrying events. */
  sendEvents(correlationId: number, body: EventsBody, events: readonly StoredEvent[]): void;
  /** Prepares a frame carrying events (a page read ahead). */
  prepareEvents(body: EventsBody, events: readonly StoredEvent[]): PreparedFrame;
  /** Stops (true) or resumes (false) taking requests. */
  pauseInput(paused: boolean): void;
  /** Ends the connection at once with a close code and reason. */
  close(code: number, reason: string): void;
  /** Called on every heartbeat tick: a link that missed its heartbeat ends. */
  heartbeat(onDead: () => void): void;
  /** Ends the connection with 1001; resolves once it is gone, or after timeoutMs. */
  closeGoingAway(timeoutMs: number): Promise<void>;
}

/** Close reasons are limited to 123 bytes of UTF-8. */
export function closeReason(text: string): string {
  let out = text;
  while (Buffer.byteLength(out, "utf8") > 123) out = out.slice(0, -1);
  return out;
}

/**
 * Frames at least this large are scanned before they are decoded, so that an append too large
 * to store is refused without decoding its events (a fifth of a second of the event loop for
 * 100,000 of them: long enough, on a loaded machine, to cost a leader its followers'
 * heartbeats). Scanning costs a few percent of decoding.
 */
export const LARGE_APPEND_SCAN_BYTES = 64 * 1024;

const NO_HANDLER: LinkHandler = {
  receive: () => undefined,
  unknownBody: () => undefined,
  violation: () => undefined,
  writable: () => undefined,
};

/** A client connected over a WebSocket: one protobuf Frame per binary message. */
export class WebSocketLink implements NativeLink {
  readonly remote: string;
  readonly #ws: WebSocket;
  readonly #maxFrameBytes: number;
  readonly #highWaterMarkBytes: number;
  #handler: LinkHandler = NO_HANDLER;
  #alive = true;
  /**
   * The frames sent in this tick, written together at its end: the replies one group commit
   * releases leave in one write of one buffer (ws-outbox.ts).
   */
  readonly #outbox: WebSocketOutbox;
  /** Told what the connection holds unsent after each send and each write (the send budget). */
  #onBuffered: (bytes: number) => void = () => undefined;

  constructor(ws: WebSocket, remote: string, maxFrameBytes: number, highWaterMarkBytes: number) {
    this.#ws = ws;
    this.remote = remote;
    this.#maxFrameBytes = maxFrameBytes;
    this.#highWaterMarkBytes = highWaterMarkBytes;
    this.#outbox = new WebSocketOutbox({
      masked: false,
      schedule: (flush) => process.nextTick(flush),
      socket: () => (this.isOpen ? socketOfWebSocket(ws) : undefined),
      onWritten: (err) => {
        // A failed write ends the socket, and ws reports the close.
        if (err) return;
        const buffered = this.bufferedAmount;
        this.#onBuffered(buffered);
        if (buffered <= this.#highWaterMarkBytes) this.#handler.writable();
      },
    });
    ws.on("pong", () => {
      this.#alive = true;
    });
    ws.on("message", (data: RawData, isBinary: boolean) => this.#onMessage(data, isBinary));
  }

  attach(handler: LinkHandler): void {
    this.#handler = handler;
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount + this.#outbox.pendingBytes;
  }

  send(frame: FrameInit): void {
    if (!this.isOpen) return;
    this.#sendBytes(encodeFrame(frame));
  }

  sendAppendSuccess(correlationId: number, nextExpectedVersion: number, position: number): void {
    if (!this.isOpen) return;
    this.#sendBytes(encodeAppendSuccess(correlationId, nextExpectedVersion, position));
  }

  sendEvents(correlationId: number, body: EventsBody, events: readonly StoredEvent[]): void {
    if (!this.isOpen) return;
    this.#sendBytes(encodeEventsFrame(correlationId, body, events));
  }

  prepareEvents(body: EventsBody, events: readonly StoredEvent[]): PreparedFrame {
    // Encoded now, so a page read ahead is also encoded ahead, while the previous one travels.
    const frame = EventsFrame.encode(body, events);
    return {
      send: (correlationId) => {
        if (this.isOpen) this.#sendBytes(frame.bytes(correlationId));
      },
    };
  }

  #sendBytes(bytes: Uint8Array): void {
    this.#outbox.push(bytes);
    // The send budget hears of a connection once it backs up (a reader keeps up below its
    // high-water mark, and each reply sent need not cost the budget's bookkeeping); every
    // write it completes tells it again.
    const buffered = this.bufferedAmount;
    if (buffered > this.#highWaterMarkBytes) this.#onBuffered(buffered);
  }

  /** `listener` is told the bytes the connection holds unsent, as they change. */
  onBuffered(listener: (bytes: number) => void): void {
    this.#onBuffered = listener;
  }

  pauseInput(paused: boolean): void {
    if (!this.isOpen) return;
    if (paused) this.#ws.pause();
    else this.#ws.resume();
  }

  close(code: number, reason: string): void {
    if (!this.isOpen) return;
    // What was sent before the close goes out before the close frame.
    this.#outbox.flush();
    this.#ws.close(code, closeReason(reason));
  }

  heartbeat(onDead: () => void): void {
    if (!this.isOpen) return;
    if (!this.#alive) {
      onDead();
      this.#ws.terminate();
      return;
    }
    this.#alive = false;
    this.#ws.ping();
  }

  async closeGoingAway(timeoutMs: number): Promise<void> {
    if (this.#ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#ws.terminate();
        resolve();
      }, timeoutMs);
      timer.unref();
      this.#ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      if (this.#ws.readyState === WebSocket.OPEN) {
        this.#outbox.flush();
        this.#ws.close(1001, "the node is shutting down");
      }
    });
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    this.#alive = true;
    if (!isBinary) {
      this.#handler.violation(1003, "text frames are not supported: send binary protobuf Frames");
      return;
    }
    const bytes = messageBytes(data);
    if (
      bytes.byteLength >= LARGE_APPEND_SCAN_BYTES &&
      bytes.byteLength <= this.#maxFrameBytes &&
      this.#handler.largeAppend !== undefined
    ) {
      const scan = scanAppendFrame(bytes);
      if (scan !== undefined && this.#handler.largeAppend(scan)) return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, this.#maxFrameBytes);
    } catch (err) {
      if (err instanceof FrameError && err.code === "FRAME_UNKNOWN_BODY") {
        // Well-formed but of a kind this server does not know: answer, keep the connection.
        let id = 0;
        try {
          id = Number(chorus.Frame.decode(bytes).correlationId ?? 0);
        } catch {
          /* decodeFrame decoded it already */
        }
        this.#handler.unknownBody(id);
        return;
      }
      if (err instanceof FrameError && err.code === "FRAME_TOO_LARGE") {
        this.#handler.violation(1009, err.message);
        return;
      }
      this.#handler.violation(
        1002,
        `protocol error: ${err instanceof Error ? err.message : String(err)}`,
      );
      return;
    }
    this.#handler.receive(frame, frame.body as FrameBodyKind, Number(frame.correlationId ?? 0));
  }
}

/**
 * A client in this process: frames cross as objects, each direction in order and later
 * (never inside the call that sent it): in a microtask, or on the event loop's next turn once
 * in-process work has run for a while without one (fair-turns.ts). Nothing is buffered
 * towards the client (it takes every frame as it comes and bounds subscriptions with credit),
 * so the output is always writable; requests that arrive while input is paused wait in order.
 */
export class InProcessLink implements NativeLink {
  readonly remote: string;
  readonly #client: InProcessClientEnd;
  #handler: LinkHandler = NO_HANDLER;
  #open = true;
  #paused = false;
  /**
   * Requests not handed to the connection yet (paused, or waiting for their microtask): their
   * frames, and their correlation ids at the same index.
   */
  #input: FrameInit[] = [];
  #inputIds: number[] = [];
  #inputScheduled = false;
  /** Frames not handed to the client yet. */
  #output: Frame[] = [];
  #outputScheduled = false;
  /** Set once the connection ended, so it is told once, after the frames before it. */
  #ended: { code: number; reason: string; notified: boolean } | undefined;
  readonly #onEnd: () => void;

  constructor(client: InProcessClientEnd, remote: string, onEnd: () => void) {
    this.#client = client;
    this.remote = remote;
    this.#onEnd = onEnd;
  }

  attach(handler: LinkHandler): void {
    this.#handler = handler;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get bufferedAmount(): number {
    return 0;
  }

  // ------------------------------------------------------------ client -> node

  /** A request from the client (its own object, which it does not touch after sending). */
  sendFromClient(correlationId: number, frame: FrameInit): void {
    if (!this.#open) return;
    this.#input.push(frame);
    this.#inputIds.push(correlationId);
    this.#scheduleInput();
  }

  #scheduleInput(): void {
    if (this.#inputScheduled || this.#paused) return;
    this.#inputScheduled = true;
    handOver(() => {
      this.#inputScheduled = false;
      while (this.#open && !this.#paused && this.#input.length > 0) {
        const frame = this.#input.shift() as FrameInit;
        const correlationId = this.#inputIds.shift() as number;
        const body = frameBodyOf(frame);
        if (body === undefined) {
          this.#handler.unknownBody(correlationId);
          continue;
        }
        // The client's own object: a decoded frame in all but `body` and `correlationId`,
        // which come alongside.
        this.#handler.receive(frame as Frame, body, correlationId);
      }
    });
  }

  pauseInput(paused: boolean): void {
    this.#paused = paused;
    if (!paused && this.#input.length > 0) this.#scheduleInput();
  }

  // ------------------------------------------------------------ node -> client

  send(frame: FrameInit): void {
    if (!this.#open) return;
    this.#deliver(frame as Frame);
  }

  sendAppendSuccess(correlationId: number, nextExpectedVersion: number, position: number): void {
    this.send({ correlationId, appendResult: { success: { nextExpectedVersion, position } } });
  }

  sendEvents(correlationId: number, body: EventsBody, events: readonly StoredEvent[]): void {
    if (!this.#open) return;
    this.#deliver({ correlationId, ...eventsFrameBody(body, events) } as Frame);
  }

  prepareEvents(body: EventsBody, events: readonly StoredEvent[]): PreparedFrame {
    return { send: (correlationId) => this.sendEvents(correlationId, body, events) };
  }

  #deliver(frame: Frame): void {
    this.#output.push(frame);
    if (this.#outputScheduled) return;
    this.#outputScheduled = true;
    handOver(() => this.#flushOutput());
  }

  #flushOutput(): void {
    this.#outputScheduled = false;
    const frames = this.#output;
    this.#output = [];
    for (const frame of frames) this.#client.receive(frame);
    const ended = this.#ended;
    if (ended && !ended.notified) {
      ended.notified = true;
      this.#client.closed(ended.code, ended.reason);
    }
  }

  // ------------------------------------------------------------ ending

  /** InProcessServerEnd.close: the client went away. */
  closeFromClient(): void {
    if (!this.#open) return;
    this.#end(1000, "closed by the client", false);
  }

  close(code: number, reason: string): void {
    this.#end(code, reason, true);
  }

  heartbeat(): void {
    // Nothing can get lost between two ends of one process.
  }

  closeGoingAway(): Promise<void> {
    this.#end(1001, "the node is shutting down", true);
    return Promise.resolve();
  }

  #end(code: number, reason: string, tellClient: boolean): void {
    if (!this.#open) return;
    this.#open = false;
    this.#input = [];
    this.#inputIds = [];
    this.#ended = { code, reason: closeReason(reason), notified: !tellClient };
    if (tellClient && !this.#outputScheduled) {
      this.#outputScheduled = true;
      handOver(() => this.#flushOutput());
    }
    this.#onEnd();
  }

  /** The end the client holds. */
  serverEnd(): InProcessServerEnd {
    return {
      send: (correlationId, frame) => this.sendFromClient(correlationId, frame),
      close: () => this.closeFromClient(),
    };
  }
}
