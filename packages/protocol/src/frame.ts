import protobuf from "protobufjs/minimal.js";
import { frameBodies, internalFrameBodies, type BodyEncoder } from "./gen/bodies.js";
import { chorus } from "./gen/chorus.js";

/** Default upper bound of one encoded frame: 16 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

/**
 * The header of a node's WebSocket upgrade answer that gives its frame limit
 * (`--max-frame-bytes`, decimal): a client refuses a larger request before sending it, as
 * the node would close the connection on it.
 */
export const MAX_FRAME_BYTES_HEADER = "Chorus-Max-Frame-Bytes";

/**
 * Headers of a partitioned node's WebSocket upgrade answer: its own replication group
 * (`--partition`) and every group's name (`--partitions`, comma-separated). A node of no
 * partitioned deployment sends neither. A partitioned client refuses a node that does not
 * serve the group its settings list it under.
 */
export const NODE_PARTITION_HEADER = "Chorus-Node-Partition";
export const NODE_PARTITIONS_HEADER = "Chorus-Node-Partitions";

export type Frame = chorus.Frame;
export type FrameInit = chorus.IFrame;
/** The name of the `body` member a frame carries, e.g. "append". */
export type FrameBodyKind = NonNullable<chorus.Frame["body"]>;

/** A frame that cannot be decoded. `reason` is safe to send back as a close reason. */
export class FrameError extends Error {
  override readonly name = "FrameError";
  readonly code: "FRAME_TOO_LARGE" | "FRAME_MALFORMED" | "FRAME_EMPTY" | "FRAME_UNKNOWN_BODY";
  constructor(code: FrameError["code"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * The bytes of one WebSocket message as a WebSocket library hands them over: one buffer,
 * an ArrayBuffer, or a list of fragments.
 */
export function messageBytes(data: Uint8Array | ArrayBuffer | readonly Uint8Array[]): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return Buffer.concat(data);
}

/**
 * Encodes one frame to bytes (the same bytes as `chorus.Frame.encode`). `correlationId`,
 * when given, stands for the frame's own (a transport stamps its channel's id without
 * copying the frame).
 */
export function encodeFrame(frame: FrameInit, correlationId?: number): Uint8Array {
  const id = correlationId ?? frame.correlationId;
  if (frame.append != null && frame.credentials == null && onlyBodyIsAppend(frame)) {
    const bytes = encodeAppendFrame(id, frame.append);
    if (bytes !== undefined) return bytes;
  }
  const w = protobuf.Writer.create();
  if (id != null) writeUint64(w.uint32(8), id);
  if (frame.credentials != null) {
    chorus.Credentials.encode(frame.credentials, w.uint32(18).fork()).ldelim();
  }
  writeBodies(w, frame, frameBodies);
  return w.finish();
}

// ------------------------------------------------------------------ appends, by hand
//
// An append is the frame a client sends most, and protobufjs's Writer queues an object per
// field and per nested message before it allocates the buffer and writes them. This encoder
// measures the frame first, then writes it into one buffer: the same bytes (the checks
// below mirror the generated encoders: a field is written when it is not null and is the
// object's own, and strings are measured and written as protobufjs's BufferWriter does).
// Anything unusual (a number where a string belongs, base64 text for bytes, a 64-bit id as
// a Long) goes through the generic path instead.

const utf8 = protobuf.util.utf8;

/** Scratch lengths of the frame being encoded (encoding is synchronous: one is enough). */
const scratch: number[] = [];
/** Which optional fields of an event are written (scratch, per event). */
const IS_JSON = 1;
const DATA = 2;
const METADATA = 4;

function present(m: object, key: string): boolean {
  return (m as Record<string, unknown>)[key] != null && Object.hasOwn(m, key);
}

/** True when `append` is the frame's only body (a frame has one; anything else is encoded the generic way). */
function onlyBodyIsAppend(frame: FrameInit): boolean {
  for (const key in frame) {
    if (
      key !== "append" &&
      frameBodies[key] !== undefined &&
      (frame as Record<string, unknown>)[key] != null
    )
      return false;
  }
  return true;
}

/** Bytes of a varint of a non-negative safe integer. */
function varintBytes(value: number): number {
  let n = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function writeVarint(buf: Uint8Array, pos: number, value: number): number {
  while (value >= 128) {
    // `& 127` is exact beyond 2^32 too: ToInt32 keeps the value modulo 2^32.
    buf[pos++] = (value & 127) | 128;
    value = Math.floor(value / 128);
  }
  buf[pos++] = value;
  return pos;
}

function isWireInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** A string field's length: key, varint length and UTF-8 bytes; -1 when not a string. */
function stringField(value: unknown, scratchAt: number): number {
  if (typeof value !== "string") return -1;
  // Short strings are measured here (protobufjs's count, the same as Buffer.byteLength's,
  // lone surrogates included), sparing a call into the runtime.
  const len = value.length < 40 ? utf8.length(value) : Buffer.byteLength(value);
  scratch[scratchAt] = len;
  return 1 + varintBytes(len) + len;
}

function writeString(buf: Buffer, pos: number, key: number, value: string, len: number): number {
  buf[pos++] = key;
  pos = writeVarint(buf, pos, len);
  if (len === 0) return pos;
  // As protobufjs writes strings: its own writer below 40 characters, Buffer's above;
  // except that ASCII (as many bytes as characters) is copied by a plain loop, the
  // cheapest way for ids, types and stream names.
  if (len === value.length && len < 40) {
    for (let i = 0; i < len; i++) buf[pos + i] = value.charCodeAt(i);
  } else if (value.length < 40) utf8.write(value, buf, pos);
  else buf.write(value, pos);
  return pos + len;
}

function bytesField(value: unknown): number {
  if (typeof value === "string" || value == null) return -1;
  const len = (value as ArrayLike<number>).length >>> 0;
  return 1 + varintBytes(len) + len;
}

function writeBytes(buf: Buffer, pos: number, key: number, value: ArrayLike<number>): number {
  const len = value.length >>> 0;
  buf[pos++] = key;
  pos = writeVarint(buf, pos, len);
  if (len) buf.set(value, pos);
  return pos + len;
}

/** The whole frame of an append request, or undefined to take the generic path. */
function encodeAppendFrame(
  id: FrameInit["correlationId"],
  a: chorus.IAppendRequest,
): Uint8Array | undefined {
  if (id != null && !isWireInteger(id)) return undefined;
  scratch.length = 0;
  // Pass 1: measure. scratch: [streamId bytes, expected bytes, then per event: its bytes,
  // id bytes, type bytes, flags]
  let body = 0;
  scratch.push(-1, -1);
  if (present(a, "streamId")) {
    const n = stringField(a.streamId, 0);
    if (n < 0) return undefined;
    body += n;
  }
  let kind = -1;
  let revision = -1;
  const expected = present(a, "expected") ? a.expected! : undefined;
  if (expected !== undefined) {
    let n = 0;
    if (present(expected, "kind")) {
      kind = (expected.kind as number) | 0;
      if (kind < 0) return undefined;
      n += 1 + varintBytes(kind);
    }
    if (present(expected, "revision")) {
      const r = expected.revision;
      if (!isWireInteger(r)) return undefined;
      revision = r;
      n += 1 + varintBytes(revision);
    }
    scratch[1] = n;
    body += 1 + varintBytes(n) + n;
  }
  const events = a.events;
  const eventCount = events != null ? events.length : 0;
  for (let i = 0; i < eventCount; i++) {
    const e = events![i]!;
    const at = scratch.length;
    scratch.push(0, -1, -1, 0);
    let flags = 0;
    let n = 0;
    if (present(e, "id")) {
      const f = stringField(e.id, at + 1);
      if (f < 0) return undefined;
      n += f;
    }
    if (present(e, "type")) {
      const f = stringField(e.type, at + 2);
      if (f < 0) return undefined;
      n += f;
    }
    if (present(e, "isJson")) {
      flags |= IS_JSON;
      n += 2;
    }
    if (present(e, "data")) {
      const f = bytesField(e.data);
      if (f < 0) return undefined;
      flags |= DATA;
      n += f;
    }
    if (present(e, "metadata")) {
      const f = bytesField(e.metadata);
      if (f < 0) return undefined;
      flags |= METADATA;
      n += f;
    }
    scratch[at] = n;
    scratch[at + 3] = flags;
    body += 1 + varintBytes(n) + n;
  }
  const total = (id != null ? 1 + varintBytes(id) : 0) + 1 + varintBytes(body) + body;
  // Pass 2: write.
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  if (id != null) {
    buf[pos++] = 8;
    pos = writeVarint(buf, pos, id);
  }
  buf[pos++] = 82; // field 10 (append), length-delimited
  pos = writeVarint(buf, pos, body);
  if (scratch[0]! >= 0) pos = writeString(buf, pos, 10, a.streamId!, scratch[0]!);
  if (expected !== undefined) {
    buf[pos++] = 18;
    pos = writeVarint(buf, pos, scratch[1]!);
    if (kind >= 0) {
      buf[pos++] = 8;
      pos = writeVarint(buf, pos, kind);
    }
    if (revision >= 0) {
      buf[pos++] = 16;
      pos = writeVarint(buf, pos, revision);
    }
  }
  for (let i = 0, at = 2; i < eventCount; i++, at += 4) {
    const e = events![i]!;
    buf[pos++] = 26;
    pos = writeVarint(buf, pos, scratch[at]!);
    if (scratch[at + 1]! >= 0) pos = writeString(buf, pos, 10, e.id!, scratch[at + 1]!);
    if (scratch[at + 2]! >= 0) pos = writeString(buf, pos, 18, e.type!, scratch[at + 2]!);
    const flags = scratch[at + 3]!;
    if (flags & IS_JSON) {
      buf[pos++] = 24;
      buf[pos++] = e.isJson ? 1 : 0;
    }
    if (flags & DATA) pos = writeBytes(buf, pos, 34, e.data!);
    if (flags & METADATA) pos = writeBytes(buf, pos, 42, e.metadata!);
  }
  if (pos !== total) throw new Error(`append frame encoded to ${pos} bytes, measured ${total}`);
  return buf;
}

/**
 * Writes the body fields `message` has, in its own key order (a frame has one body). The
 * generated encoders test every field of the envelope, tens of property reads that turn
 * slow when callers pass frames of many object shapes, as a connection does.
 */
function writeBodies(
  w: protobuf.Writer,
  message: object,
  bodies: Readonly<Record<string, readonly [number, BodyEncoder]>>,
): void {
  for (const key in message) {
    const body = bodies[key];
    if (body === undefined) continue;
    const value = (message as Record<string, unknown>)[key];
    if (value != null) body[1].encode(value, w.uint32(body[0]).fork()).ldelim();
  }
}

/** A uint64 below 2^32 as a plain varint: the same bytes, without a LongBits allocation. */
function writeUint64(w: protobuf.Writer, value: number): void {
  if (value >= 0 && value < 0x1_0000_0000) w.uint32(value);
  else w.uint64(value);
}

/**
 * Decodes one frame. Throws FrameError when the bytes are larger than
 * maxBytes, truncated, malformed, or carry no known body.
 */
export function decodeFrame(bytes: Uint8Array, maxBytes = DEFAULT_MAX_FRAME_BYTES): Frame {
  return decodeChecked(chorus.Frame, bytes, maxBytes);
}

function decodeChecked<T extends { body?: string }>(
  type: { decode(bytes: Uint8Array): T },
  bytes: Uint8Array,
  maxBytes: number,
): T {
  if (bytes.byteLength === 0) throw new FrameError("FRAME_EMPTY", "empty frame");
  if (bytes.byteLength > maxBytes) {
    throw new FrameError(
      "FRAME_TOO_LARGE",
      `frame of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes} bytes`,
    );
  }
  let frame: T;
  try {
    frame = type.decode(bytes);
  } catch (err) {
    throw new FrameError(
      "FRAME_MALFORMED",
      `malformed frame: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (!frame.body) {
    throw new FrameError("FRAME_UNKNOWN_BODY", "frame carries no known message body");
  }
  return frame;
}

export type InternalFrame = chorus.InternalFrame;
export type InternalFrameInit = chorus.IInternalFrame;

/**
 * Encodes one node-to-node frame (the same bytes as `chorus.InternalFrame.encode`). `from`,
 * when given, stands for the frame's own (a node stamps its id on a frame without copying it).
 */
export function encodeInternalFrame(frame: InternalFrameInit, from?: string): Uint8Array {
  const sender = from ?? (present(frame, "from") ? frame.from : undefined);
  const replication = encodeReplicationFrame(frame, sender);
  if (replication !== undefined) return replication;
  const w = protobuf.Writer.create();
  if (sender != null) w.uint32(10).string(sender);
  writeBodies(w, frame, internalFrameBodies);
  return w.finish();
}

// ------------------------------------------------------------ replication frames, by hand
//
// Append (leader to follower) and AppendReply (back) are the frames every replicated write
// sends, and a sequential write waits for both. protobufjs's Writer queues about a dozen
// objects for one of them: 4.6-5.7 µs a frame in a loop, 14-20 µs on a node woken by one
// sequential write (its caches cold). Encoded like appends above (measured, then written
// into one buffer): 1.0-1.4 and 9-10 µs. The generated encoders' bytes: a field is written
// when it is not null and is the object's own. Anything else (a number that is not a
// non-negative safe integer, base64 text for bytes) takes the generic path.

const U64 = 0;
const BOOL = 1;
const POINT = 2;
const BYTES = 3;
type Field = readonly [key: string, tag: number, kind: 0 | 1 | 2 | 3];

const POINT_FIELDS: readonly Field[] = [
  ["epoch", 8, U64],
  ["position", 16, U64],
];
const APPEND_FIELDS: readonly Field[] = [
  ["epoch", 8, U64],
  ["prev", 18, POINT],
  ["records", 26, BYTES],
  ["leaderCommit", 32, U64],
];
const APPEND_REPLY_FIELDS: readonly Field[] = [
  ["epoch", 8, U64],
  ["ok", 16, BOOL],
  ["match", 26, POINT],
  ["durableEnd", 32, U64],
  ["hint", 42, POINT],
  ["storageFull", 48, BOOL],
];
/** InternalFrame.append_entries (14) and append_reply (15), length-delimited. */
const TAG_APPEND_ENTRIES = 114;
const TAG_APPEND_REPLY = 122;

/** Bytes of `m`'s present fields, or -1 when one needs the generic encoder. */
function measureFields(m: object, fields: readonly Field[]): number {
  let n = 0;
  for (let i = 0; i < fields.length; i++) {
    const [key, , kind] = fields[i]!;
    if (!present(m, key)) continue;
    const value = (m as Record<string, unknown>)[key];
    if (kind === U64) {
      if (!isWireInteger(value)) return -1;
      n += 1 + varintBytes(value);
    } else if (kind === BOOL) {
      n += 2;
    } else if (kind === POINT) {
      const inner = typeof value === "object" ? measureFields(value as object, POINT_FIELDS) : -1;
      if (inner < 0) return -1;
      n += 1 + varintBytes(inner) + inner;
    } else {
      const f = bytesField(value);
      if (f < 0) return -1;
      n += f;
    }
  }
  return n;
}

/** Writes what measureFields measured; the position after it. */
function writeFields(buf: Buffer, pos: number, m: object, fields: readonly Field[]): number {
  for (let i = 0; i < fields.length; i++) {
    const [key, tag, kind] = fields[i]!;
    if (!present(m, key)) continue;
    const value = (m as Record<string, unknown>)[key];
    if (kind === U64) {
      buf[pos++] = tag;
      pos = writeVarint(buf, pos, value as number);
    } else if (kind === BOOL) {
      buf[pos++] = tag;
      buf[pos++] = value ? 1 : 0;
    } else if (kind === POINT) {
      buf[pos++] = tag;
      pos = writeVarint(buf, pos, measureFields(value as object, POINT_FIELDS));
      pos = writeFields(buf, pos, value as object, POINT_FIELDS);
    } else {
      pos = writeBytes(buf, pos, tag, value as ArrayLike<number>);
    }
  }
  return pos;
}

/** An Append or AppendReply frame (and nothing else), or undefined for the generic path. */
function encodeReplicationFrame(
  frame: InternalFrameInit,
  from: string | null | undefined,
): Uint8Array | undefined {
  let tag = 0;
  let body: object | undefined;
  let fields: readonly Field[] = APPEND_FIELDS;
  for (const key in frame) {
    const value = (frame as Record<string, unknown>)[key];
    if (key === "from" || value == null || internalFrameBodies[key] === undefined) continue;
    if (body !== undefined || !Object.hasOwn(frame, key)) return undefined;
    if (key === "appendEntries") tag = TAG_APPEND_ENTRIES;
    else if (key === "appendReply") {
      tag = TAG_APPEND_REPLY;
      fields = APPEND_REPLY_FIELDS;
    } else return undefined;
    body = value;
  }
  if (body === undefined) return undefined;
  const length = measureFields(body, fields);
  if (length < 0) return undefined;
  const fromField = from != null ? stringField(from, 0) : 0;
  if (fromField < 0) return undefined;
  const total = fromField + 1 + varintBytes(length) + length;
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  if (from != null) pos = writeString(buf, pos, 10, from, scratch[0]!);
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, length);
  pos = writeFields(buf, pos, body, fields);
  if (pos !== total) throw new Error(`internal frame encoded to ${pos} bytes, measured ${total}`);
  return buf;
}

/** Decodes one node-to-node frame; the same checks and errors as decodeFrame. */
export function decodeInternalFrame(
  bytes: Uint8Array,
  maxBytes = DEFAULT_MAX_FRAME_BYTES,
): InternalFrame {
  return decodeChecked(chorus.InternalFrame, bytes, maxBytes);
}

/** Frame.correlation_id (1, varint), Frame.append_result (30, length-delimited). */
const TAG_CORRELATION_ID = 0x08;
const TAG_APPEND_RESULT = [0xf2, 0x01] as const;
/** AppendResponse.success (1, length-delimited); AppendSuccess's two varints (1, 2). */
const TAG_SUCCESS = 0x0a;
const TAG_NEXT_EXPECTED_VERSION = 0x08;
const TAG_POSITION = 0x10;

/**
 * The frame answering an append with success, encoded by hand: the same bytes as
 * `encodeFrame({ correlationId, appendResult: { success: { nextExpectedVersion, position } } })`
 * without protobufjs's writer (an object per field and per nested message) on the reply every
 * append gets. Numbers that are not non-negative safe integers go through `encodeFrame`.
 */
export function encodeAppendSuccess(
  correlationId: number,
  nextExpectedVersion: number,
  position: number,
): Uint8Array {
  if (
    !isWireInteger(correlationId) ||
    !isWireInteger(nextExpectedVersion) ||
    !isWireInteger(position)
  )
    return encodeFrame({
      correlationId,
      appendResult: { success: { nextExpectedVersion, position } },
    });
  const success = 2 + varintBytes(nextExpectedVersion) + varintBytes(position);
  const response = 1 + varintBytes(success) + success;
  const length = 1 + varintBytes(correlationId) + 2 + varintBytes(response) + response;
  const buf = new Uint8Array(length);
  let o = 0;
  buf[o++] = TAG_CORRELATION_ID;
  o = writeVarint(buf, o, correlationId);
  buf[o++] = TAG_APPEND_RESULT[0];
  buf[o++] = TAG_APPEND_RESULT[1];
  o = writeVarint(buf, o, response);
  buf[o++] = TAG_SUCCESS;
  o = writeVarint(buf, o, success);
  buf[o++] = TAG_NEXT_EXPECTED_VERSION;
  o = writeVarint(buf, o, nextExpectedVersion);
  buf[o++] = TAG_POSITION;
  writeVarint(buf, o, position);
  return buf;
}
