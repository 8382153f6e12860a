/**
 * The JSON form of an event, one object per line: what `read --json` and `tail --json` print
 * and what `export` writes and `import` reads back.
 *
 * `revision` and `position` are decimal strings (they may exceed 2^53). A JSON event's data
 * and metadata are JSON values (`data`, `metadata`); anything else is base64 under
 * `dataBase64` / `metadataBase64`: the key itself is the marker. A key that is absent means
 * empty.
 *
 * `export` reads events as their stored bytes and writes a JSON event's text into the line as
 * it is, and `import` stores the text of each value as it stands in the line: an integer beyond
 * 2^53, which JSON.parse changes, comes back exactly (line breaks between a value's tokens
 * become spaces, so that each event stays on one line).
 */
import { isUtf8 } from "node:buffer";
import {
  eventTypeProblem,
  isUuid,
  objectMembers,
  objectValueSpans,
  streamNameProblem,
  type Span,
} from "@chorus/protocol";
import type { EventData, ResolvedEvent } from "@chorus/client";

/** JSON text written into a line as it is (jsonLine). */
export class RawJson {
  constructor(readonly text: string) {}
}

export interface EventRecord {
  eventId: string;
  eventType: string;
  streamId: string;
  revision: string;
  position: string;
  /** With partitions: the replication group the event is in (`position` is in its log). */
  partition?: string;
  isJson: boolean;
  data?: unknown;
  dataBase64?: string;
  metadata?: unknown;
  metadataBase64?: string;
  created: string;
}

/** The record of a read or delivered event. */
export function toRecord(resolved: ResolvedEvent): EventRecord {
  const e = resolved.event;
  const record: EventRecord = {
    eventId: e.id,
    eventType: e.type,
    streamId: e.streamId,
    revision: e.revision.toString(),
    position: e.position.toString(),
    ...(e.partition !== undefined && { partition: e.partition }),
    isJson: e.isJson,
    created: e.created.toISOString(),
  };
  setBody(record, "data", e.data, e.isJson);
  setBody(record, "metadata", e.metadata, e.isJson);
  return record;
}

/**
 * A body as the record holds it: parsed JSON as it is; the bytes of a JSON event (read with
 * `decodeJson: false`) as their text; other bytes as base64.
 */
function setBody(
  record: EventRecord,
  key: "data" | "metadata",
  value: unknown,
  isJson: boolean,
): void {
  if (value === undefined) return;
  if (value instanceof Uint8Array) {
    if (value.byteLength === 0) return;
    const text = isJson ? jsonTextOf(value) : undefined;
    if (text !== undefined) record[key] = new RawJson(text);
    else record[`${key}Base64`] = Buffer.from(value).toString("base64");
    return;
  }
  record[key] = value;
}

/** The text of bytes that are UTF-8 JSON, on one line; undefined when they are not. */
function jsonTextOf(bytes: Uint8Array): string | undefined {
  if (!isUtf8(bytes)) return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  try {
    JSON.parse(text);
  } catch {
    return undefined;
  }
  // A line break in JSON text can only stand between tokens (in a string it is escaped).
  return text.replace(/[\r\n]/g, " ");
}

/**
 * Keys of stream metadata that name revisions of the stream it was written for
 * (`truncateBefore`, and the mark a soft delete leaves with it). An import numbers a stream's
 * events from 0 and holds only the events the export could read, so these keys are left out
 * of the metadata an export writes: kept, they would hide the imported events.
 */
export const REVISION_METADATA_KEYS: ReadonlySet<string> = new Set([
  "truncateBefore",
  "$softDeleted",
]);

/**
 * Stream metadata (a `$metadata` event's JSON text) as an export writes it: without
 * REVISION_METADATA_KEYS, every other member's value exactly as stored. The text itself when
 * it has none of them, or is not a JSON object.
 */
