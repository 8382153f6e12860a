/**
 * Checkpoints: `{base}-checkpoint` holds `Checkpoint {point, position, acksFrom, next?}`: every
 * event up to `point` (a revision, or a position for $all) is done; acknowledgements of later
 * events are in the acks stream from revision `acksFrom`. `next` ($all): the read had scanned
 * on to this record start (point = position = next - 1) and resumes there. A checkpoint never
 * passes an event not done.
 * The decisions here are pure; `readCheckpoint` reads the stream.
 */
import type { StreamStore } from "../streams/types.js";
import {
  checkpointStream,
  parseJson,
  streamEnd,
  type Entry,
  type GroupKey,
  type ReadPoint,
} from "./common.js";

export interface CheckpointSettings {
  readonly checkpointAfterMs: number;
  readonly minCheckpointCount: number;
  readonly maxCheckpointCount: number;
}

/**
 * The group's last durable checkpoint, where its acks start, and the checkpoint stream's last
 * revision (-1: none).
 */
export async function readCheckpoint(
  store: StreamStore,
  key: GroupKey,
): Promise<{ checkpoint: ReadPoint | undefined; acksFrom: number; last: number }> {
  const { event: cp, last } = await streamEnd(store, checkpointStream(key));
  const data = cp ? parseJson(cp.data) : undefined;
  if (!cp || typeof data !== "object" || data === null)
    return { checkpoint: undefined, acksFrom: 0, last };
  const { point, position, acksFrom, next } = data as {
    point?: number;
    position?: number;
    acksFrom?: number;
    next?: number;
  };
  return {
    checkpoint:
      Number.isSafeInteger(point) && Number.isSafeInteger(position)
        ? {
            point: point as number,
            position: position as number,
            ...(Number.isSafeInteger(next) && { next: next as number }),
          }
        : undefined,
    acksFrom: Number(acksFrom ?? 0),
    last,
  };
}

/**
 * The checkpoint candidate: the point read just before the first event not yet done (`first`,
 * the lowest of them), or the last read when every event read is done.
 */
export function checkpointCandidate(first: Entry | undefined, lastRead: ReadPoint): ReadPoint {
  if (first) {
    const { prevPoint: point, prevPosition: position, prevNext: next } = first;
    return { point, position, ...(next !== undefined && { next }) };
  }
  return lastRead;
}

/** When the next checkpoint is written. */
export class CheckpointClock {
  /** The last durable checkpoint. */
  checkpoint: ReadPoint | undefined;
  /** Events done since the last checkpoint. */
  doneSince = 0;
  lastMs = 0;

  /**
   * What to do about `candidate` at `nowMs`: "write" it, "wait" (a checkpoint is owed but
   * not due; try again after `checkpointAfterMs`), or "none" (it would not move forward).
   */
  decide(
    candidate: ReadPoint,
    settings: CheckpointSettings,
    nowMs: number,
    force: boolean,
  ): "write" | "wait" | "none" {
    if (candidate.position < 0 || (this.checkpoint && candidate.point <= this.checkpoint.point))
      return "none";
    // Only records of system streams were read past (the group's own writes among them):
    // nothing to write, and no timer to keep.
    if (this.doneSince === 0 && !force) return "none";
    const due =
      force ||
      this.doneSince >= settings.maxCheckpointCount ||
      (this.doneSince >= settings.minCheckpointCount &&
        nowMs - this.lastMs >= settings.checkpointAfterMs);
    return due ? "write" : "wait";
  }

  /** A checkpoint at `cp` is durable; `counted` events were done when it was decided. */
  written(cp: ReadPoint, counted: number, nowMs: number): void {
    this.checkpoint = cp;
    this.doneSince = Math.max(0, this.doneSince - counted);
    this.lastMs = nowMs;
  }
}
