import { chorus, isMetadataStream, METADATA_EVENT_TYPE } from "@chorus/protocol";
import { RECORD_OVERHEAD_BYTES } from "../storage/record.js";
import { eventFilter, FilterError } from "../streams/filters.js";
import { parseMetadata } from "../streams/metadata.js";
import { uuidBytes } from "../streams/uuid.js";
import { eventTypeProblemOf, streamNameProblemOf } from "../streams/validate.js";
import type {
  ExpectedVersion,
  NewEvent,
  StoredEvent,
  WrongExpectedVersionInfo,
} from "../streams/types.js";
import { isGroupStateStream } from "../persistent/source.js";
import { invalidArgument } from "./errors.js";

/** The most events one read page or one subscription read carries. */
export const MAX_PAGE_EVENTS = 4096;
/** Upper bound of records a filtered $all read examines in one call. */
export const MAX_SCAN_RECORDS = 16_384;

const Kind = chorus.ExpectedVersion.Kind;

/** Throws INVALID_ARGUMENT when the stream name cannot be written or read. */
export function checkStreamName(name: unknown): string {
  const problem = streamNameProblemOf(name);
  if (problem !== null) throw invalidArgument(`invalid stream name: ${problem}`);
  return name as string;
}

/**
 * Refuses a client's append or delete on the persistent subscription groups' own streams
 * (`$persistent-config`, checkpoints, acks, parked events) and their metadata streams: the
 * node writes them, and a client's write there would break every group (a deleted config
 * stream lets no group be loaded or created again). Reading them stays open.
 */
export function checkClientWrite(streamId: string): void {
  if (isGroupStateStream(streamId)) {
    throw invalidArgument(
      `stream ${streamId} holds persistent subscription groups' state, which only the node writes: manage groups through the persistent subscription API (create, update, delete, replay parked)`,
      streamId,
    );
  }
}

/** The expected versions without a revision, shared (read only): no object per append. */
const EXPECT_ANY: ExpectedVersion = Object.freeze({ kind: "any" });
const EXPECT_NO_STREAM: ExpectedVersion = Object.freeze({ kind: "no_stream" });
const EXPECT_STREAM_EXISTS: ExpectedVersion = Object.freeze({ kind: "stream_exists" });

export function expectedFromWire(
  wire: chorus.IExpectedVersion | null | undefined,
  streamId: string,
): ExpectedVersion {
  if (!wire) return EXPECT_ANY;
  const kind = wire.kind ?? Kind.ANY;
  switch (kind) {
    case Kind.ANY:
      return EXPECT_ANY;
    case Kind.NO_STREAM:
      return EXPECT_NO_STREAM;
    case Kind.STREAM_EXISTS:
      return EXPECT_STREAM_EXISTS;
    case Kind.EXACT: {
      const revision = Number(wire.revision ?? 0);
      if (!Number.isSafeInteger(revision) || revision < 0) {
        throw invalidArgument(
          `expected revision ${String(wire.revision)} is out of range (0..2^53-1)`,
          streamId,
        );
      }
      return { kind: "exact", revision };
    }
    default:
      throw invalidArgument(`unknown expected version kind ${String(kind)}`, streamId);
  }
}

export function expectedToWire(expected: ExpectedVersion): chorus.IExpectedVersion {
  switch (expected.kind) {
    case "any":
      return { kind: Kind.ANY };
    case "no_stream":
      return { kind: Kind.NO_STREAM };
    case "stream_exists":
      return { kind: Kind.STREAM_EXISTS };
    case "exact":
      return { kind: Kind.EXACT, revision: expected.revision };
  }
}

/** Parses the HTTP form: any | no_stream | stream_exists | N. */
export function expectedFromText(text: string | undefined, streamId: string): ExpectedVersion {
  if (text === undefined || text.trim() === "") return { kind: "any" };
  const t = text.trim().toLowerCase();
  if (t === "any") return { kind: "any" };
  if (t === "no_stream") return { kind: "no_stream" };
  if (t === "stream_exists") return { kind: "stream_exists" };
  if (/^\d+$/.test(t)) {
    const revision = Number(t);
    if (Number.isSafeInteger(revision)) return { kind: "exact", revision };
  }
  throw invalidArgument(
    `Chorus-Expected-Version must be any, no_stream, stream_exists or a revision (0..2^53-1), got ${JSON.stringify(text.slice(0, 64))}`,
    streamId,
  );
}

