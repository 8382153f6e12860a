/** An in-memory log of records at byte-like positions, implementing the core's LogView. */
import { ORIGIN, type LogPoint, type LogRecord, type LogView } from "../core/types.js";

export class MemLog<P> implements LogView<P> {
  private readonly records: LogRecord<P>[];
  private readonly ends: number[];
  /** Everything below this position is durable; maintained by the owner (the disk). */
  durable = 0;

  constructor(records: readonly LogRecord<P>[] = []) {
    this.records = [...records];
    this.ends = this.records.map((r) => r.position + r.length);
  }

  get size(): number {
    return this.records.length;
  }

  all(): readonly LogRecord<P>[] {
    return this.records;
  }

  end(): number {
    return this.ends[this.ends.length - 1] ?? 0;
  }

  lastPoint(): LogPoint {
    const last = this.records[this.records.length - 1];
    return last ? { epoch: last.epoch, position: last.position + last.length } : ORIGIN;
  }

  /** Index of the record ending at `position`, or -1. */
  indexEndingAt(position: number): number {
    let lo = 0;
    let hi = this.ends.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.ends[mid] ?? 0;
      if (e === position) return mid;
      if (e < position) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Number of records ending at or before `position`. */
  countEndingAtOrBefore(position: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.ends[mid] ?? 0) <= position) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  recordEndingAt(position: number): LogRecord<P> | undefined {
    const i = this.indexEndingAt(position);
    return i < 0 ? undefined : this.records[i];
  }

  epochAt(position: number): number | undefined {
    if (position === 0) return 0;
    const i = this.indexEndingAt(position);
    return i < 0 ? undefined : this.records[i]?.epoch;
  }

  lastPointAtOrBefore(epoch: number, position: number): LogPoint {
    // Epochs never decrease along a log: binary-search the last record within `position`
    // whose epoch is <= `epoch`.
    let lo = 0;
    let hi = this.countEndingAtOrBefore(position);
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.records[mid]?.epoch ?? 0) <= epoch) lo = mid + 1;
      else hi = mid;
    }
    const r = this.records[lo - 1];
    return r ? { epoch: r.epoch, position: r.position + r.length } : ORIGIN;
  }

  read(fromPosition: number, maxBytes: number): readonly LogRecord<P>[] {
    const start = fromPosition === 0 ? 0 : this.indexEndingAt(fromPosition) + 1;
    if (start === 0 && fromPosition !== 0) return [];
    const out: LogRecord<P>[] = [];
    let bytes = 0;
    for (let i = start; i < this.records.length && (out.length === 0 || bytes < maxBytes); i++) {
      const r = this.records[i];
      if (r === undefined) break;
      out.push(r);
      bytes += r.length;
    }
    return out;
  }

  durableEnd(): number {
    return this.durable;
  }

  append(records: readonly LogRecord<P>[]): void {
    for (const r of records) {
      if (r.position !== this.end()) {
        throw new Error(`append at ${r.position} but the log ends at ${this.end()}`);
      }
      if (!(r.length > 0)) throw new Error("record length must be positive");
      const prev = this.records[this.records.length - 1];
      if (prev && prev.epoch > r.epoch) throw new Error("epochs must not decrease along a log");
      this.records.push(r);
      this.ends.push(r.position + r.length);
    }
  }

  truncate(position: number): void {
    const keep = this.countEndingAtOrBefore(position);
    if (position !== 0 && this.ends[keep - 1] !== position) {
      throw new Error(`truncate at ${position}: not a record boundary`);
    }
    this.records.length = keep;
    this.ends.length = keep;
    this.durable = Math.min(this.durable, position);
  }
}
