import { isUtf8 } from "node:buffer";
import { randomUUID } from "node:crypto";
import { chorus, eventTypeProblem, isUuid } from "@chorus/protocol";
import { InvalidArgumentError } from "../errors.js";
import type { RecordedEvent, ResolvedEvent } from "../types.js";

/** An event ready to append: serialized once, so every retry sends the same bytes and id. */
export interface EventData {
  readonly id: string;
  readonly type: string;
  readonly isJson: boolean;
  readonly data: Uint8Array;
  readonly metadata: Uint8Array | undefined;
}

const EMPTY = new Uint8Array(0);

/**
 * An event jsonEvent or binaryEvent made, with its fields checked there; frozen. Appends
 * take such an event without checking it again (see checkEventData).
 */
class CheckedEventData implements EventData {
  readonly id: string;
  readonly type: string;
  readonly isJson: boolean;
  readonly data: Uint8Array;
  readonly metadata: Uint8Array | undefined;

  constructor(
    id: string,
    type: string,
    isJson: boolean,
    data: Uint8Array,
    metadata: Uint8Array | undefined,
  ) {
    this.id = id;
    this.type = type;
    this.isJson = isJson;
    this.data = data;
    this.metadata = metadata;
    Object.freeze(this);
  }
}

function checkCommon(type: unknown, id: unknown): string {
  const problem = eventTypeProblem(type);
  if (problem) throw new InvalidArgumentError(problem);
  if (id === undefined) return randomUUID();
  if (!isUuid(id))
    throw new InvalidArgumentError(`event id must be a UUID, got ${JSON.stringify(id)}`);
  return id;
}

function toJsonBytes(value: unknown, what: string): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new InvalidArgumentError(
      `${what} cannot be serialized as JSON: ${(err as Error).message}`,
    );
  }
  if (text === undefined) throw new InvalidArgumentError(`${what} cannot be serialized as JSON`);
  // Buffer.from cuts small strings out of Node's shared buffer pool: cheaper than
  // TextEncoder, which allocates a buffer per call (the same bytes: JSON text has no lone
  // surrogates).
  return Buffer.from(text, "utf8");
}

/** A JSON event. `id` (a UUID) is generated when absent; give one to make retries of your own idempotent. */
export function jsonEvent<T = unknown>(event: {
  type: string;
  data: T;
  metadata?: unknown;
  id?: string;
}): EventData {
  const id = checkCommon(event?.type, event?.id);
  return new CheckedEventData(
    id,
    event.type,
    true,
    toJsonBytes(event.data, "event data"),
    event.metadata === undefined ? undefined : toJsonBytes(event.metadata, "event metadata"),
  );
}

/** A binary event: data and metadata are opaque bytes. */
export function binaryEvent(event: {
  type: string;
  data: Uint8Array;
  metadata?: Uint8Array;
  id?: string;
}): EventData {
  const id = checkCommon(event?.type, event?.id);
  if (!(event.data instanceof Uint8Array))
    throw new InvalidArgumentError("binary event data must be a Uint8Array");
  if (event.metadata !== undefined && !(event.metadata instanceof Uint8Array)) {
    throw new InvalidArgumentError("binary event metadata must be a Uint8Array");
  }
  return new CheckedEventData(
    id,
    event.type,
    false,
    new Uint8Array(event.data),
    event.metadata === undefined ? undefined : new Uint8Array(event.metadata),
  );
}

/** Checks a value handed to appendToStream is an EventData (from jsonEvent/binaryEvent). */
export function checkEventData(value: unknown, index: number): EventData {
  // Made by jsonEvent / binaryEvent, frozen: checked there already.
  if (value instanceof CheckedEventData) return value;
  const e = value as Partial<EventData> | null;
  if (!e || typeof e !== "object")
    throw new InvalidArgumentError(
      `event #${index} is not an event; use jsonEvent() or binaryEvent()`,
    );
  if (!isUuid(e.id))
    throw new InvalidArgumentError(
      `event #${index}: id must be a UUID; use jsonEvent() or binaryEvent()`,
    );
  const problem = eventTypeProblem(e.type);
  if (problem) throw new InvalidArgumentError(`event #${index}: ${problem}`);
  if (!(e.data instanceof Uint8Array) || typeof e.isJson !== "boolean") {
    throw new InvalidArgumentError(
      `event #${index} is not an event; use jsonEvent() or binaryEvent()`,
    );
  }
  return e as EventData;
}

export function eventDataToWire(e: EventData): chorus.IEventData {
  return { id: e.id, type: e.type, isJson: e.isJson, data: e.data, metadata: e.metadata ?? EMPTY };
}

/**
 * The text of UTF-8 bytes, as a fatal TextDecoder gives it (a leading byte order mark is
 * dropped); undefined when they are not valid UTF-8. Validating then slicing a Buffer is
 * several times faster than TextDecoder.
 */
function utf8Text(bytes: Uint8Array): string | undefined {
  if (!isUtf8(bytes)) return undefined;
  const buf = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bom = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf;
  return buf.toString("utf8", bom ? 3 : 0);
}

function decodeBody(
  bytes: Uint8Array | null | undefined,
  isJson: boolean,
  emptyAsUndefined: boolean,
): unknown {
  const b = bytes ?? EMPTY;
  if (b.byteLength === 0) return emptyAsUndefined || isJson ? undefined : new Uint8Array(0);
  if (isJson) {
    const text = utf8Text(b);
    if (text !== undefined) {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        // Not valid JSON after all: the bytes are handed over below.
      }
    }
    // Not UTF-8 JSON after all: hand over the bytes rather than lose the event.
    return new Uint8Array(b);
  }
  return new Uint8Array(b);
}

/**
 * A wire RecordedEvent in client terms: bigints, parsed JSON, copied bytes; with `partition`
 * (a partitioned client's group), the event carries its group from the start.
 */
export function recordedEventFromWire(
  e: chorus.IRecordedEvent,
  partition?: string,
  decodeJson = true,
): RecordedEvent {
  const isJson = e.isJson === true;
  const streamId = e.streamId ?? "";
  const revision = BigInt(e.revision ?? 0);
  const position = BigInt(e.position ?? 0);
  const id = e.id ?? "";
  const type = e.type ?? "";
  const data = decodeBody(e.data, isJson && decodeJson, false);
  const metadata = decodeBody(e.metadata, isJson && decodeJson, true);
  const created = new Date(Number(e.createdMs ?? 0));
  return Object.freeze(
    partition === undefined
      ? { streamId, revision, position, id, type, isJson, data, metadata, created }
      : { streamId, revision, position, id, type, isJson, data, metadata, created, partition },
  );
}

/** The `decodeJson` option of a read or subscription, checked (default true). */
export function decodeJsonOf(operation: string, value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== "boolean")
    throw new InvalidArgumentError(`${operation}: decodeJson must be true or false`);
  return value;
}

export function resolvedEventFromWire(
  e: chorus.IResolvedEvent,
  partition?: string,
  decodeJson = true,
): ResolvedEvent {
  const event = recordedEventFromWire(e.event ?? {}, partition, decodeJson);
  return e.link
    ? Object.freeze({ event, link: recordedEventFromWire(e.link, partition, decodeJson) })
    : Object.freeze({ event });
}
