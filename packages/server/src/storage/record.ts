/**
 * The log record codec. Pure functions over bytes; no I/O.
 *
 * Record: `[u32 length][u32 crc32c][u8 type][payload][u32 length]`, little endian.
 * `length` is the whole record (header, payload and trailer), so a reader can walk the log
 * forwards (leading length) and backwards (trailing length). The CRC covers type + payload.
 * Every payload starts with a flags byte; bit 0 marks the last record of an atomic batch.
 */
import { crc32c } from "@node-rs/crc32";
import type { StoredEvent } from "../streams/types.js";
import { uuidBytes } from "../streams/uuid.js";

export const RECORD_HEADER_BYTES = 9;
export const RECORD_TRAILER_BYTES = 4;
export const RECORD_OVERHEAD_BYTES = RECORD_HEADER_BYTES + RECORD_TRAILER_BYTES;
/** Smallest possible record: header, flags byte, trailer. */
export const MIN_RECORD_BYTES = RECORD_OVERHEAD_BYTES + 1;
/** Largest record accepted (guards scans against garbage lengths). */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;

export const RecordType = {
  EVENT: 1,
  /** Reserved for the cluster: a new leader's epoch. */
  EPOCH: 2,
  TOMBSTONE: 3,
} as const;

export const FLAG_BATCH_END = 1;
export const FLAG_IS_JSON = 2;

/** Offset, inside an EVENT record, of the f64 position of the previous event of its stream. */
export const EVENT_PREV_POSITION_OFFSET = RECORD_HEADER_BYTES + 1 + 8;

export interface EventRecord {
  kind: "event";
  batchEnd: boolean;
  streamId: string;
  revision: number;
  /** Position of the previous event of the same stream, -1 for the first. */
  prevPosition: number;
  /** 16 bytes of the UUID as a latin1 string (compact map key). */
  idKey: string;
  type: string;
  isJson: boolean;
  createdMs: number;
  data: Uint8Array;
  metadata: Uint8Array;
}

export interface TombstoneRecord {
  kind: "tombstone";
  batchEnd: boolean;
  streamId: string;
  createdMs: number;
}

export interface OtherRecord {
  kind: "other";
  batchEnd: boolean;
  type: number;
  payload: Uint8Array;
}

/** A new leader's epoch (cluster). Always a batch of its own. */
export interface EpochRecord {
  kind: "epoch";
  batchEnd: boolean;
  epochNumber: number;
  /** UUID text. */
  epochId: string;
  leaderInstanceId: string;
}

export type LogRecord = EventRecord | TombstoneRecord | EpochRecord | OtherRecord;

export type RecordProblem = "short" | "bad_length" | "bad_crc" | "bad_trailer" | "bad_payload";

/** Result of looking at bytes that should hold a record. */
export type DecodeResult =
  { ok: true; record: LogRecord; length: number } | { ok: false; problem: RecordProblem };

// ---- UUIDs ----

/** UUID text -> 16 bytes as a latin1 string; "" when `id` is not UUID text. */
export function uuidToKey(id: string): string {
  return uuidBytes(id) ?? "";
}

/** Two lower-case hex digits of every byte value. */
const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** 16-byte latin1 key -> canonical lower-case UUID text. */
export function keyToUuid(key: string): string {
  // Hot on every read: table lookups, without a Buffer and a hex string in between.
  let out = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) out += "-";
    out += HEX_BYTE[key.charCodeAt(i) & 0xff] as string;
  }
  return out;
}

// ---- encoding ----

function frame(
  type: number,
  payloadBytes: number,
  fill: (buf: Buffer, at: number) => void,
): Buffer {
  const length = RECORD_OVERHEAD_BYTES + payloadBytes;
  if (length > MAX_RECORD_BYTES) {
    throw new RangeError(`record of ${length} bytes exceeds the limit of ${MAX_RECORD_BYTES}`);
  }
  const buf = Buffer.allocUnsafe(length);
  buf.writeUInt32LE(length, 0);
  buf.writeUInt8(type, 8);
  fill(buf, RECORD_HEADER_BYTES);
  buf.writeUInt32LE(crc32c(buf.subarray(8, length - RECORD_TRAILER_BYTES)), 4);
  buf.writeUInt32LE(length, length - RECORD_TRAILER_BYTES);
  return buf;
}

