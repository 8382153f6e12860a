/**
 * Events as the HTTP API answers them. The data and metadata of a JSON event are written into
 * the answer as the text that was stored, not parsed and written again: JSON.parse turns
 * integers beyond 2^53 into others (1234567890123456789 into 1234567890123456800) and respells
 * numbers and strings, and a reader must get what its writer sent (the writing side:
 * @chorus/protocol's json-spans.ts).
 */
import type { StoredEvent } from "../streams/types.js";
import { JsonText } from "./json.js";

/** Data or metadata as JSON: stored JSON text as it is; other bytes as base64; none as null. */
function bodyJson(bytes: Uint8Array, isJson: boolean): string {
  if (bytes.byteLength === 0) return "null";
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!isJson) return `"${buf.toString("base64")}"`;
  const text = buf.toString("utf8");
  try {
    JSON.parse(text);
    return text;
  } catch {
    // Marked JSON by its writer but not JSON (the native API stores bytes as they come).
    return JSON.stringify(text);
  }
}

/**
 * `{ streamId, revision, position, eventId, eventType, isJson, data, metadata, created }`, as
 * JSON text.
 */
export function eventJson(e: StoredEvent): string {
  const head = JSON.stringify({
    streamId: e.streamId,
    revision: String(e.revision),
    position: String(e.position),
    eventId: e.id,
    eventType: e.type,
    isJson: e.isJson,
  });
  const data = bodyJson(e.data, e.isJson);
  const metadata = bodyJson(e.metadata, e.isJson);
  const created = new Date(e.createdMs).toISOString();
  return `${head.slice(0, -1)},"data":${data},"metadata":${metadata},"created":"${created}"}`;
}

/** `{ "events": [...], ...rest }`: a page of events and what a reader needs to go on. */
export function eventsPage(
  events: readonly StoredEvent[],
  rest: Record<string, unknown>,
): JsonText {
  const tail = JSON.stringify(rest).slice(1, -1);
  const list = events.map(eventJson).join(",");
  return new JsonText(`{"events":[${list}]${tail === "" ? "" : `,${tail}`}}`);
}
