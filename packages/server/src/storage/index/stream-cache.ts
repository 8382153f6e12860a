/**
 * The index in memory: a bounded working set of stream states over the persisted index
 * (`LogIndex`), plus what the persisted index does not hold yet (committed stream changes,
 * event ids, epochs), written to it in batches in the background.
 *
 * A stream state has two views: the write view (w*: includes appends still queued or not yet
 * committed, used for expected-version checks) and the committed view (what readers see). A
 * state is kept while its write view differs from its committed view or its committed view is
 * not persisted yet; any other state may be evicted (CLOCK: a state used since the hand last
 * passed gets a second chance) and is read back from the index when next needed. So memory
 * holds `capacity` states plus those with changes in flight, whatever the number of streams.
 */
import { setImmediate as setImmediatePromise } from "node:timers/promises";
import type { StreamMetadata } from "../../streams/types.js";
import { ABSENT_STREAM, type StreamView } from "../../streams/view.js";
import type { Logger } from "../log.js";
import type { EpochEntry } from "../replicated-log.js";
import type { EventIdHit, IndexedStream, LogIndex } from "./log-index.js";
import { PendingIds } from "./pending-ids.js";

/** One sparse entry every this many revisions. */
export const SPARSE_EVERY = 32;

export const DEFAULT_STREAM_CACHE = 100_000;
/**
 * Ids (or changed streams) per index write at most: what the event loop packs and keeps. The
 * ids of a write become one sorted run file (`id-runs.ts`), so larger writes mean fewer runs
 * to merge; this bounds the memory of one write (about 2 MiB of packed ids).
 */
export const MAX_INDEX_FLUSH_ENTRIES = 65_536;

export const DEFAULT_INDEX_FLUSH_EVERY_MS = 1000;

/** Persisted ids forgotten per turn of the event loop after an index write (about 0.4 ms). */
const DROP_SLICE = 4096;

/** States examined per eviction pass when one is added. */
const EVICT_STEP = 8;

/** A stream's state; as a `StreamView`, its committed view (what readers see). */
export class StreamState implements StreamView {
  // write view
  wLast = -1;
  wLastPos = -1;
  wTombstoned = false;
  wMeta: StreamMetadata | null = null;
  // committed view
  last = -1;
  lastPos = -1;
  tombstoned = false;
  meta: StreamMetadata | null = null;
  /**
   * Positions of revisions k * SPARSE_EVERY held in memory (may run ahead of the committed
   * view). k = 0 (revision 0) is always here when the stream has events; entries 1..
   * `sparsePersisted` may have gone to the index.
   */
  readonly sparse = new Map<number, number>();
  /** Sparse entries 1..this are persisted (or being written). */
  sparsePersisted = 0;
  /** Index writes in flight carrying this state. */
  inFlight = 0;
  /** Used since the eviction hand last passed. */
  used = true;

  constructor(readonly name: string) {}

  static fromIndex(name: string, p: IndexedStream): StreamState {
    const s = new StreamState(name);
    s.last = s.wLast = p.last;
    s.lastPos = s.wLastPos = p.lastPos;
    s.tombstoned = s.wTombstoned = p.tombstoned;
    s.meta = s.wMeta = p.meta;
    if (p.last >= 0 && p.firstPos >= 0) s.sparse.set(0, p.firstPos);
    s.sparsePersisted = p.last >= 0 ? Math.floor(p.last / SPARSE_EVERY) : 0;
    return s;
  }

  /** Nothing pending: the write view is the committed view. */
  get settled(): boolean {
    return (
      this.wLast === this.last &&
      this.wLastPos === this.lastPos &&
      this.wTombstoned === this.tombstoned &&
      this.wMeta === this.meta
    );
  }
}

/**
 * A snapshot of a stream's write view, for the write rules (expected version, idempotency);
 * `ABSENT_STREAM` for a stream the index does not know.
 */
export function writeView(
  s: Pick<StreamState, "wLast" | "wTombstoned" | "wMeta"> | undefined,
): StreamView {
  return s === undefined
    ? ABSENT_STREAM
    : { last: s.wLast, tombstoned: s.wTombstoned, meta: s.wMeta };
}

/** The committed view of a stream, as readers need it. */
export type CommittedStream = Pick<StreamState, "last" | "lastPos" | "tombstoned" | "meta">;

/** What the store tells the cache when it persists: its commit position, totals and epochs. */
export interface CommittedTotals {
  readonly commit: number;
  readonly events: number;
  readonly streams: number;
  readonly epochs: readonly EpochEntry[];
}

export interface StreamCacheOptions {
  /** Stream states kept beyond those with changes in flight (default 100,000). */
  capacity?: number;
  /** Write to the index once this many ids or streams wait (default MAX_INDEX_FLUSH_ENTRIES). */
  flushEntries?: number;
  /** ... or this long after the commit position moved past the index (default 1000). */
  flushEveryMs?: number;
  logger?: Logger;
}

