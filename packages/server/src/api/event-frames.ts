/**
 * Protobuf encoding of the frames that carry events: read replies and pushed subscription
 * events. protobufjs allocates several objects per field it writes, and these frames carry
 * thousands of events each, so the events are sized first and written into one buffer.
 * The bytes are the ones chorus.Frame.encode gives for the same frame (event-frames.unit.test.ts):
 * the correlation id (field 1), then the body (a length-delimited field).
 */
import { chorus, encodeFrame } from "@chorus/protocol";
import type { StoredEvent } from "../streams/types.js";

/** The frame bodies that carry events; all hold them as `repeated ResolvedEvent events = 1`. */
export type EventsBody =
  | { readResult: Omit<chorus.IReadResponse, "events"> }
  | { subscriptionEvents: Omit<chorus.ISubscriptionEvents, "events"> }
  | { persistentEvents: Omit<chorus.IPersistentEvents, "events"> };

// Field keys: (field number << 3) | wire type (0 varint, 2 length-delimited).
const FRAME_CORRELATION_ID = (1 << 3) | 0;
const FRAME_READ_RESULT = (31 << 3) | 2;
const FRAME_SUBSCRIPTION_EVENTS = (34 << 3) | 2;
const FRAME_PERSISTENT_EVENTS = (54 << 3) | 2;
const EVENTS = (1 << 3) | 2; // ReadResponse.events, SubscriptionEvents.events, PersistentEvents.events
const RESOLVED_EVENT = (1 << 3) | 2;
const STREAM_ID = (1 << 3) | 2;
const REVISION = (2 << 3) | 0;
const POSITION = (3 << 3) | 0;
const ID = (4 << 3) | 2;
const TYPE = (5 << 3) | 2;
const IS_JSON = (6 << 3) | 0;
const DATA = (7 << 3) | 2;
const METADATA = (8 << 3) | 2;
const CREATED_MS = (9 << 3) | 0;

function varintBytes(value: number): number {
  let n = 1;
  for (let v = value; v >= 128; v = Math.floor(v / 128)) n++;
  return n;
}