export function expectedToText(expected: ExpectedVersion): string {
  return expected.kind === "exact" ? String(expected.revision) : expected.kind;
}

export interface EventInput {
  id: unknown;
  type: unknown;
  isJson: boolean;
  data: Uint8Array;
  metadata: Uint8Array;
}

/** Validates every event of an append; throws INVALID_ARGUMENT naming the first problem. */
export function checkEvents(events: readonly EventInput[], streamId: string): NewEvent[] {
  if (events.length === 0)
    throw invalidArgument("an append must carry at least one event", streamId);
  const seen = events.length > 1 ? new Set<string>() : undefined;
  const out: NewEvent[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as EventInput;
    out.push(checkEvent(e.id, e.type, e.isJson, e.data, e.metadata, i, streamId, seen));
  }
  return out;
}

/**
 * One event of an append (the `i`th), as `checkEvents` checks it. `seen`: the ids of the
 * events before it (none for a lone event: it cannot repeat one).
 */
function checkEvent(
  rawId: unknown,
  type: unknown,
  isJson: boolean,
  data: Uint8Array,
  metadata: Uint8Array,
  i: number,
  streamId: string,
  seen: Set<string> | undefined,
): NewEvent {
  // A hand-written parse of the id's text (no regular expression): this runs per event. The
  // bytes go to the store with the event, which would parse the text again otherwise.
  const idKey = uuidBytes(rawId);
  if (idKey === undefined) {
    throw invalidArgument(
      `event ${i}: id ${JSON.stringify(typeof rawId === "string" ? rawId.slice(0, 64) : (rawId ?? null))} is not a UUID`,
      streamId,
    );
  }
  const id = (rawId as string).toLowerCase();
  if (seen !== undefined) {
    if (seen.has(id))
      throw invalidArgument(`event ${i}: id ${id} appears twice in one append`, streamId);
    seen.add(id);
  }
  const typeProblem = eventTypeProblemOf(type);
  if (typeProblem !== null) throw invalidArgument(`event ${i}: ${typeProblem}`, streamId);
  if (type === METADATA_EVENT_TYPE && isMetadataStream(streamId)) checkMetadata(data, streamId);
  return { id, idKey, type: type as string, isJson, data, metadata };
}

/** Metadata keys of access control lists (ours, and the `$acl` of other event stores). */
const ACL_KEYS = ["acl", "$acl"];

/**
 * Refuses stream metadata this server would store and then ignore: a security setting that
 * does nothing must not look as if it were in force. (The store checks the rest.)
 */
function checkMetadata(data: Uint8Array, metadataStream: string): void {
  const meta = parseMetadata(data);
  if (meta === null) return;
  const key = ACL_KEYS.find((k) => Object.hasOwn(meta, k));
  if (key !== undefined) {
    throw invalidArgument(
      `stream ACLs are not supported yet: the metadata of ${metadataStream.slice(2)} carries "${key}"; Chorus has no users and roles to apply it to, so it is refused rather than stored and ignored`,
      metadataStream,
    );
  }
}

/** Fixed bytes of an EVENT log record besides its stream name, type, data and metadata. */
const EVENT_RECORD_FIXED_BYTES = RECORD_OVERHEAD_BYTES + 1 + 8 + 8 + 8 + 16 + 2 + 2 + 4 + 4; // flags, revision, prev, created, id, lengths

/** The size of an event's log record (storage/record.ts `encodeEvent`). */
export function storedEventBytes(
  streamId: string,
  e: Pick<NewEvent, "type" | "data" | "metadata">,
): number {
  return (
    EVENT_RECORD_FIXED_BYTES +
    Buffer.byteLength(streamId, "utf8") +
    Buffer.byteLength(e.type, "utf8") +
    e.data.byteLength +
    e.metadata.byteLength
  );
}

/**
 * Refuses an append whose batch, as stored, exceeds `maxAppendBytes`: one append is one
 * replicated batch, and a batch larger than a replication frame could never reach the followers.
 */
