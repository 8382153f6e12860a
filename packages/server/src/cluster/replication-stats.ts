/**
 * What a leader measures of its replication, for the metrics: the round trip of each
 * replication message (an Append carrying records, until the follower reports those records
 * durable) and, per follower, how far behind it is in bytes and in time.
 *
 * Cheap by construction: fixed typed-array rings allocated once per follower and per term;
 * one call per replication message sent or acknowledgement received, never per event. The
 * lag is computed only when asked (a scrape).
 */
import type { NodeId } from "./core/types.js";
import type { FollowerLag } from "../node-types.js";

/** Replication messages timed per follower at once; sends past this are not timed. */
export const MAX_TIMED_SENDS = 1024;
/** Points of the leader's write timeline kept (older ones are merged, not dropped). */
export const TIMELINE_POINTS = 4096;
/** Writes within this many ms of the timeline's last point extend it. */
const TIMELINE_RESOLUTION_MS = 1;

/** One follower's replication lag as its leader sees it. */
class FollowerTrack {
  /** End positions and send times of the Appends not acknowledged yet, oldest first. */
  readonly ends = new Float64Array(MAX_TIMED_SENDS);
  readonly times = new Float64Array(MAX_TIMED_SENDS);
  head = 0;
  size = 0;
  /** The highest position the follower acknowledged as durable in this term. */
  acked = 0;
}

export class ReplicationStats {
  #leading = false;
  /** When this node began leading; stands in for the write time of what it had then. */
  #sinceMs = 0;
  readonly #followers = new Map<NodeId, FollowerTrack>();
  /**
   * The leader's writes: bytes in (ends[i-1], ends[i]] were written at or after times[i]
   * (ends[-1] is `#timelineStart`). Oldest first, in a ring.
   */
  readonly #ends = new Float64Array(TIMELINE_POINTS);
  readonly #times = new Float64Array(TIMELINE_POINTS);
  #head = 0;
  #size = 0;
  /** Below here write times are not kept (written before this node led, or dropped). */
  #timelineStart = 0;

  constructor(private readonly onRoundTrip?: (seconds: number) => void) {}

  /** This node became leader, with its log ending at `end`. */
  startLeading(end: number, nowMs: number): void {
    this.#leading = true;
    this.#sinceMs = nowMs;
    this.#followers.clear();
    this.#head = 0;
    this.#size = 0;
    this.#timelineStart = end;
  }

  stopLeading(): void {
    this.#leading = false;
    this.#followers.clear();
    this.#size = 0;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** The leader's log grew to `end` (a proposal or its EPOCH record). */
  wrote(end: number, nowMs: number): void {
    if (!this.#leading) return;
    if (this.#size > 0) {
      const last = this.#index(this.#size - 1);
      if (end <= this.#ends[last]!) return;
      if (nowMs - this.#times[last]! < TIMELINE_RESOLUTION_MS) {
        this.#ends[last] = end;
        return;
      }
    } else if (end <= this.#timelineStart) {
      return;
    }
    if (this.#size === TIMELINE_POINTS) this.#compact();
    const i = this.#index(this.#size);
    this.#ends[i] = end;
    this.#times[i] = nowMs;
    this.#size++;
  }

  /** An Append carrying records up to `end` went to `peer`. */
  sent(peer: NodeId, end: number, nowMs: number): void {
    if (!this.#leading) return;
    const f = this.#track(peer);
    if (f.size > 0 && end <= f.ends[(f.head + f.size - 1) % MAX_TIMED_SENDS]!) return; // a resend
    if (f.size === MAX_TIMED_SENDS || end <= f.acked) return;
    const i = (f.head + f.size) % MAX_TIMED_SENDS;
    f.ends[i] = end;
    f.times[i] = nowMs;
    f.size++;
  }

  /**
   * `peer` acknowledged its log as durable up to `durableEnd` (a successful AppendReply of
   * this term): each timed Append it covers gives one round trip.
   */
  acked(peer: NodeId, durableEnd: number, nowMs: number): void {
    if (!this.#leading) return;
    const f = this.#track(peer);
    if (durableEnd > f.acked) f.acked = durableEnd;
    while (f.size > 0 && f.ends[f.head]! <= durableEnd) {
      this.onRoundTrip?.(Math.max(0, nowMs - f.times[f.head]!) / 1000);
      f.head = (f.head + 1) % MAX_TIMED_SENDS;
      f.size--;
    }
  }

  /**
   * The lag of each of `followers` behind a log ending at `leaderEnd`; forgets followers not
   * listed (members that left). A follower not heard from in this term counts from position 0
   * and from when this node began leading.
   */
  lag(followers: readonly NodeId[], leaderEnd: number, nowMs: number): FollowerLag[] {
    if (!this.#leading) return [];
    for (const id of [...this.#followers.keys()]) {
      if (!followers.includes(id)) this.#followers.delete(id);
    }
    return followers.map((follower) => {
      const acked = this.#followers.get(follower)?.acked ?? 0;
      if (acked >= leaderEnd) return { follower, bytes: 0, ms: 0 };
      return {
        follower,
        bytes: leaderEnd - acked,
        ms: Math.max(0, nowMs - this.#writtenAt(acked, nowMs)),
      };
    });
  }

  /**
   * When the first byte past `position` was written. Bytes below the timeline's start were
   * written before this node led or were dropped once every follower had them; both count from
   * when this node began leading. `nowMs` when no write past `position` is known.
   */
  #writtenAt(position: number, nowMs: number): number {
    if (position < this.#timelineStart) return this.#sinceMs;
    // The first point whose end is past `position`.
    let lo = 0;
    let hi = this.#size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ends[this.#index(mid)]! <= position) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.#size ? this.#times[this.#index(lo)]! : nowMs;
  }

  #track(peer: NodeId): FollowerTrack {
    let f = this.#followers.get(peer);
    if (f === undefined) {
      f = new FollowerTrack();
      this.#followers.set(peer, f);
    }
    return f;
  }

  #index(i: number): number {
    return (this.#head + i) % TIMELINE_POINTS;
  }

  /**
   * Makes room: drops the points every follower has acknowledged, and if that frees less than
   * half, merges neighbours (the merged range takes the earlier time, so the lag in ms is
   * over- rather than underestimated, by at most the points' spacing).
   */
  #compact(): void {
    let minAcked = Number.POSITIVE_INFINITY;
    for (const f of this.#followers.values()) minAcked = Math.min(minAcked, f.acked);
    if (this.#followers.size === 0) minAcked = 0;
    while (this.#size > 0 && this.#ends[this.#head]! <= minAcked) {
      this.#timelineStart = this.#ends[this.#head]!;
      this.#head = (this.#head + 1) % TIMELINE_POINTS;
      this.#size--;
    }
    if (this.#size > TIMELINE_POINTS / 2) {
      let out = 0;
      for (let i = 0; i < this.#size; i += 2) {
        const a = this.#index(i);
        const b = i + 1 < this.#size ? this.#index(i + 1) : a;
        const end = this.#ends[b]!;
        const time = this.#times[a]!;
        const o = this.#index(out);
        this.#ends[o] = end;
        this.#times[o] = time;
        out++;
      }
      this.#size = out;
    }
  }
}
