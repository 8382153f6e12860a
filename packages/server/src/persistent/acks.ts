/**
 * Ack durability: the group's acks stream `{base}-acks`. Events done (acknowledged, skipped or
 * parked) beyond the checkpoint are written there in batches, one `Acked` record per batch:
 *
 *   Acked { positions, replayed?, delayed? }
 *
 * - `positions`: events done; a new leader skips them, so an acknowledged event never comes back;
 * - `replayed`: revisions of parked copies whose replay is done;
 * - `delayed`: `{position, dueMs, retryCount}` of events nacked "retry" with a delay, so a new
 *   leader redelivers them no sooner than their due time, with their retry count.
 *
 * `AckLog` keeps the batch being gathered, the records the checkpoint has not passed yet, and
 * what the stream says about events not read yet. Its bookkeeping is pure; `load` reads the stream.
 */
import { StoreError, type StreamStore } from "../streams/types.js";
import { acksStream, parseJson, type Consumer, type Entry, type GroupKey } from "./common.js";

/** Largest number of positions in one acks record. */
export const MAX_ACKS_PER_RECORD = 8_192;

/** A delayed retry as recorded. */
export interface DelayRecord {
  readonly position: number;
  /** Wall-clock ms (the leader's clock) before which the event is not handed out again. */
  readonly dueMs: number;
  /** The retry count the event is redelivered with. */
  readonly retryCount: number;
}

/** What one flush writes and whom it confirms. */
export interface AckBatch {
  readonly positions: number[];
  readonly entries: Entry[];
  /** Consumers to tell, with the positions they acked or nacked. */
  readonly waiters: Map<Consumer, number[]>;
  readonly delayed: { entry: Entry; record: DelayRecord; delayMs: number }[];
}

function emptyBatch(): AckBatch {
  return { positions: [], entries: [], waiters: new Map(), delayed: [] };
}

interface AckRecord {
  readonly revision: number;
  /** The highest position the record names (done or delayed). */
  readonly maxPosition: number;
  readonly replayed: boolean;
}

export class AckLog {
  #batch: AckBatch = emptyBatch();
  /** Acks records not yet passed by the checkpoint. */
  readonly #records: AckRecord[] = [];
  #nextRevision = 0;
  /**
   * Revisions of parked copies (at or after the replay cursor) whose replay is durably done:
   * a replay interrupted by a leader change (or an update) never offers them again.
   */
  readonly replayedDone = new Set<number>();
  /** Positions beyond the read cursor already done (from the acks stream, or acked early). */
  readonly #doneAhead = new Set<number>();
  /** Delayed retries recorded by a previous run, by position, until their events are read. */
  readonly #delays = new Map<number, DelayRecord>();

  /**
   * Reads the acks stream from revision `acksFrom`: positions done beyond `checkpointPosition`,
   * replays done at or after `parkedFrom`, and delayed retries.
   */
  async load(
    store: StreamStore,
    key: GroupKey,
    acksFrom: number,
    checkpointPosition: number,
    parkedFrom: number,
  ): Promise<void> {
    let revision = acksFrom;
    for (;;) {
      let page;
      try {
        page = await store.readStream(acksStream(key), {
          direction: "forwards",
          fromRevision: revision,
          maxCount: 512,
        });
      } catch (err) {
        if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") break;
        throw err;
      }
      for (const e of page.events) {
        const body = parseJson(e.data);
        this.loadRecord(e.revision, body, checkpointPosition, parkedFrom);
      }
      this.#nextRevision = page.lastRevision + 1;
      if (page.endOfStream) break;
      revision = page.nextRevision;
    }
  }