export class StreamCache {
  readonly capacity: number;
  private readonly flushEntryCount: number;
  private readonly flushEveryMs: number;
  private readonly logger: Logger | undefined;
  private states = new Map<string, StreamState>();
  /** Committed changes not handed to the index yet. */
  private dirty = new Set<StreamState>();
  private readonly ids = new PendingIds();
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failedFlushes = 0;
  private active = false;
  private evictQueued = false;
  /** Bumped by `reset`: work of an earlier generation stops. */
  private generation = 0;

  constructor(
    private readonly index: LogIndex,
    private readonly totals: () => CommittedTotals,
    options: StreamCacheOptions = {},
  ) {
    this.capacity = options.capacity ?? DEFAULT_STREAM_CACHE;
    this.flushEntryCount = options.flushEntries ?? MAX_INDEX_FLUSH_ENTRIES;
    this.flushEveryMs = options.flushEveryMs ?? DEFAULT_INDEX_FLUSH_EVERY_MS;
    this.logger = options.logger;
    if (!Number.isSafeInteger(this.capacity) || this.capacity < 1)
      throw new RangeError("stream cache capacity must be an integer >= 1");
    if (options.flushEntries !== undefined && !(options.flushEntries >= 1))
      throw new RangeError("flushEntries must be >= 1");
    if (!(this.flushEveryMs >= 0)) throw new RangeError("flushEveryMs must be >= 0");
  }

  /** Every committed record below this position is in the persisted index. */
  get persistedUpTo(): number {
    return this.index.persistedUpTo;
  }

  /** Stream states held in memory. */
  get size(): number {
    return this.states.size;
  }

  /** Enough waits in memory to be worth a write (a long recovery writes as it goes). */
  get wantsPersist(): boolean {
    const enough = this.flushEntries();
    return this.dirty.size >= enough || this.ids.length >= enough;
  }

  /** Event ids held in memory (not persisted yet). */
  get memoryIds(): number {
    return this.ids.length;
  }

  /** Forgets everything held in memory (a reopen or a rebuild). */
  reset(): void {
    this.stopTimer();
    this.states = new Map();
    this.dirty = new Set();
    this.ids.clear();
    this.generation++;
    this.failedFlushes = 0;
  }

  /** Background writes may run from now on (after recovery). */
  start(): void {
    this.active = true;
  }

  // ---------------------------------------------------------------- streams

  /** The state of `name` (from memory, else read from the index), or undefined. */
  get(name: string): StreamState | undefined {
    const s = this.states.get(name);
    if (s !== undefined) {
      s.used = true;
      return s;
    }
    const p = this.index.stream(name);
    if (p === undefined) return undefined;
    return this.insert(StreamState.fromIndex(name, p));
  }

  /** The state of `name`, created empty when the stream is unknown. */
  getOrCreate(name: string): StreamState {
    return this.get(name) ?? this.insert(new StreamState(name));
  }

  /** The committed view of `name` without keeping it in memory (scans over many streams). */
  peek(name: string): CommittedStream | undefined {
    return this.states.get(name) ?? this.index.stream(name);
  }

  /** Position of revision k * SPARSE_EVERY, when known (committed revisions only). */
  sparseAt(s: StreamState, k: number): number | undefined {
    return s.sparse.get(k) ?? (k >= 1 ? this.index.sparse(s.name, k) : undefined);
  }

  /** `s`'s committed view changed: it is kept until the index has it. */
  committed(s: StreamState): void {
    this.dirty.add(s);
  }

  // ---------------------------------------------------------------- event ids

  /** Where `idKey` was last written: what waits in memory first, then the index. */
  id(idKey: string): EventIdHit | undefined {
    return this.ids.get(idKey) ?? this.index.id(idKey);
  }

  /**
   * Adds an event's id. Positions come in ascending order; one at or below the last position
   * added drops the entries from there on first (the log was cut back).
   */
  addId(idKey: string, position: number, revision: number): void {
    if (position < this.index.persistedUpTo) return;
    this.ids.add(idKey, position, revision);
  }

  /** Forgets ids at or above `position` (never persisted: only committed ids are). */
  truncateIds(position: number): void {
    this.ids.truncate(position);
  }

  // ---------------------------------------------------------------- persisting