export interface EventRecordInit {
  batchEnd: boolean;
  streamId: string;
  revision: number;
  prevPosition: number;
  idKey: string;
  type: string;
  isJson: boolean;
  createdMs: number;
  data: Uint8Array;
  metadata: Uint8Array;
}

/**
 * Writes `text`, `bytes` long in UTF-8, at `at`. ASCII text (its UTF-8 length is its length)
 * goes byte by byte: for short names that is cheaper than a call into Buffer#write.
 */
function writeText(buf: Buffer, at: number, text: string, bytes: number): void {
  if (bytes !== text.length || bytes > 64) {
    buf.write(text, at, bytes, "utf8");
    return;
  }
  for (let i = 0; i < bytes; i++) buf[at + i] = text.charCodeAt(i);
}

// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) tables for slicing by 8.
const CRC_TABLES = Array.from({ length: 8 }, () => new Int32Array(256));
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  (CRC_TABLES[0] as Int32Array)[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let k = 1; k < 8; k++) {
    const prev = (CRC_TABLES[k - 1] as Int32Array)[n] as number;
    (CRC_TABLES[k] as Int32Array)[n] =
      (prev >>> 8) ^ ((CRC_TABLES[0] as Int32Array)[prev & 255] as number);
  }
}
const [C0, C1, C2, C3, C4, C5, C6, C7] = CRC_TABLES as [
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
];
/** Up to this many bytes the CRC is computed here; above, by the native (hardware) one. */
const JS_CRC_MAX_BYTES = 512;

/**
 * The CRC-32C of `buf[start, end)`, as `crc32c` computes it. A small record's is computed in
 * JavaScript (slicing by 8): cheaper than the native call and the view it needs.
 */
export function crc32cOf(buf: Buffer, start: number, end: number): number {
  if (end - start > JS_CRC_MAX_BYTES) return crc32c(buf.subarray(start, end));
  let c = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const lo = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      C7[lo & 255]! ^
      C6[(lo >>> 8) & 255]! ^
      C5[(lo >>> 16) & 255]! ^
      C4[lo >>> 24]! ^
      C3[buf[i + 4]!]! ^
      C2[buf[i + 5]!]! ^
      C1[buf[i + 6]!]! ^
      C0[buf[i + 7]!]!;
  }
  for (; i < end; i++) c = C0[(c ^ buf[i]!) & 255]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** Fixed bytes of an EVENT record: framing, flags, 3 f64, the id, the 4 lengths. */
const EVENT_FIXED_BYTES = RECORD_OVERHEAD_BYTES + 1 + 8 + 8 + 8 + 16 + 2 + 2 + 4 + 4;

