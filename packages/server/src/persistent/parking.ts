/**
 * Parked events and their replay. `{base}-parked` holds a copy of each parked event (its type
 * and data) with its origin in the metadata; the stream's `truncateBefore` is the replay cursor.
 * A replay offers the originals again and, once every one is done, moves the cursor past them.
 */
import { randomUUID } from "node:crypto";
import { eventBytes } from "../streams/page-bytes.js";
import { StoreError, type NewEvent, type StoredEvent, type StreamStore } from "../streams/types.js";
import { json, parkedStream, parseJson, streamEnd, type Entry, type GroupKey } from "./common.js";

/** Parked copies read per page. */
const PAGE = 512;

export function parkedCopy(e: StoredEvent, reason: string): NewEvent {
  return {
    id: randomUUID(),
    type: e.type,
    isJson: e.isJson,
    data: e.data,
    metadata: json({
      $origin: {
        streamId: e.streamId,
        revision: e.revision,
        position: e.position,
        id: e.id,
        createdMs: e.createdMs,
        metadata: Buffer.from(e.metadata).toString("base64"),
      },
      $reason: reason,
    }),
  };
}

/** The original event of a parked copy (undefined when the copy is not one). */
export function fromParkedCopy(copy: StoredEvent): StoredEvent | undefined {
  const meta = parseJson(copy.metadata) as
    | {
        $origin?: {
          streamId?: unknown;
          revision?: unknown;
          position?: unknown;
          id?: unknown;
          createdMs?: unknown;
          metadata?: unknown;
        };
      }
    | undefined;
  const o = meta?.$origin;
  if (
    !o ||
    typeof o.streamId !== "string" ||
    typeof o.revision !== "number" ||
    typeof o.position !== "number" ||
    typeof o.id !== "string"
  )
    return undefined;
  return {
    streamId: o.streamId,
    revision: o.revision,
    position: o.position,
    id: o.id,
    type: copy.type,
    isJson: copy.isJson,
    data: copy.data,
    metadata:
      typeof o.metadata === "string" ? Buffer.from(o.metadata, "base64") : new Uint8Array(0),
    createdMs: typeof o.createdMs === "number" ? o.createdMs : copy.createdMs,
  };
}

/** An original event to offer again, with the revision of its parked copy. */
export type ReplayCandidate = StoredEvent & { parkedRevision: number };

/**
 * Of a page of parked copies, the originals to offer again: not those whose replay is done
 * (`replayedDone`, by copy revision) and not those the group holds now (`known`, by position).
 */
export function replayCandidates(
  copies: readonly StoredEvent[],
  replayedDone: ReadonlySet<number>,
  known: (position: number) => boolean,
): ReplayCandidate[] {
  const out: ReplayCandidate[] = [];
  for (const copy of copies) {
    // Replayed and done before (by a previous leader, or before an update): not again.
    if (replayedDone.has(copy.revision)) continue;
    const original = fromParkedCopy(copy);
    if (original && !known(original.position))
      out.push({ ...original, parkedRevision: copy.revision });
  }
  return out;
}

/** The parked stream's state in the group, and the events waiting to be parked. */
export class Parking {
  /** Parked events not replayed yet. */
  count = 0;
  /** The replay cursor: the parked stream's truncateBefore. */
  from = 0;
  /** While a replay runs: the revision after the last copy its current round offered. */
  replayEnd: number | undefined;
  /**
   * While a replay runs: what it still offers after its current round, `left` originals
   * (MAX_SAFE_INTEGER: all) from the copies below `until` (those parked before it was asked
   * for: an event parked again while the replay runs waits for the next one).
   */
  replayRest: { left: number; until: number } | undefined;
  /** Events to park with the next flush, with why. */
  readonly queue: { entry: Entry; reason: string }[] = [];

  /** Reads the replay cursor and counts the parked events not replayed yet. */
  async load(store: StreamStore, key: GroupKey): Promise<void> {
    const meta = await store.getMetadata(parkedStream(key));
    this.from = typeof meta?.truncateBefore === "number" ? meta.truncateBefore : 0;
  }

  /**
   * After the acks are loaded: how many parked events wait for a replay. Returns the parked
   * stream's last revision (-1: none).
   */
  async countWaiting(store: StreamStore, key: GroupKey, replayedDone: number): Promise<number> {
    const { last } = await streamEnd(store, parkedStream(key));
    this.count = Math.max(0, last + 1 - this.from - replayedDone);
    return last;
  }

  /**
   * Reads originals to replay from the cursor: up to `limit` of them and about `maxBytes`
   * (`eventBytes`), from copies below revision `until`. Returns them and the revision after
   * the last copy read (the new cursor once they are done), or undefined when the parked
   * stream has nothing from the cursor below `until`.
   */
  async readReplay(
    store: StreamStore,
    key: GroupKey,
    bounds: { limit: number; maxBytes: number; until: number },
    replayedDone: ReadonlySet<number>,
    known: (position: number) => boolean,
  ): Promise<{ events: ReplayCandidate[]; end: number } | undefined> {
    const { limit, maxBytes, until } = bounds;
    const events: ReplayCandidate[] = [];
    let bytes = 0;
    let revision = this.from;
    let last = revision - 1;
    while (events.length < limit && bytes < maxBytes && revision < until) {
      let page;
      try {
        page = await store.readStream(parkedStream(key), {
          direction: "forwards",
          fromRevision: revision,
          maxCount: Math.min(PAGE, limit - events.length, until - revision),
        });
      } catch (err) {
        if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") break;
        throw err;
      }
      for (const copy of page.events) last = copy.revision;
      for (const e of replayCandidates(page.events, replayedDone, known)) {
        events.push(e);
        bytes += eventBytes(e);
      }
      if (page.endOfStream || page.events.length === 0) break;
      revision = page.nextRevision;
    }
    if (last < this.from) return undefined;
    return { events, end: last + 1 };
  }

  /** The replay up to `end` is over; `skipped` of those copies were counted done already. */
  replayFinished(end: number, skipped: number): void {
    this.count = Math.max(0, this.count - (end - this.from) + skipped);
    this.from = end;
  }
}
