/**
 * What the pieces of a persistent subscription group share: the consumer contract, the
 * in-memory record of one event (`Entry`), the names of the group's system streams, and small
 * helpers for the JSON records written there.
 */
import { randomUUID } from "node:crypto";
import { StoreError, type NewEvent, type StoredEvent, type StreamStore } from "../streams/types.js";

export type NackAction = "park" | "retry" | "skip" | "stop";

/** Why a consumer's subscription ends. */
export type DropCode =
  "NOT_LEADER" | "PERSISTENT_SUBSCRIPTION_NOT_FOUND" | "SHUTTING_DOWN" | "INTERNAL" | "UNKNOWN";

/** Where the group's consumer sees its events and confirmations. */
export interface ConsumerSink {
  deliver(events: StoredEvent[], retryCounts: number[]): void;
  /** These acks / nacks are durable (or needed nothing durable). */
  acked(positions: number[]): void;
  dropped(code: DropCode, message: string): void;
}

export interface ConsumerOptions {
  readonly bufferSize: number;
  readonly name: string;
  readonly connection: string;
  /** Events the consumer already holds from before a reconnect (their positions). */
  readonly held?: readonly number[];
}

/** The longest delay of a nack "retry" (one hour). */
export const MAX_RETRY_DELAY_MS = 3_600_000;

/** The handle a connection holds for one consumer. */
export interface ConsumerHandle {
  readonly id: string;
  ack(positions: readonly number[]): void;
  /**
   * `delayMs` (retry only; 0..MAX_RETRY_DELAY_MS): the events are redelivered no sooner than
   * this long after the nack is confirmed. The caller validates it.
   */
  nack(positions: readonly number[], action: NackAction, reason: string, delayMs?: number): void;
  /** Leaves the group; its outstanding events go to other consumers. */
  close(): void;
}

export interface GroupKey {
  /** The source stream, or "$all". */
  readonly streamId: string;
  readonly group: string;
}

export function groupBase(key: GroupKey): string {
  return `$persistent-${key.streamId}::${key.group}`;
}

export function checkpointStream(key: GroupKey): string {
  return `${groupBase(key)}-checkpoint`;
}

export function acksStream(key: GroupKey): string {
  return `${groupBase(key)}-acks`;
}

export function parkedStream(key: GroupKey): string {
  return `${groupBase(key)}-parked`;
}

/** Where reading starts when there is no checkpoint, fixed when the group is created. */
export interface InitialCursor {
  /** Revision (stream) or position ($all), inclusive. */
  readonly from: number;
}

/** A point in the source: a revision (stream groups) or position ($all groups), and its position. */
export interface ReadPoint {
  readonly point: number;
  readonly position: number;
  /**
   * $all only: the read scanned on to this record start (the events between matched nothing);
   * `point` and `position` are then `next - 1`, and reading resumes at `next`.
   */
  readonly next?: number;
}

/**
 * Where an event of the group is:
 * - `queued`: waiting for a consumer with room;
 * - `inflight`: out at `consumer`, until `deadlineMs`;
 * - `delayed`: a nack "retry" with a delay, waiting until `dueMs` (Infinity until the nack is durable);
 * - `finishing`: acknowledged, skipped or parked; leaves memory once that is durable.
 */
export type EntryState = "queued" | "inflight" | "delayed" | "finishing";

export interface Entry {
  readonly event: StoredEvent;
  /** Revision (stream groups) or position ($all groups). */
  readonly point: number;
  /** The point and position of the event read just before this one (for the checkpoint). */
  readonly prevPoint: number;
  readonly prevPosition: number;
  /** $all: the previous read point was a scan's end (ReadPoint.next). */
  readonly prevNext: number | undefined;
  state: EntryState;
  consumer: Consumer | undefined;
  deadlineMs: number;
  /** While `delayed`: when it may be handed out again. */
  dueMs: number;
  retryCount: number;
  readonly replay: boolean;
  /** A replayed event: the revision of its copy in the parked stream; else -1. */
  readonly parkedRevision: number;
  /** Handed to a consumer (or claimed by one) at least once by this group. */
  sent: boolean;
  /** Consumers waiting to hear that this event's ack / nack is durable. */
  waiters: Consumer[] | undefined;
}

export function newEntry(
  event: StoredEvent,
  point: number,
  prev: ReadPoint,
  replay?: { parkedRevision: number },
): Entry {
  return {
    event,
    point,
    prevPoint: prev.point,
    prevPosition: prev.position,
    prevNext: prev.next,
    state: "queued",
    consumer: undefined,
    deadlineMs: 0,
    dueMs: 0,
    retryCount: 0,
    replay: replay !== undefined,
    parkedRevision: replay?.parkedRevision ?? -1,
    sent: false,
    waiters: undefined,
  };
}

/** One consumer of the group. */
export interface Consumer extends ConsumerHandle {
  /** What Pinned hashes: the consumer's name when it has one, so it gets its streams back. */
  readonly hashKey: string;
  readonly sink: ConsumerSink;
  readonly options: ConsumerOptions;
  readonly inflight: Set<Entry>;
  delivered: number;
  acked: number;
  closed: boolean;
}

export function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), "utf8");
}

export function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

export function systemEvent(type: string, data: unknown): NewEvent {
  return { id: randomUUID(), type, isJson: true, data: json(data), metadata: new Uint8Array(0) };
}

/**
 * The last event of a stream and the stream's last revision. The event is undefined when none
 * is readable (absent, metadata only, soft-deleted, or every event truncated); `last` is -1
 * when the stream has no readable event at all (absent, metadata only, or soft-deleted).
 */
export async function streamEnd(
  store: StreamStore,
  streamId: string,
): Promise<{ event: StoredEvent | undefined; last: number }> {
  try {
    const r = await store.readStream(streamId, {
      direction: "backwards",
      fromRevision: "end",
      maxCount: 1,
    });
    return { event: r.events[0], last: r.lastRevision };
  } catch (err) {
    if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND")
      return { event: undefined, last: -1 };
    throw err;
  }
}