export function encodeEvent(e: EventRecordInit): Buffer {
  const streamBytes = Buffer.byteLength(e.streamId, "utf8");
  const typeBytes = Buffer.byteLength(e.type, "utf8");
  if (streamBytes > 0xffff || typeBytes > 0xffff)
    throw new RangeError("stream name or event type too long");
  const idKey = e.idKey;
  if (idKey.length !== 16) throw new RangeError("event id key must be 16 bytes");
  const length = EVENT_FIXED_BYTES + streamBytes + typeBytes + e.data.length + e.metadata.length;
  if (length > MAX_RECORD_BYTES) {
    throw new RangeError(`record of ${length} bytes exceeds the limit of ${MAX_RECORD_BYTES}`);
  }
  // One allocation and straight-line writes (the hottest encoder: one call per event written).
  const buf = Buffer.allocUnsafe(length);
  buf.writeUInt32LE(length, 0);
  buf[8] = RecordType.EVENT;
  let o = RECORD_HEADER_BYTES;
  buf[o] = (e.batchEnd ? FLAG_BATCH_END : 0) | (e.isJson ? FLAG_IS_JSON : 0);
  o += 1;
  buf.writeDoubleLE(e.revision, o);
  o += 8;
  buf.writeDoubleLE(e.prevPosition, o);
  o += 8;
  buf.writeDoubleLE(e.createdMs, o);
  o += 8;
  for (let i = 0; i < 16; i++) buf[o + i] = idKey.charCodeAt(i);
  o += 16;
  buf.writeUInt16LE(streamBytes, o);
  o += 2;
  writeText(buf, o, e.streamId, streamBytes);
  o += streamBytes;
  buf.writeUInt16LE(typeBytes, o);
  o += 2;
  writeText(buf, o, e.type, typeBytes);
  o += typeBytes;
  buf.writeUInt32LE(e.data.length, o);
  o += 4;
  buf.set(e.data, o);
  o += e.data.length;
  buf.writeUInt32LE(e.metadata.length, o);
  o += 4;
  buf.set(e.metadata, o);
  buf.writeUInt32LE(crc32cOf(buf, 8, length - RECORD_TRAILER_BYTES), 4);
  buf.writeUInt32LE(length, length - RECORD_TRAILER_BYTES);
  return buf;
}

export function encodeTombstone(t: {
  batchEnd: boolean;
  streamId: string;
  createdMs: number;
}): Buffer {
  const streamBytes = Buffer.byteLength(t.streamId, "utf8");
  if (streamBytes > 0xffff) throw new RangeError("stream name too long");
  return frame(RecordType.TOMBSTONE, 1 + 8 + 2 + streamBytes, (buf, at) => {
    buf.writeUInt8(t.batchEnd ? FLAG_BATCH_END : 0, at);
    buf.writeDoubleLE(t.createdMs, at + 1);
    buf.writeUInt16LE(streamBytes, at + 9);
    buf.write(t.streamId, at + 11, streamBytes, "utf8");
  });
}

/**
 * EPOCH record: flags (always batch end), f64 epochNumber, 16-byte epochId, u16+leaderInstanceId.
 */
export function encodeEpoch(e: {
  epochNumber: number;
  epochId: string;
  leaderInstanceId: string;
}): Buffer {
  if (!Number.isSafeInteger(e.epochNumber) || e.epochNumber < 1)
    throw new RangeError("epochNumber must be an integer >= 1");
  const idKey = uuidToKey(e.epochId);
  if (idKey.length !== 16) throw new RangeError("epochId must be a UUID");
  const leaderBytes = Buffer.byteLength(e.leaderInstanceId, "utf8");
  if (leaderBytes > 0xffff) throw new RangeError("leaderInstanceId too long");
  return frame(RecordType.EPOCH, 1 + 8 + 16 + 2 + leaderBytes, (buf, at) => {
    buf.writeUInt8(FLAG_BATCH_END, at);
    buf.writeDoubleLE(e.epochNumber, at + 1);
    buf.write(idKey, at + 9, 16, "latin1");
    buf.writeUInt16LE(leaderBytes, at + 25);
    buf.write(e.leaderInstanceId, at + 27, leaderBytes, "utf8");
  });
}

/** A record of any other type (e.g. EPOCH); `payload` must start with the flags byte. */
export function encodeRaw(type: number, payload: Uint8Array): Buffer {
  if (payload.length < 1) throw new RangeError("payload must contain the flags byte");
  return frame(type, payload.length, (buf, at) => buf.set(payload, at));
}

// ---- decoding ----

/**
 * Checks framing and CRC of the record starting at `at` in `buf` without decoding the payload.
 * Returns its length, or the problem. "short" means the buffer ends before the record does.
 * `crcVerified`: the caller already verified these exact bytes' CRC (a follower's replicated
 * records are verified once on receipt), so only the framing is checked.
 */
