import protobuf from "protobufjs/minimal.js";
import { frameBodies, internalFrameBodies, type BodyEncoder } from "./gen/bodies.js";
import { chorus } from "./gen/chorus.js";

/** Default upper bound of one encoded frame: 16 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

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

/** Encodes one frame to bytes (the same bytes as `chorus.Frame.encode`). */
export function encodeFrame(frame: FrameInit): Uint8Array {
  const w = protobuf.Writer.create();
  const id = frame.correlationId;
  if (id != null) writeUint64(w.uint32(8), id);
  if (frame.credentials != null) {
    chorus.Credentials.encode(frame.credentials, w.uint32(18).fork()).ldelim();
  }
  writeBodies(w, frame, frameBodies);
  return w.finish();
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

/** Encodes one node-to-node frame (the same bytes as `chorus.InternalFrame.encode`). */
export function encodeInternalFrame(frame: InternalFrameInit): Uint8Array {
  const w = protobuf.Writer.create();
  if (frame.from != null) w.uint32(10).string(frame.from);
  writeBodies(w, frame, internalFrameBodies);
  return w.finish();
}

/** Decodes one node-to-node frame; the same checks and errors as decodeFrame. */
export function decodeInternalFrame(
  bytes: Uint8Array,
  maxBytes = DEFAULT_MAX_FRAME_BYTES,
): InternalFrame {
  return decodeChecked(chorus.InternalFrame, bytes, maxBytes);
}
