/**
 * The consensus core's view of a node's storage: `LogView<Buffer>` over a `ReplicatedLog`
 * (storage/replicated-log.ts), and the application of the core's storage effects (`append`,
 * `truncate`, `persist`, `commit`).
 *
 * A core record is one atomic batch of the store (an append's events, a tombstone, or an EPOCH
 * record): its payload is the batch's raw record bytes, its position the batch's start. Commit
 * and truncation points are therefore batch ends, which is what the store's
 * `isRecordBoundary` checks.
 */
import { randomUUID } from "node:crypto";
import { isTruncatedError, type ReplicatedLog } from "../storage/replicated-log.js";
import { encodeEpoch, epochNumberAt } from "../storage/record.js";
import {
  ORIGIN,
  type Effect,
  type LogPoint,
  type LogRecord,
  type LogView,
  type NewRecord,
  type NodeId,
} from "./core/types.js";
import { joinPayloads } from "./transport/messages.js";

export class StoreLogView implements LogView<Buffer> {
  constructor(private readonly store: ReplicatedLog) {}

  lastPoint(): LogPoint {
    const position = this.store.endPosition;
    return position === 0 ? ORIGIN : { epoch: this.store.lastEpoch, position };
  }

  epochAt(position: number): number | undefined {
    if (position === 0) return 0;
    if (!this.store.isRecordBoundary(position)) return undefined;
    // The record ending at `position` starts before it: the last EPOCH record at or before
    // position - 1 is its epoch.
    return this.store.epochAt(position - 1);
  }

  lastPointAtOrBefore(epoch: number, position: number): LogPoint {
    const epochs = this.store.epochs();
    let limit = Math.min(position, this.store.endPosition);
    // Records from the first epoch above `epoch` on are excluded; its EPOCH record starts at a
    // boundary that ends the previous epoch's records.
    const newer = epochs.find((e) => e.epochNumber > epoch);
    if (newer !== undefined && newer.position < limit) limit = newer.position;
    const p = this.store.lastBoundaryAtOrBefore(limit);
    return p === 0 ? ORIGIN : { epoch: this.store.epochAt(p - 1), position: p };
  }

  read(fromPosition: number, maxBytes: number): readonly LogRecord<Buffer>[] {
    if (!this.store.isRecordBoundary(fromPosition)) return [];
    const { bytes, batchEnds } = this.store.readRaw(fromPosition, maxBytes);
    const out: LogRecord<Buffer>[] = [];
    let start = fromPosition;
    for (const end of batchEnds) {
      const payload = bytes.subarray(start - fromPosition, end - fromPosition);
      out.push({
        epoch: this.store.epochAt(start),
        position: start,
        length: end - start,
        kind: epochNumberAt(payload) === undefined ? "data" : "epoch",
        payload,
      });
      start = end;
    }
    return out;
  }

  durableEnd(): number {
    return this.store.durableEnd;
  }
}

/**
 * `CoreConfig.epochRecord` for the node: an EPOCH record (a batch of its own) with a fresh
 * epoch id, built once by the new leader and replicated as is.
 */
export function epochRecord(epoch: number, leaderId: NodeId): NewRecord<Buffer> {
  const payload = encodeEpoch({
    epochNumber: epoch,
    epochId: randomUUID(),
    leaderInstanceId: leaderId,
  });
  return { length: payload.length, payload };
}

export interface ApplyHooks {
  /** Effects that are not storage effects (`send`, `roleChanged`), performed in order. */
  other?: (effect: Effect<Buffer>) => void | Promise<void>;
  /** An appended batch failed to commit for a reason other than being truncated. */
  onAppendError?: (err: unknown) => void;
  /**
   * The appended records' CRCs were verified already (a node's records come from its own
   * encoder or from `splitRecords`, which checks every record it receives): the store does not
   * compute them again.
   */
  crcVerified?: boolean;
}

/**
 * Performs the core's effects in order: `append` -> store.appendRaw (reserved at once, so the
 * view reflects it before the next input; durability is reported through store.onDurable),
 * `truncate` -> store.truncate (awaited), `persist` -> store.writeHardState (awaited: a
 * barrier before any later effect), `commit` -> store.setCommitPosition. Other effects go to
 * `hooks.other`. Append records must continue the log and carry the epoch they will have in it.
 */
export async function applyEffects(
  store: ReplicatedLog,
  effects: readonly Effect<Buffer>[],
  hooks: ApplyHooks = {},
): Promise<void> {
  for (const effect of effects) {
    switch (effect.type) {
      case "append":
        appendRecords(store, effect.records, hooks);
        break;
      case "truncate":
        await store.truncate(effect.position);
        break;
      case "persist":
        await store.writeHardState(effect.state);
        break;
      case "commit":
        store.setCommitPosition(effect.position);
        break;
      default:
        await hooks.other?.(effect);
    }
  }
}

function appendRecords(
  store: ReplicatedLog,
  records: readonly LogRecord<Buffer>[],
  hooks: ApplyHooks,
): void {
  const first = records[0];
  if (first === undefined) return;
  let position = first.position;
  let epoch = store.lastEpoch;
  for (const r of records) {
    if (r.position !== position)
      throw new Error(
        `append: record at ${r.position}, expected ${position} (records not contiguous)`,
      );
    if (r.payload.length !== r.length)
      throw new Error(
        `append: record at ${r.position} has ${r.payload.length} bytes, not ${r.length}`,
      );
    const startsEpoch = epochNumberAt(r.payload);
    if ((startsEpoch !== undefined) !== (r.kind === "epoch"))
      throw new Error(
        `append: record at ${r.position} is of kind ${r.kind} but its bytes disagree`,
      );
    if (startsEpoch !== undefined) epoch = startsEpoch;
    if (r.epoch !== epoch)
      throw new Error(
        `append: record at ${r.position} claims epoch ${r.epoch}, the log gives ${epoch}`,
      );
    position += r.length;
  }
  const bytes = joinPayloads(records);
  store.appendRaw(first.position, bytes, hooks.crcVerified === true).catch((err: unknown) => {
    if (isTruncatedError(err)) return;
    hooks.onAppendError?.(err);
  });
}