export function metadataForCopy(text: string): string {
  let members;
  try {
    JSON.parse(text);
    members = objectMembers(text);
  } catch {
    return text;
  }
  if (!members.some((m) => REVISION_METADATA_KEYS.has(m.key))) return text;
  const kept = members.filter((m) => !REVISION_METADATA_KEYS.has(m.key));
  return `{${kept.map((m) => `${JSON.stringify(m.key)}:${text.slice(m.value[0], m.value[1])}`).join(",")}}`;
}

/** The line of an event as `read` and `tail` print it without --json. */
export function toTextLine(resolved: ResolvedEvent): string {
  const e = resolved.event;
  return `${e.streamId}@${e.revision.toString()}  ${e.type}  ${bodyText(e.data)}`.trimEnd();
}

function bodyText(value: unknown): string {
  if (value === undefined) return "";
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  return JSON.stringify(value);
}

/** One event to append, read back from a record. */
export interface ImportedEvent {
  readonly streamId: string;
  readonly event: EventData;
  /** Bytes of data and metadata (for batching under the server's append limit). */
  readonly size: number;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const encoder = new TextEncoder();

/**
 * The event a record (a parsed line of an export file) describes, keeping its id, type and
 * body bytes. Throws an Error naming the offending field.
 */
export function fromRecord(value: unknown, line?: string): ImportedEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error("expected a JSON object");
  const r = value as Record<string, unknown>;
  if (!isUuid(r["eventId"])) throw new Error(`"eventId" must be a UUID`);
  const typeProblem = eventTypeProblem(r["eventType"]);
  if (typeProblem) throw new Error(`"eventType": ${typeProblem}`);
  const streamProblem = streamNameProblem(r["streamId"]);
  if (streamProblem) throw new Error(`"streamId": ${streamProblem}`);
  const isJson = r["isJson"] === undefined ? "data" in r : r["isJson"];
  if (typeof isJson !== "boolean") throw new Error(`"isJson" must be true or false`);
  // The values' text as it stands in the line (when given): exact, where JSON.parse is not.
  const spans = line === undefined ? {} : objectValueSpans(line);
  const data = bodyBytes(r, "data", line, spans.data) ?? new Uint8Array(0);
  const metadata = bodyBytes(r, "metadata", line, spans.metadata);
  const event: EventData = Object.freeze({
    id: r["eventId"],
    type: r["eventType"] as string,
    isJson,
    data,
    metadata,
  });
  return {
    streamId: r["streamId"] as string,
    event,
    size: data.byteLength + (metadata?.byteLength ?? 0),
  };
}

function bodyBytes(
  r: Record<string, unknown>,
  key: "data" | "metadata",
  line: string | undefined,
  span: Span | undefined,
): Uint8Array | undefined {
  const b64Key = `${key}Base64`;
  const hasJson = key in r && r[key] !== undefined;
  const hasB64 = b64Key in r && r[b64Key] !== undefined;
  if (hasJson && hasB64) throw new Error(`"${key}" and "${b64Key}" exclude each other`);
  if (hasJson)
    return encoder.encode(
      line !== undefined && span !== undefined
        ? line.slice(span[0], span[1])
        : JSON.stringify(r[key]),
    );
  if (hasB64) {
    const text = r[b64Key];
    if (typeof text !== "string" || text.length % 4 !== 0 || !BASE64.test(text))
      throw new Error(`"${b64Key}" must be base64 text`);
    return new Uint8Array(Buffer.from(text, "base64"));
  }
  return undefined;
}

const decimalBigints = (_key: string, v: unknown): unknown =>
  typeof v === "bigint" ? v.toString() : v;

/**
 * JSON text of a value whose bigints become decimal strings and Dates ISO strings; RawJson
 * values of a record's own keys are written as their text.
 */
export function jsonLine(value: unknown): string {
  if (
    typeof value !== "object" ||
    value === null ||
    !Object.values(value).some((v) => v instanceof RawJson)
  )
    return JSON.stringify(value, decimalBigints);
  const fields = Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .map(
      ([k, v]) =>
        `${JSON.stringify(k)}:${v instanceof RawJson ? v.text : JSON.stringify(v, decimalBigints)}`,
    );
  return `{${fields.join(",")}}`;
}

/** Left-aligned columns separated by two spaces, with a header row. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}