function writeVarint(buf: Buffer, at: number, value: number): number {
  let o = at;
  let v = value;
  while (v >= 128) {
    buf[o++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  buf[o++] = v;
  return o;
}

function isWireUint(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** Encoded size of the RecordedEvent fields of `e` (the strings' UTF-8 sizes are given). */
function recordedEventBytes(
  e: StoredEvent,
  streamIdBytes: number,
  typeBytes: number,
  idBytes: number,
): number {
  return (
    1 +
    varintBytes(streamIdBytes) +
    streamIdBytes +
    1 +
    varintBytes(e.revision) +
    1 +
    varintBytes(e.position) +
    1 +
    varintBytes(idBytes) +
    idBytes +
    1 +
    varintBytes(typeBytes) +
    typeBytes +
    2 +
    1 +
    varintBytes(e.data.byteLength) +
    e.data.byteLength +
    1 +
    varintBytes(e.metadata.byteLength) +
    e.metadata.byteLength +
    1 +
    varintBytes(e.createdMs)
  );
}

/** Short names are checked in JS: cheaper than a call into native code for each. */
const SHORT_TEXT = 64;

/** UTF-8 size of `text`. It equals text.length exactly when the text is ASCII. */
function utf8Bytes(text: string): number {
  if (text.length <= SHORT_TEXT) {
    let i = 0;
    while (i < text.length && text.charCodeAt(i) < 0x80) i++;
    if (i === text.length) return i;
  }
  return Buffer.byteLength(text, "utf8");
}

/** Writes a string field; `bytes` is utf8Bytes(text). */
function writeString(buf: Buffer, at: number, key: number, text: string, bytes: number): number {
  buf[at] = key;
  const o = writeVarint(buf, at + 1, bytes);
  if (bytes === text.length && bytes <= SHORT_TEXT) {
    for (let i = 0; i < bytes; i++) buf[o + i] = text.charCodeAt(i);
  } else {
    buf.write(text, o, bytes, "utf8");
  }
  return o + bytes;
}

function writeBytes(buf: Buffer, at: number, key: number, bytes: Uint8Array): number {
  buf[at] = key;
  const o = writeVarint(buf, at + 1, bytes.byteLength);
  buf.set(bytes, o);
  return o + bytes.byteLength;
}

function writeUint(buf: Buffer, at: number, key: number, value: number): number {
  buf[at] = key;
  return writeVarint(buf, at + 1, value);
}

/** Room left before an encoded body for the frame header (key, varint id, body key, length). */
const HEADER_ROOM = 1 + 10 + 2 + 5;

/**
 * A Frame whose body carries events, encoded before the correlation id of the request it
 * answers is known (so a page read ahead is also encoded ahead). Room is left before the
 * body for the frame header.
 */
export class EventsFrame {
  private constructor(
    private readonly buf: Buffer,
    private readonly bodyKey: number,
  ) {}

  /** Encodes `events` (as ResolvedEvents without links) and the other fields of `body`. */
  static encode(body: EventsBody, events: readonly StoredEvent[]): EventsFrame {
    const bodyKey =
      "readResult" in body
        ? FRAME_READ_RESULT
        : "subscriptionEvents" in body
          ? FRAME_SUBSCRIPTION_EVENTS
          : FRAME_PERSISTENT_EVENTS;
    return new EventsFrame(encodeBody(body, events), bodyKey);
  }

  /**
   * The frame bytes answering `correlationId`. The header is written into this frame's buffer:
   * call once per frame.
   */
  bytes(correlationId: number): Uint8Array {
    const bodyBytes = this.buf.length - HEADER_ROOM;
    const header =
      1 + varintBytes(correlationId) + varintBytes(this.bodyKey) + varintBytes(bodyBytes);
    const at = HEADER_ROOM - header;
    let o = writeUint(this.buf, at, FRAME_CORRELATION_ID, correlationId);
    o = writeVarint(this.buf, o, this.bodyKey);
    writeVarint(this.buf, o, bodyBytes);
    return this.buf.subarray(at);
  }
}

/** Encodes a Frame whose body carries `events` (as ResolvedEvents without links). */
export function encodeEventsFrame(
  correlationId: number,
  body: EventsBody,
  events: readonly StoredEvent[],
): Uint8Array {
  if (!isWireUint(correlationId)) {
    // An id the varint writer does not handle: let protobufjs encode it.
    return encodeFrame({ correlationId, ...eventsFrameBody(body, events) });
  }
  return EventsFrame.encode(body, events).bytes(correlationId);
}

/** The body of a frame carrying `events`, as objects (for encoding, or for a client in this process). */
export function eventsFrameBody(
  body: EventsBody,
  events: readonly StoredEvent[],
): Pick<chorus.IFrame, "readResult" | "subscriptionEvents" | "persistentEvents"> {
  // A StoredEvent has exactly the fields of a wire RecordedEvent.
  const wire = events.map((e): chorus.IResolvedEvent => ({ event: e }));
  if ("readResult" in body) return { readResult: { ...body.readResult, events: wire } };
  if ("subscriptionEvents" in body)
    return { subscriptionEvents: { ...body.subscriptionEvents, events: wire } };
  return { persistentEvents: { ...body.persistentEvents, events: wire } };
}

/** The body message without its events, as protobufjs encodes it. */
function encodeRest(body: EventsBody): Uint8Array {
  if ("readResult" in body) return chorus.ReadResponse.encode(body.readResult).finish();
  if ("subscriptionEvents" in body)
    return chorus.SubscriptionEvents.encode(body.subscriptionEvents).finish();
  return chorus.PersistentEvents.encode(body.persistentEvents).finish();
}

/** The body message (ReadResponse or SubscriptionEvents), after HEADER_ROOM bytes. */
function encodeBody(body: EventsBody, events: readonly StoredEvent[]): Buffer {
  const numbersFit = events.every(
    (e) => isWireUint(e.revision) && isWireUint(e.position) && isWireUint(e.createdMs),
  );
  if (!numbersFit) {
    // Values the varint writer below does not handle: let protobufjs encode them.
    const wire = eventsFrameBody(body, events);
    const bytes = wire.readResult
      ? chorus.ReadResponse.encode(wire.readResult).finish()
      : wire.subscriptionEvents
        ? chorus.SubscriptionEvents.encode(wire.subscriptionEvents).finish()
        : chorus.PersistentEvents.encode(wire.persistentEvents ?? {}).finish();
    const buf = Buffer.allocUnsafe(HEADER_ROOM + bytes.length);
    buf.set(bytes, HEADER_ROOM);
    return buf;
  }
  // The fields after `events` (field 1), which protobufjs writes after it too.
  const rest = encodeRest(body);

  // Pass 1: sizes. Three string sizes and one message size per event.
  const sizes = new Array<number>(events.length * 4);
  let bodyBytes = rest.length;
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as StoredEvent;
    const streamIdBytes = utf8Bytes(e.streamId);
    const typeBytes = utf8Bytes(e.type);
    const idBytes = utf8Bytes(e.id);
    const recorded = recordedEventBytes(e, streamIdBytes, typeBytes, idBytes);
    const resolved = 1 + varintBytes(recorded) + recorded;
    sizes[4 * i] = streamIdBytes;
    sizes[4 * i + 1] = typeBytes;
    sizes[4 * i + 2] = idBytes;
    sizes[4 * i + 3] = recorded;
    bodyBytes += 1 + varintBytes(resolved) + resolved;
  }

  // Pass 2: bytes.
  const buf = Buffer.allocUnsafe(HEADER_ROOM + bodyBytes);
  let o = HEADER_ROOM;
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as StoredEvent;
    const recorded = sizes[4 * i + 3] as number;
    buf[o++] = EVENTS;
    o = writeVarint(buf, o, 1 + varintBytes(recorded) + recorded);
    buf[o++] = RESOLVED_EVENT;
    o = writeVarint(buf, o, recorded);
    o = writeString(buf, o, STREAM_ID, e.streamId, sizes[4 * i] as number);
    o = writeUint(buf, o, REVISION, e.revision);
    o = writeUint(buf, o, POSITION, e.position);
    o = writeString(buf, o, ID, e.id, sizes[4 * i + 2] as number);
    o = writeString(buf, o, TYPE, e.type, sizes[4 * i + 1] as number);
    o = writeUint(buf, o, IS_JSON, e.isJson ? 1 : 0);
    o = writeBytes(buf, o, DATA, e.data);
    o = writeBytes(buf, o, METADATA, e.metadata);
    o = writeUint(buf, o, CREATED_MS, e.createdMs);
  }
  buf.set(rest, o);
  o += rest.length;
  if (o !== buf.length) throw new Error(`event frame encoding wrote ${o} bytes of ${buf.length}`);
  return buf;
}
