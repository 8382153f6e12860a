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

/** Encodes one frame to bytes. */
export function encodeFrame(frame: FrameInit): Uint8Array {
  return chorus.Frame.encode(frame).finish();
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

/** Encodes one node-to-node frame. */
export function encodeInternalFrame(frame: InternalFrameInit): Uint8Array {
  return chorus.InternalFrame.encode(frame).finish();
}

/** Decodes one node-to-node frame; the same checks and errors as decodeFrame. */
export function decodeInternalFrame(
  bytes: Uint8Array,
  maxBytes = DEFAULT_MAX_FRAME_BYTES,
): InternalFrame {
  return decodeChecked(chorus.InternalFrame, bytes, maxBytes);
}