export function checkAppendSize(
  events: readonly Pick<NewEvent, "type" | "data" | "metadata">[],
  streamId: string,
  maxAppendBytes: number,
): void {
  let bytes = 0;
  for (const e of events) bytes += storedEventBytes(streamId, e);
  refuseOversized(events.length, bytes, streamId, maxAppendBytes);
}

/**
 * The same check on the events as they came off the wire, before they are validated and
 * copied: a huge append costs the node nothing but this sum.
 */
export function checkWireAppendSize(
  events: readonly chorus.IEventData[] | null | undefined,
  streamId: string,
  maxAppendBytes: number,
): void {
  if (!events) return;
  let payloadBytes = 0;
  for (const e of events) {
    payloadBytes +=
      Buffer.byteLength(e.type ?? "", "utf8") +
      (e.data?.byteLength ?? 0) +
      (e.metadata?.byteLength ?? 0);
  }
  refuseOversized(
    events.length,
    storedAppendBytes(events.length, streamId, payloadBytes),
    streamId,
    maxAppendBytes,
  );
}

/**
 * The size as stored of `count` events on `streamId` whose types, data and metadata come to
 * `payloadBytes`.
 */
export function storedAppendBytes(count: number, streamId: string, payloadBytes: number): number {
  return count * (EVENT_RECORD_FIXED_BYTES + Buffer.byteLength(streamId, "utf8")) + payloadBytes;
}

export function refuseOversized(
  count: number,
  bytes: number,
  streamId: string,
  maxAppendBytes: number,
): void {
  if (bytes > maxAppendBytes) {
    throw invalidArgument(
      `append of ${count} events (${bytes} bytes as stored) exceeds the largest append, ${maxAppendBytes} bytes (--max-append-bytes); split it into smaller appends`,
      streamId,
    );
  }
}

export function eventsFromWire(
  events: readonly chorus.IEventData[] | null | undefined,
  streamId: string,
): NewEvent[] {
  // checkEvents over the wire's events, without an intermediate object per event.
  if (!events || events.length === 0)
    throw invalidArgument("an append must carry at least one event", streamId);
  const seen = events.length > 1 ? new Set<string>() : undefined;
  const out: NewEvent[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as chorus.IEventData;
    out.push(
      checkEvent(
        e.id ?? "",
        e.type ?? "",
        e.isJson === true,
        e.data ?? new Uint8Array(0),
        e.metadata ?? new Uint8Array(0),
        i,
        streamId,
        seen,
      ),
    );
  }
  return out;
}

export function wrongExpectedToWire(
  expected: ExpectedVersion,
  info: WrongExpectedVersionInfo,
): chorus.IWrongExpectedVersion {
  return {
    expected: expectedToWire(expected),
    streamExists: info.streamExists,
    actualRevision: info.streamExists ? info.actualRevision : 0,
  };
}

export interface FilterInput {
  streamNamePrefix?: readonly string[] | null;
  eventTypePrefix?: readonly string[] | null;
  streamNameRegex?: string | null;
  eventTypeRegex?: string | null;
  includeSystem?: boolean | null;
  checkpointInterval?: number | null;
}

/**
 * Builds the store-side predicate of a $all filter (its patterns compiled once, here);
 * undefined when there is no filter. A filter that cannot be used is INVALID_ARGUMENT.
 */
export function filterFromWire(
  filter: FilterInput | null | undefined,
): ((e: StoredEvent) => boolean) | undefined {
  if (!filter) return undefined;
  try {
    return eventFilter({
      streamNamePrefixes: filter.streamNamePrefix ?? [],
      eventTypePrefixes: filter.eventTypePrefix ?? [],
      ...(filter.streamNameRegex ? { streamNameRegex: filter.streamNameRegex } : {}),
      ...(filter.eventTypeRegex ? { eventTypeRegex: filter.eventTypeRegex } : {}),
      includeSystem: filter.includeSystem === true,
    });
  } catch (err) {
    if (err instanceof FilterError) throw invalidArgument(`filter: ${err.message}`);
    throw err;
  }
}

/**
 * The checkpoint interval of a $all subscription's filter: records examined with no match
 * before the server sends a checkpoint; undefined for the server's own schedule.
 */
export function checkpointIntervalFromWire(
  filter: FilterInput | null | undefined,
): number | undefined {
  const n = filter?.checkpointInterval ?? 0;
  return n > 0 ? n : undefined;
}
