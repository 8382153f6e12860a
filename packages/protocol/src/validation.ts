/** Validation shared by client and server, so both give the same answer. */

/** Longest stream name accepted, in UTF-8 bytes. */
export const MAX_STREAM_NAME_BYTES = 1024;
/** Longest event type accepted, in UTF-8 bytes. */
export const MAX_EVENT_TYPE_BYTES = 1024;

/**
 * A UUID in its canonical text form: 36 characters, hex digits (either case) with dashes at
 * 8, 13, 18 and 23. A loop over char codes: every event of every append is checked, and
 * this is several times cheaper than the equivalent regular expression.
 */
export function isUuid(value: unknown): value is string {
  if (typeof value !== "string" || value.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = value.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) return false;
    } else if (!(
      (c >= 0x30 && c <= 0x39) || // 0-9
      (c >= 0x61 && c <= 0x66) || // a-f
      (c >= 0x41 && c <= 0x46) // A-F
    )) {
      return false;
    }
  }
  return true;
}

/**
 * Whether a string's UTF-8 form may exceed `maxBytes`. A UTF-16 code unit takes at most
 * 3 UTF-8 bytes, so short strings (all names in practice) skip the byte count.
 */
function mayExceedUtf8Bytes(text: string, maxBytes: number): boolean {
  return text.length * 3 > maxBytes && Buffer.byteLength(text, "utf8") > maxBytes;
}

/**
 * Returns null when the stream name is valid, otherwise a sentence saying why not.
 * `$all` is not a stream that can be written; `$$name` is the metadata stream of `name`.
 */
export function streamNameProblem(name: unknown): string | null {
  if (typeof name !== "string") return "stream name must be a string";
  if (name.length === 0) return "stream name must not be empty";
  if (mayExceedUtf8Bytes(name, MAX_STREAM_NAME_BYTES)) {
    return `stream name is longer than ${MAX_STREAM_NAME_BYTES} bytes`;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return "stream name must not contain control characters";
  if (name === "$all") return "$all is not a stream; use readAll / subscribeToAll";
  if (name === "$$") return "$$ is not a valid metadata stream name";
  return null;
}

/** Returns null when the event type is valid, otherwise why not. */
export function eventTypeProblem(type: unknown): string | null {
  if (typeof type !== "string") return "event type must be a string";
  if (type.length === 0) return "event type must not be empty";
  if (mayExceedUtf8Bytes(type, MAX_EVENT_TYPE_BYTES)) {
    return `event type is longer than ${MAX_EVENT_TYPE_BYTES} bytes`;
  }
  return null;
}

/** The metadata stream of a stream: `$$name`. */
export function metadataStreamOf(stream: string): string {
  return `$$${stream}`;
}

export function isMetadataStream(stream: string): boolean {
  return stream.startsWith("$$");
}

export function isSystemStream(stream: string): boolean {
  return stream.startsWith("$");
}

/** The event type of stream metadata events. */
export const METADATA_EVENT_TYPE = "$metadata";