  /** The commit position moved: write to the index now or soon. */
  noteCommit(commit: number): void {
    if (!this.active || this.flushing !== null) return;
    const enough = this.flushEntries();
    if (this.dirty.size >= enough || this.ids.countBelow(commit) >= enough) {
      this.flush();
    } else if (this.timer === null && commit > this.index.persistedUpTo) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.flushing === null) this.flush();
      }, this.flushEveryMs);
      this.timer.unref();
    }
  }

  /** Writes everything committed now and waits for it (close; recovery of a long log). */
  async persist(): Promise<void> {
    await this.settle();
    this.flush();
    await this.settle();
  }

  /** Waits for the write in flight (and stops the timer). */
  async settle(): Promise<void> {
    this.stopTimer();
    while (this.flushing !== null) await this.flushing;
  }

  /** Stops writing: waits for the write in flight, writes nothing more (a crash, a close). */
  async stop(): Promise<void> {
    this.active = false;
    await this.settle();
  }

  /** Hands what is committed and not persisted to the index. */
  private flush(): void {
    const totals = this.totals();
    const upTo = totals.commit;
    if (upTo <= this.index.persistedUpTo && this.dirty.size === 0) return;
    const n = this.ids.countBelow(upTo);
    const front = this.ids.front(n);
    const posted = [...this.dirty];
    this.dirty.clear();
    const streams: Array<readonly [string, IndexedStream]> = [];
    const sparse: Array<readonly [string, number, number]> = [];
    const sparseFrom: number[] = [];
    for (const s of posted) {
      s.inFlight++;
      sparseFrom.push(s.sparsePersisted);
      streams.push([
        s.name,
        {
          last: s.last,
          lastPos: s.lastPos,
          firstPos: s.last >= 0 ? (s.sparse.get(0) ?? -1) : -1,
          tombstoned: s.tombstoned,
          meta: s.meta,
        },
      ]);
      const top = s.last >= 0 ? Math.floor(s.last / SPARSE_EVERY) : 0;
      for (let k = s.sparsePersisted + 1; k <= top; k++) {
        const p = s.sparse.get(k);
        if (p !== undefined) sparse.push([s.name, k, p]);
      }
      s.sparsePersisted = Math.max(s.sparsePersisted, top);
    }
    const below = this.index.persistedUpTo;
    this.flushing = this.index
      .write({
        upTo: Math.max(upTo, below),
        events: totals.events,
        streamCount: totals.streams,
        streams,
        sparse,
        ids: front,
        epochs: totals.epochs.filter((e) => e.position >= below && e.position < upTo),
      })
      .then(
        async () => {
          await this.dropPersisted(n);
          this.failedFlushes = 0;
          posted.forEach((s, i) => {
            s.inFlight--;
            // Persisted sparse entries are read from the index from now on.
            for (let k = Math.max(1, (sparseFrom[i] as number) + 1); k <= s.sparsePersisted; k++)
              if (k * SPARSE_EVERY <= s.last) s.sparse.delete(k);
          });
          this.evict(2 * (this.states.size - this.capacity) + EVICT_STEP);
        },
        (err: unknown) => {
          // Derived data: the changes stay in memory and the next write tries again.
          posted.forEach((s, i) => {
            s.inFlight--;
            s.sparsePersisted = Math.min(s.sparsePersisted, sparseFrom[i] as number);
            this.dirty.add(s);
          });
          if (this.failedFlushes++ === 0) this.logger?.warn({ err }, "writing the index failed");
        },
      )
      .finally(() => {
        this.flushing = null;
        if (this.active) this.noteCommit(this.totals().commit);
      });
  }

  private flushEntries(): number {
    return this.flushEntryCount;
  }

  /** Forgets the first `n` pending ids (persisted now), a slice per turn of the event loop. */
  private async dropPersisted(n: number): Promise<void> {
    const generation = this.generation;
    for (let left = n; left > 0 && generation === this.generation;) {
      const k = Math.min(left, DROP_SLICE);
      this.ids.drop(k);
      left -= k;
      if (left > 0) await setImmediatePromise();
    }
  }

  private stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  // ---------------------------------------------------------------- eviction

  private insert(s: StreamState): StreamState {
    this.states.set(s.name, s);
    if (this.states.size > this.capacity && !this.evictQueued) {
      // After the caller's synchronous work: a state it just got is never evicted under it
      // (once it changes the write view, the state is kept until persisted).
      this.evictQueued = true;
      queueMicrotask(() => {
        this.evictQueued = false;
        this.evict(EVICT_STEP * 4);
      });
    }
    return s;
  }

  private evictable(s: StreamState): boolean {
    return s.inFlight === 0 && s.settled && !this.dirty.has(s);
  }

  /** Moves the CLOCK hand over at most `budget` states while there are too many. */
  private evict(budget: number): void {
    for (const [name, s] of this.states) {
      if (budget-- <= 0 || this.states.size <= this.capacity) return;
      this.states.delete(name);
      if (s.used || !this.evictable(s)) {
        s.used = false;
        this.states.set(name, s); // to the back: looked at again after the others
      }
    }
  }
}