  /** Takes in one record of the acks stream (in revision order). */
  loadRecord(
    revision: number,
    body: unknown,
    checkpointPosition: number,
    parkedFrom: number,
  ): void {
    const b = body as { positions?: unknown; replayed?: unknown; delayed?: unknown } | undefined;
    let max = -1;
    if (Array.isArray(b?.positions)) {
      for (const p of b.positions) {
        if (typeof p !== "number") continue;
        max = Math.max(max, p);
        if (p > checkpointPosition) {
          this.#doneAhead.add(p);
          this.#delays.delete(p);
        }
      }
    }
    if (Array.isArray(b?.delayed)) {
      for (const d of b.delayed as unknown[]) {
        const { position, dueMs, retryCount } = (d ?? {}) as Partial<Record<string, unknown>>;
        if (
          typeof position !== "number" ||
          typeof dueMs !== "number" ||
          typeof retryCount !== "number"
        )
          continue;
        max = Math.max(max, position);
        if (position > checkpointPosition && !this.#doneAhead.has(position))
          this.#delays.set(position, { position, dueMs, retryCount });
      }
    }
    let replayed = false;
    if (Array.isArray(b?.replayed)) {
      for (const r of b.replayed) {
        if (typeof r !== "number" || r < parkedFrom) continue;
        this.replayedDone.add(r);
        replayed = true;
      }
    }
    this.#records.push({ revision, maxPosition: max, replayed });
    this.#nextRevision = revision + 1;
  }

  // ---------------------------------------------------------------- done ahead of the read

  isDoneAhead(position: number): boolean {
    return this.#doneAhead.has(position);
  }

  markDoneAhead(position: number): void {
    this.#doneAhead.add(position);
  }

  /** The event at `position` was read: true when it was done before (skip it). */
  takeDoneAhead(position: number): boolean {
    return this.#doneAhead.delete(position);
  }

  /** The delayed retry a previous run recorded for the event at `position`, taken out. */
  takeDelay(position: number): DelayRecord | undefined {
    const d = this.#delays.get(position);
    if (d) this.#delays.delete(position);
    return d;
  }

  /** The read passed `position`: recorded delays of positions before it were not events of the source. */
  forgetDelaysBefore(position: number): void {
    if (this.#delays.size === 0) return;
    for (const p of this.#delays.keys()) if (p < position) this.#delays.delete(p);
  }

  // ---------------------------------------------------------------- the batch

  /** `position` is done; `entry` leaves memory and `waiter` hears of it once that is durable. */
  add(position: number, entry: Entry | undefined, waiter: Consumer | undefined): void {
    const b = this.#batch;
    b.positions.push(position);
    if (entry) b.entries.push(entry);
    if (waiter) this.#addWaiter(waiter, position);
  }

  /** A delayed retry of `entry`, recorded with its due time; `waiter` hears once it is durable. */
  addDelay(entry: Entry, record: DelayRecord, delayMs: number, waiter: Consumer): void {
    this.#batch.delayed.push({ entry, record, delayMs });
    this.#addWaiter(waiter, record.position);
  }

  #addWaiter(waiter: Consumer, position: number): void {
    let list = this.#batch.waiters.get(waiter);
    if (!list) this.#batch.waiters.set(waiter, (list = []));
    list.push(position);
  }

  get hasBatch(): boolean {
    return this.#batch.positions.length > 0 || this.#batch.delayed.length > 0;
  }

  /** Takes the batch gathered so far (to write it); a new one starts. */
  takeBatch(): AckBatch {
    const b = this.#batch;
    this.#batch = emptyBatch();
    return b;
  }

  /** The body of the record that makes `batch` durable. */
  static recordOf(batch: AckBatch): {
    positions: number[];
    replayed?: number[];
    delayed?: DelayRecord[];
  } {
    // Replayed parked events are named by their parked copies too: their positions are
    // behind the checkpoint, so only this tells a new leader their replay is done.
    const replayed = batch.entries.filter((e) => e.replay).map((e) => e.parkedRevision);
    return {
      positions: batch.positions,
      ...(replayed.length > 0 && { replayed }),
      ...(batch.delayed.length > 0 && { delayed: batch.delayed.map((d) => d.record) }),
    };
  }

  /**
   * The record of `batch` is committed at `revision`. Returns how many replayed parked copies
   * became done by it.
   */
  written(batch: AckBatch, revision: number, parkedFrom: number): number {
    const body = AckLog.recordOf(batch);
    let max = -1;
    for (const p of batch.positions) max = Math.max(max, p);
    for (const d of batch.delayed) max = Math.max(max, d.record.position);
    let newlyReplayed = 0;
    for (const r of body.replayed ?? []) {
      if (r < parkedFrom || this.replayedDone.has(r)) continue;
      this.replayedDone.add(r);
      newlyReplayed++;
    }
    this.#records.push({
      revision,
      maxPosition: max,
      replayed: (body.replayed?.length ?? 0) > 0,
    });
    this.#nextRevision = revision + 1;
    return newlyReplayed;
  }

  // ---------------------------------------------------------------- checkpoints

  /**
   * A checkpoint at `position` is being written: drops the records it passes (every position
   * they name is at or before it). Returns the replayed revisions to write again after it
   * (when a dropped record named some and the replay is unfinished), else undefined.
   */
  passCheckpoint(position: number): number[] | undefined {
    let dropsReplayed = false;
    while (this.#records.length > 0 && (this.#records[0] as AckRecord).maxPosition <= position) {
      if (this.#records.shift()?.replayed === true) dropsReplayed = true;
    }
    return dropsReplayed && this.replayedDone.size > 0
      ? [...this.replayedDone].sort((a, b) => a - b)
      : undefined;
  }

  /** The record carrying replayed revisions again is committed at `revision`. */
  carried(revision: number): void {
    this.#records.push({ revision, maxPosition: -1, replayed: true });
    this.#nextRevision = revision + 1;
  }

  /** The acks stream's last revision as loaded and written since (-1: none). */
  get lastRevision(): number {
    return this.#nextRevision - 1;
  }

  /** Where the acks stream starts to matter: the first record the checkpoint has not passed. */
  get acksFrom(): number {
    return this.#records[0]?.revision ?? this.#nextRevision;
  }

  /** A checkpoint at `position` is durable: what is done ahead up to it need not be remembered. */
  checkpointed(position: number): void {
    for (const p of this.#doneAhead) if (p <= position) this.#doneAhead.delete(p);
  }

  /** Replays before the parked stream's new start are over: forgets those revisions; returns how many. */
  replayFinished(end: number): number {
    let n = 0;
    for (const r of this.replayedDone) {
      if (r >= end) continue;
      this.replayedDone.delete(r);
      n++;
    }
    return n;
  }
}