export function checkRecord(
  buf: Buffer,
  at: number,
  crcVerified = false,
): { ok: true; length: number } | { ok: false; problem: RecordProblem } {
  if (buf.length - at < 4) return { ok: false, problem: "short" };
  const length = buf.readUInt32LE(at);
  if (length < MIN_RECORD_BYTES || length > MAX_RECORD_BYTES)
    return { ok: false, problem: "bad_length" };
  if (buf.length - at < length) return { ok: false, problem: "short" };
  if (buf.readUInt32LE(at + length - RECORD_TRAILER_BYTES) !== length)
    return { ok: false, problem: "bad_trailer" };
  if (crcVerified) return { ok: true, length };
  const crc = crc32c(buf.subarray(at + 8, at + length - RECORD_TRAILER_BYTES));
  if (crc !== buf.readUInt32LE(at + 4)) return { ok: false, problem: "bad_crc" };
  return { ok: true, length };
}

class PayloadError extends Error {}

/**
 * A copy of `length` bytes of `buf` from `at`. Buffer.allocUnsafe carves small copies out of
 * Node's shared pool, far cheaper per event than a fresh ArrayBuffer each.
 */
function copyOut(buf: Buffer, at: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  buf.copy(out, 0, at, at + length);
  return out;
}

function need(end: number, limit: number): void {
  if (end > limit) throw new PayloadError("payload overrun");
}

/**
 * Decodes a record whose framing has been checked (see checkRecord). With `copy`, data and
 * metadata are copied out of `buf`; otherwise they are views into it.
 */
export function decodeCheckedRecord(
  buf: Buffer,
  at: number,
  length: number,
  copy: boolean,
): LogRecord | null {
  const type = buf.readUInt8(at + 8);
  const start = at + RECORD_HEADER_BYTES;
  const limit = at + length - RECORD_TRAILER_BYTES;
  const flags = buf.readUInt8(start);
  const batchEnd = (flags & FLAG_BATCH_END) !== 0;
  try {
    if (type === RecordType.EVENT) {
      let o = start + 1;
      need(o + 42, limit);
      const revision = buf.readDoubleLE(o);
      const prevPosition = buf.readDoubleLE(o + 8);
      const createdMs = buf.readDoubleLE(o + 16);
      const idKey = buf.toString("latin1", o + 24, o + 40);
      o += 40;
      const streamBytes = buf.readUInt16LE(o);
      o += 2;
      need(o + streamBytes + 2, limit);
      const streamId = buf.toString("utf8", o, o + streamBytes);
      o += streamBytes;
      const typeBytes = buf.readUInt16LE(o);
      o += 2;
      need(o + typeBytes + 4, limit);
      const eventType = buf.toString("utf8", o, o + typeBytes);
      o += typeBytes;
      const dataBytes = buf.readUInt32LE(o);
      o += 4;
      need(o + dataBytes + 4, limit);
      const data = copy ? copyOut(buf, o, dataBytes) : buf.subarray(o, o + dataBytes);
      o += dataBytes;
      const metaBytes = buf.readUInt32LE(o);
      o += 4;
      need(o + metaBytes, limit);
      const metadata = copy ? copyOut(buf, o, metaBytes) : buf.subarray(o, o + metaBytes);
      return {
        kind: "event",
        batchEnd,
        streamId,
        revision,
        prevPosition,
        idKey,
        type: eventType,
        isJson: (flags & FLAG_IS_JSON) !== 0,
        createdMs,
        data,
        metadata,
      };
    }
    if (type === RecordType.TOMBSTONE) {
      need(start + 11, limit);
      const createdMs = buf.readDoubleLE(start + 1);
      const streamBytes = buf.readUInt16LE(start + 9);
      need(start + 11 + streamBytes, limit);
      return {
        kind: "tombstone",
        batchEnd,
        streamId: buf.toString("utf8", start + 11, start + 11 + streamBytes),
        createdMs,
      };
    }
    const payload = Uint8Array.prototype.slice.call(buf, start, limit);
    return { kind: "other", batchEnd, type, payload };
  } catch (err) {
    if (err instanceof PayloadError || err instanceof RangeError) return null;
    throw err;
  }
}

