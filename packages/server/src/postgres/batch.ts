/**
 * One group-committed transaction of the PostgreSQL backend, as decisions: the appends and
 * deletes queued since the last transaction, in order, against the streams as the database
 * holds them (read under the position lock) and against what earlier writes of the same batch
 * did. The stream rules are the shared ones (`../streams/`); this module only keeps the
 * working state of one batch and turns accepted writes into rows. The I/O (what was loaded,
 * reading a stream's event ids) comes in through `BatchReads`.
 */
import { randomUUID } from "node:crypto";
import { METADATA_EVENT_TYPE, metadataStreamOf } from "@chorus/protocol";
import { assertNotTombstoned, decideDelete } from "../streams/deletes.js";
import { invalid } from "../streams/errors.js";
import { checkExpectedVersion, wrongExpectedVersion } from "../streams/expected-version.js";
import {
  decideFromRecentIds,
  decideFromStream,
  type RetryDecision,
  type WrittenAt,
} from "../streams/idempotency.js";
import { metadataOfAppend, targetOfMetadataStream } from "../streams/metadata.js";
import type { ExpectedVersion, NewEvent, StreamMetadata, WriteResult } from "../streams/types.js";
import type { StreamView } from "../streams/view.js";

/** A stream's row: its view for the rules, and the position of its last event (-1: none). */
export interface StreamRow extends StreamView {
  readonly lastPosition: number;
}

export const ABSENT_ROW: StreamRow = Object.freeze({
  last: -1,
  lastPosition: -1,
  tombstoned: false,
  meta: null,
});

/** An event as the batch writes it (ids in lower case, as the database returns them). */
export interface EventRow {
  readonly position: number;
  readonly streamId: string;
  readonly revision: number;
  readonly id: string;
  readonly type: string;
  readonly isJson: boolean;
  readonly data: Uint8Array;
  readonly metadata: Uint8Array;
  readonly createdMs: number;
}

/** A stored event's id and where it is. */
export interface IdAt {
  readonly id: string;
  readonly revision: number;
  readonly position: number;
}

export type WriteOp =
  | {
      readonly kind: "append";
      readonly streamId: string;
      readonly expected: ExpectedVersion;
      readonly events: readonly NewEvent[];
    }
  | {
      readonly kind: "delete";
      readonly streamId: string;
      readonly expected: ExpectedVersion;
      readonly hard: boolean;
    };

/** What the batch reads from the database (committed rows, under the position lock). */
export interface BatchReads {
  /** The stream's row as loaded for this batch (every stream `streamsOf` names); undefined: none. */
  stream(streamId: string): StreamRow | undefined;
  /** Where the stream holds the event `id` (loaded for every id `idsOf` names); undefined: nowhere. */
  idInStream(streamId: string, id: string): WrittenAt | undefined;
  /** The stream's stored events `from..to` (ascending; fewer where the stream ends). */
  readIds(streamId: string, from: number, to: number): Promise<IdAt[]>;
}

/** The streams whose rows a batch of these writes needs. */
export function streamsOf(ops: readonly WriteOp[]): Set<string> {
  const names = new Set<string>();
  for (const op of ops) {
    names.add(op.streamId);
    const target = targetOfMetadataStream(op.streamId);
    if (target !== undefined) names.add(target);
    if (op.kind === "delete") names.add(metadataStreamOf(op.streamId));
  }
  return names;
}

/**
 * The (stream, event id) pairs whose place a batch of these writes looks up: every event of
 * every append (the first finds retries; all of them keep a second copy of an id out of a
 * stream, which the database's unique constraint would refuse for the whole transaction).
 */
export function idsOf(ops: readonly WriteOp[]): Array<{ streamId: string; id: string }> {
  const out: Array<{ streamId: string; id: string }> = [];
  for (const op of ops) {
    if (op.kind !== "append") continue;
    for (const e of op.events) out.push({ streamId: op.streamId, id: e.id.toLowerCase() });
  }
  return out;
}

/**
 * The working state of one batch: `decide` each write in order; then `events`, `changedStreams`
 * and `nextPosition` are what the transaction writes.
 */
export class Batch {
  readonly events: EventRow[] = [];
  /** Streams whose rows change: their new state. */
  readonly changedStreams = new Map<string, StreamRow>();
  #next: number;
  /** Events of this batch by stream and id (a retry of a write queued in the same batch). */
  readonly #written = new Map<string, IdAt>();
  /** Events of this batch by stream, in revision order. */
  readonly #byStream = new Map<string, EventRow[]>();

  constructor(
    private readonly reads: BatchReads,
    /** The first position this batch may use (the database's next position). */
    nextPosition: number,
    private readonly nowMs: number,
  ) {
    this.#next = nextPosition;
  }

  get nextPosition(): number {
    return this.#next;
  }

  /** The answer to one write; throws the StoreError the rules raise (that write fails alone). */
  decide(op: WriteOp): Promise<WriteResult> {
    return op.kind === "append"
      ? this.#append(op.streamId, op.expected, op.events)
      : Promise.resolve(this.#delete(op.streamId, op.expected, op.hard));
  }

  #row(streamId: string): StreamRow {
    return this.changedStreams.get(streamId) ?? this.reads.stream(streamId) ?? ABSENT_ROW;
  }

