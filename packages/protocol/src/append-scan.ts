import protobuf from "protobufjs/minimal.js";
import { chorus } from "./gen/chorus.js";
import type { Frame } from "./frame.js";

/**
 * What a node needs to judge an append's size, read from its encoded frame without decoding
 * the events: decoding a frame of 100,000 events takes a fifth of a second of the node's event
 * loop, while walking its fields takes a few milliseconds.
 */
export interface AppendFrameScan {
  /**
   * The frame with everything but the events decoded: the correlation id, per-request
   * credentials, and the append's stream id and expected version (`append.events` is empty).
   */
  readonly frame: Frame;
  /** How many events the append carries. */
  readonly events: number;
  /** The bytes of the events' types, data and metadata, summed. */
  readonly payloadBytes: number;
}

// Field numbers (chorus.proto).
const FRAME_CORRELATION_ID = 1;
const FRAME_CREDENTIALS = 2;
const FRAME_APPEND = 10;
const APPEND_STREAM_ID = 1;
const APPEND_EXPECTED = 2;
const APPEND_EVENTS = 3;
const EVENT_TYPE = 2;
const EVENT_DATA = 4;
const EVENT_METADATA = 5;
const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;

/**
 * Reads an encoded Frame whose only body is an append, without decoding its events. Undefined
 * for anything else: another body, two bodies, or bytes that do not parse (the full decode then
 * reports what is wrong).
 */
export function scanAppendFrame(bytes: Uint8Array): AppendFrameScan | undefined {
  try {
    return scan(bytes);
  } catch {
    return undefined;
  }
}

function scan(bytes: Uint8Array): AppendFrameScan | undefined {
  const r = protobuf.Reader.create(bytes);
  let correlationId = 0;
  let credentials: chorus.Credentials | undefined;
  let append: { start: number; end: number } | undefined;
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === FRAME_CORRELATION_ID && wire === WIRE_VARINT) {
      correlationId = Number(r.uint64());
    } else if (field === FRAME_CREDENTIALS && wire === WIRE_LENGTH_DELIMITED) {
      credentials = chorus.Credentials.decode(r, r.uint32());
    } else if (field === FRAME_APPEND && wire === WIRE_LENGTH_DELIMITED) {
      // protobuf merges repeated occurrences of a message field; not worth the trouble here.
      if (append !== undefined) return undefined;
      const length = r.uint32();
      append = { start: r.pos, end: r.pos + length };
      r.skip(length);
    } else if (field >= FRAME_APPEND) {
      return undefined; // another body
    } else {
      r.skipType(wire);
    }
  }
  if (append === undefined) return undefined;

  const request = chorus.AppendRequest.create();
  let events = 0;
  let payloadBytes = 0;
  r.pos = append.start;
  while (r.pos < append.end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === APPEND_STREAM_ID && wire === WIRE_LENGTH_DELIMITED) {
      request.streamId = r.string();
    } else if (field === APPEND_EXPECTED && wire === WIRE_LENGTH_DELIMITED) {
      request.expected = chorus.ExpectedVersion.decode(r, r.uint32());
    } else if (field === APPEND_EVENTS && wire === WIRE_LENGTH_DELIMITED) {
      const end = r.uint32() + r.pos;
      events++;
      // A field that occurs twice counts once, as decoding keeps the last.
      let type = 0;
      let data = 0;
      let metadata = 0;
      while (r.pos < end) {
        const eventTag = r.uint32();
        const eventField = eventTag >>> 3;
        if ((eventTag & 7) !== WIRE_LENGTH_DELIMITED) {
          r.skipType(eventTag & 7);
          continue;
        }
        const length = r.uint32();
        r.skip(length);
        if (eventField === EVENT_TYPE) type = length;
        else if (eventField === EVENT_DATA) data = length;
        else if (eventField === EVENT_METADATA) metadata = length;
      }
      if (r.pos !== end) return undefined;
      payloadBytes += type + data + metadata;
    } else {
      r.skipType(wire);
    }
  }
  if (r.pos !== append.end) return undefined;
  const frame = chorus.Frame.create({ correlationId, append: request });
  if (credentials !== undefined) frame.credentials = credentials;
  return { frame, events, payloadBytes };
}
