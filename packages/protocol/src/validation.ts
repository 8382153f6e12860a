/** Validation shared by client and server, so both give the same answer. */

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Longest stream name accepted, in UTF-8 bytes. */
export const MAX_STREAM_NAME_BYTES = 1024;
/** Longest event type accepted, in UTF-8 bytes. */
export const MAX_EVENT_TYPE_BYTES = 1024;

export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID_RE.test(value);
}

/**
 * Returns null when the stream name is valid, otherwise a sentence saying why not.
 * `$all` is not a stream that can be written; `$$name` is the metadata stream of `name`.
 */
export function streamNameProblem(name: unknown): string | null {
  if (typeof name !== "string") return "stream name must be a string";
  if (name.length === 0) return "stream name must not be empty";
  if (Buffer.byteLength(name, "utf8") > MAX_STREAM_NAME_BYTES) {
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
  if (Buffer.byteLength(type, "utf8") > MAX_EVENT_TYPE_BYTES) {
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