  async #append(
    streamId: string,
    expected: ExpectedVersion,
    events: readonly NewEvent[],
  ): Promise<WriteResult> {
    const ids = events.map((e) => e.id.toLowerCase());
    const target = targetOfMetadataStream(streamId);
    let newMeta: StreamMetadata | undefined;
    if (target !== undefined) {
      assertNotTombstoned(target, this.#row(target).tombstoned);
      newMeta = metadataOfAppend(streamId, events);
    }
    const row = this.#row(streamId);
    assertNotTombstoned(streamId, row.tombstoned);

    const retry = await this.#findRetry(streamId, row, expected, ids);
    if (retry.kind !== "new") return retry.result;
    const check = checkExpectedVersion(streamId, expected, row);
    if (check.kind === "conflict") return check.result;
    if (check.kind === "compare-ids") {
      const hi = check.fromRevision + ids.length - 1;
      if (ids.length === 0 || hi > row.last) return wrongExpectedVersion(row);
      const stored = await this.#readIds(streamId, check.fromRevision, hi);
      return decideFromStream(row, check.fromRevision, ids, stored).result;
    }
    if (events.length === 0) {
      return { ok: true, nextExpectedVersion: row.last, position: row.lastPosition };
    }
    this.#assertNewIds(streamId, ids);
    this.#write(streamId, row, events, ids);
    if (target !== undefined && newMeta !== undefined) {
      this.changedStreams.set(target, { ...this.#row(target), meta: newMeta });
    }
    const written = this.#row(streamId);
    return { ok: true, nextExpectedVersion: written.last, position: written.lastPosition };
  }

  /**
   * Is this append a retry? Every event id is in the database for good, so the first id is
   * looked up wherever it was written in the stream (any expected version; in effect the log
   * store's window of recent ids without an end), and the stream's events from there decide
   * (`decideFromRecentIds`).
   */
  async #findRetry(
    streamId: string,
    row: StreamRow,
    expected: ExpectedVersion,
    ids: readonly string[],
  ): Promise<RetryDecision> {
    const id0 = ids[0];
    if (id0 === undefined) return { kind: "new" };
    const hit = this.#written.get(key(streamId, id0)) ?? this.reads.idInStream(streamId, id0);
    if (hit === undefined) return { kind: "new" };
    const stored = await this.#readIds(streamId, hit.revision, hit.revision + ids.length - 1);
    const at = new Map(stored.map((s) => [s.id, s]));
    return decideFromRecentIds(row, expected, ids, (id) => at.get(id));
  }

  /**
   * An event id is stored at most once per stream (a unique constraint): an append that is not
   * a retry but repeats an id already in the stream, or twice in itself, is refused.
   */
  #assertNewIds(streamId: string, ids: readonly string[]): void {
    const seen = new Set<string>();
    for (const id of ids) {
      const at = this.#written.get(key(streamId, id)) ?? this.reads.idInStream(streamId, id);
      if (at !== undefined)
        throw invalid(
          `event id ${id} is already stored in this stream (revision ${at.revision}); event ids are unique per stream`,
          streamId,
        );
      if (seen.has(id))
        throw invalid(
          `event id ${id} appears twice in this append; event ids are unique per stream`,
          streamId,
        );
      seen.add(id);
    }
  }

  /** The stream's events from..to: those stored, then those this batch wrote. */
  async #readIds(streamId: string, from: number, to: number): Promise<IdAt[]> {
    const stored = this.reads.stream(streamId);
    const storedLast = stored?.last ?? -1;
    const out =
      from <= storedLast ? await this.reads.readIds(streamId, from, Math.min(to, storedLast)) : [];
    for (const e of this.#byStream.get(streamId) ?? []) {
      if (e.revision >= from && e.revision <= to)
        out.push({ id: e.id, revision: e.revision, position: e.position });
    }
    return out;
  }

  #write(
    streamId: string,
    row: StreamRow,
    events: readonly Pick<NewEvent, "type" | "isJson" | "data" | "metadata">[],
    ids: readonly string[],
  ): void {
    let revision = row.last;
    let position = row.lastPosition;
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as NewEvent;
      revision++;
      position = this.#next++;
      const event: EventRow = {
        position,
        streamId,
        revision,
        id: ids[i] as string,
        type: e.type,
        isJson: e.isJson,
        data: e.data,
        metadata: e.metadata,
        createdMs: this.nowMs,
      };
      this.events.push(event);
      this.#written.set(key(streamId, event.id), event);
      let mine = this.#byStream.get(streamId);
      if (mine === undefined) this.#byStream.set(streamId, (mine = []));
      mine.push(event);
    }
    this.changedStreams.set(streamId, { ...row, last: revision, lastPosition: position });
  }

  #delete(streamId: string, expected: ExpectedVersion, hard: boolean): WriteResult {
    const row = this.#row(streamId);
    const decision = decideDelete(streamId, expected, row, hard);
    if (decision.kind === "conflict") return decision.result;
    if (decision.kind === "tombstone") {
      // The tombstone takes a position of its own, as in the log (no event is stored there).
      const position = this.#next++;
      this.changedStreams.set(streamId, { ...row, tombstoned: true });
      return { ok: true, nextExpectedVersion: decision.nextExpectedVersion, position };
    }
    const metaStream = metadataStreamOf(streamId);
    const data = Buffer.from(JSON.stringify(decision.metadata), "utf8");
    this.#write(
      metaStream,
      this.#row(metaStream),
      [{ type: METADATA_EVENT_TYPE, isJson: true, data, metadata: new Uint8Array(0) }],
      [randomUUID()],
    );
    this.changedStreams.set(streamId, { ...this.#row(streamId), meta: decision.metadata });
    return {
      ok: true,
      nextExpectedVersion: decision.nextExpectedVersion,
      position: this.#row(metaStream).lastPosition,
    };
  }
}

function key(streamId: string, id: string): string {
  return `${id}\u0000${streamId}`;
}