/** What data or metadata of no bytes is read as: one shared empty buffer, not one per event. */
const NO_BYTES: Buffer = Buffer.alloc(0);

/** A copy of a view decodeStoredEvent made with `copy` false (the shared empty buffer stays). */
export function copyBytes(bytes: Buffer): Buffer {
  return bytes.length === 0 ? bytes : copyOut(bytes, 0, bytes.length);
}

/**
 * An EVENT record whose framing has been checked, straight into the StoredEvent at
 * `position`, its data and metadata copied out (with `copy`; else views into `buf`);
 * undefined for a record of another type; null for an EVENT record whose payload does not
 * parse. The `$all` read's decoder: decodeCheckedRecord builds an EventRecord (with its id as
 * a latin1 key) that a read would turn into a StoredEvent at once; here the id's text comes
 * from its bytes, and empty data or metadata shares one buffer (most events carry no
 * metadata).
 */
export function decodeStoredEvent(
  buf: Buffer,
  at: number,
  length: number,
  position: number,
  copy = true,
): StoredEvent | null | undefined {
  if (buf[at + 8] !== RecordType.EVENT) return undefined;
  const limit = at + length - RECORD_TRAILER_BYTES;
  let o = at + RECORD_HEADER_BYTES;
  const flags = buf[o] as number;
  o += 1;
  if (o + 42 > limit) return null;
  const revision = buf.readDoubleLE(o);
  const createdMs = buf.readDoubleLE(o + 16);
  let id = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) id += "-";
    id += HEX_BYTE[buf[o + 24 + i] as number] as string;
  }
  o += 40;
  const streamBytes = buf.readUInt16LE(o);
  o += 2;
  if (o + streamBytes + 2 > limit) return null;
  const streamId = buf.toString("utf8", o, o + streamBytes);
  o += streamBytes;
  const typeBytes = buf.readUInt16LE(o);
  o += 2;
  if (o + typeBytes + 4 > limit) return null;
  const type = buf.toString("utf8", o, o + typeBytes);
  o += typeBytes;
  const dataBytes = buf.readUInt32LE(o);
  o += 4;
  if (o + dataBytes + 4 > limit) return null;
  const data =
    dataBytes === 0 ? NO_BYTES : copy ? copyOut(buf, o, dataBytes) : buf.subarray(o, o + dataBytes);
  o += dataBytes;
  const metaBytes = buf.readUInt32LE(o);
  o += 4;
  if (o + metaBytes > limit) return null;
  const metadata =
    metaBytes === 0 ? NO_BYTES : copy ? copyOut(buf, o, metaBytes) : buf.subarray(o, o + metaBytes);
  return {
    streamId,
    revision,
    position,
    id,
    type,
    isJson: (flags & FLAG_IS_JSON) !== 0,
    data,
    metadata,
    createdMs,
  };
}

/**
 * Reads an EPOCH record's fields from an undecoded ("other") record of type EPOCH; null for
 * another type or a bad payload. (The generic decoder leaves EPOCH records raw.)
 */
export function decodeEpoch(rec: LogRecord): EpochRecord | null {
  if (rec.kind === "epoch") return rec;
  if (rec.kind !== "other" || rec.type !== RecordType.EPOCH) return null;
  const p = Buffer.from(rec.payload.buffer, rec.payload.byteOffset, rec.payload.length);
  if (p.length < 27) return null;
  const epochNumber = p.readDoubleLE(1);
  if (!Number.isSafeInteger(epochNumber) || epochNumber < 1) return null;
  const leaderBytes = p.readUInt16LE(25);
  if (27 + leaderBytes > p.length) return null;
  return {
    kind: "epoch",
    batchEnd: rec.batchEnd,
    epochNumber,
    epochId: keyToUuid(p.toString("latin1", 9, 25)),
    leaderInstanceId: p.toString("utf8", 27, 27 + leaderBytes),
  };
}

// ---- peeking at checked records (what the cluster needs, without decoding) ----

/** Offset, inside an EPOCH record, of its f64 epoch number (after the flags byte). */
const EPOCH_NUMBER_OFFSET = RECORD_HEADER_BYTES + 1;

/** Whether the record at `at` in `buf` is the last of its atomic batch (flags bit 0). */
export function isBatchEndAt(buf: Buffer, at = 0): boolean {
  return (buf.readUInt8(at + RECORD_HEADER_BYTES) & FLAG_BATCH_END) !== 0;
}

/**
 * The epoch number of the EPOCH record at `at` in `buf`; undefined when the record there is of
 * another type or too short to be one. An EPOCH record is a batch of its own, so this applied
 * to a batch's bytes tells whether it is an epoch's first record, and which epoch.
 */
export function epochNumberAt(buf: Buffer, at = 0): number | undefined {
  if (buf.length < at + RECORD_HEADER_BYTES || buf.readUInt8(at + 8) !== RecordType.EPOCH)
    return undefined;
  const length = buf.readUInt32LE(at);
  if (length < EPOCH_NUMBER_OFFSET + 8 + RECORD_TRAILER_BYTES || buf.length < at + length)
    return undefined;
  return buf.readDoubleLE(at + EPOCH_NUMBER_OFFSET);
}

/** Checks and decodes the record at `at`. */
export function decodeRecord(buf: Buffer, at = 0, copy = true): DecodeResult {
  const checked = checkRecord(buf, at);
  if (!checked.ok) return checked;
  const record = decodeCheckedRecord(buf, at, checked.length, copy);
  if (record === null) return { ok: false, problem: "bad_payload" };
  return { ok: true, record, length: checked.length };
}

/**
 * The fields the index needs from a checked EVENT record, without decoding the rest (no type
 * text, no data views): what recovery and a follower's `appendRaw` use for the events of
 * plain streams.
 */
export interface EventSummary {
  kind: "summary";
  batchEnd: boolean;
  streamId: string;
  revision: number;
  /** Position of the previous event of the same stream, -1 for the first. */
  prevPosition: number;
  idKey: string;
}

/**
 * Reads the index fields of a checked record if it is an EVENT; null for other types or a bad
 * payload. With `wholeLayout`, the lengths of the fields it skips are checked too, as a full
 * decode would.
 */
export function summarizeEvent(
  buf: Buffer,
  at: number,
  length: number,
  wholeLayout = false,
): EventSummary | null {
  if (buf.readUInt8(at + 8) !== RecordType.EVENT) return null;
  const start = at + RECORD_HEADER_BYTES;
  const limit = at + length - RECORD_TRAILER_BYTES;
  if (start + 43 > limit) return null;
  const streamBytes = buf.readUInt16LE(start + 41);
  const streamEnd = start + 43 + streamBytes;
  if (streamEnd > limit) return null;
  if (wholeLayout) {
    if (streamEnd + 2 > limit) return null;
    const dataAt = streamEnd + 2 + buf.readUInt16LE(streamEnd);
    if (dataAt + 4 > limit) return null;
    const metaAt = dataAt + 4 + buf.readUInt32LE(dataAt);
    if (metaAt + 4 > limit || metaAt + 4 + buf.readUInt32LE(metaAt) > limit) return null;
  }
  return {
    kind: "summary",
    batchEnd: (buf.readUInt8(start) & FLAG_BATCH_END) !== 0,
    revision: buf.readDoubleLE(start + 1),
    prevPosition: buf.readDoubleLE(start + 9),
    idKey: buf.toString("latin1", start + 25, start + 41),
    streamId: buf.toString("utf8", start + 43, streamEnd),
  };
}
