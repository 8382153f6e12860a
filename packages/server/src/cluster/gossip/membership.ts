/**
 * The membership model: pure, no I/O, no timers; every call takes the local monotonic time.
 *
 * Rules (see README.md):
 * - one entry per instanceId, other than this node (its own record always comes from itself:
 *   records naming `selfId` are ignored);
 * - an incoming record replaces ours only when its `timestampMs` (the owner's clock) is higher;
 *   equal or lower is ignored. Timestamps only order one member's own records: they are never
 *   compared with the local clock;
 * - liveness uses the local clock only: an entry is refreshed (`lastHeardMs = now`) by a
 *   *direct* record (the document's `sender` is that member) or by a fresher record that the
 *   relaying node still believes alive. An entry not refreshed for `deadAfterMs` is dead; one not
 *   refreshed for `removeAfterMs` is removed and leaves a tombstone (its last timestamp) for
 *   another `removeAfterMs`, so other nodes' stale copies cannot resurrect it. Direct gossip
 *   always brings a member back;
 * - a member first learned from a relay takes the relay's opinion of its liveness (a relay that
 *   says "dead" starts it dead; it is not resurrected by a stranger's old record).
 */
import type { Endpoint } from "../../node-types.js";
import type { IncomingMember, MemberRecord } from "./wire.js";

export interface MembershipOptions {
  /** This node's instanceId: records about it from others are ignored. */
  readonly selfId: string;
  readonly deadAfterMs: number;
  readonly removeAfterMs: number;
}

/** A member as this node sees it. */
export interface MemberEntry {
  readonly record: MemberRecord;
  readonly isAlive: boolean;
  /** Local monotonic time of the last refresh (direct, or a fresher record via others). */
  readonly lastHeardMs: number;
  /** Local monotonic time of the last record received straight from the member, if any. */
  readonly lastDirectMs: number | undefined;
}

export interface MergeInput {
  readonly members: readonly IncomingMember[];
  /** instanceId of the node that produced the document (its own record is "direct"). */
  readonly sender: string | undefined;
}

interface Tombstone {
  readonly timestampMs: number;
  readonly untilMs: number;
}

/** True when a change matters to the node (roles, liveness, where members are). */
export function significantChange(a: MemberRecord, b: MemberRecord): boolean {
  return (
    a.state !== b.state ||
    a.epochNumber !== b.epochNumber ||
    a.epochId !== b.epochId ||
    a.nodePriority !== b.nodePriority ||
    a.isReadOnlyReplica !== b.isReadOnlyReplica ||
    !sameEndpoint(a.internalTcp, b.internalTcp) ||
    !sameEndpoint(a.externalTcp, b.externalTcp) ||
    !sameEndpoint(a.internalHttp, b.internalHttp) ||
    !sameEndpoint(a.externalHttp, b.externalHttp)
  );
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.host === b.host && a.port === b.port;
}

export class Membership {
  private readonly entries = new Map<string, MemberEntry>();
  private readonly tombstones = new Map<string, Tombstone>();

  constructor(private readonly options: MembershipOptions) {
    if (!(options.deadAfterMs > 0) || !(options.removeAfterMs > options.deadAfterMs))
      throw new RangeError("need 0 < deadAfterMs < removeAfterMs");
  }

  get selfId(): string {
    return this.options.selfId;
  }

  /** Merges a validated document. Returns true when something significant changed. */
  merge(input: MergeInput, nowMs: number): boolean {
    let changed = false;
    for (const incoming of input.members) {
      if (this.mergeOne(incoming, input.sender === incoming.record.instanceId, nowMs))
        changed = true;
    }
    return changed;
  }

  private mergeOne({ record, isAlive }: IncomingMember, direct: boolean, nowMs: number): boolean {
    const id = record.instanceId;
    if (id === this.options.selfId) return false;
    const tomb = this.tombstones.get(id);
    if (tomb) {
      if (!direct && record.timestampMs <= tomb.timestampMs) return false;
      this.tombstones.delete(id);
    }
    const existing = this.entries.get(id);
    const refresh = direct || isAlive;
    if (!existing) {
      this.entries.set(id, {
        record,
        isAlive: refresh,
        // A member first heard of as dead counts as last heard `deadAfterMs` ago.
        lastHeardMs: refresh ? nowMs : nowMs - this.options.deadAfterMs,
        lastDirectMs: direct ? nowMs : undefined,
      });
      return true;
    }
    const fresher = record.timestampMs > existing.record.timestampMs;
    if (!fresher && !direct) return false;
    const next: MemberEntry = {
      record: fresher ? record : existing.record,
      isAlive: refresh ? true : existing.isAlive,
      lastHeardMs: refresh ? nowMs : existing.lastHeardMs,
      lastDirectMs: direct ? nowMs : existing.lastDirectMs,
    };
    this.entries.set(id, next);
    return next.isAlive !== existing.isAlive || significantChange(existing.record, next.record);
  }

  /** Applies the clock: marks dead, removes, expires tombstones. True when something changed. */
  sweep(nowMs: number): boolean {
    let changed = false;
    for (const [id, entry] of this.entries) {
      const silentMs = nowMs - entry.lastHeardMs;
      if (silentMs >= this.options.removeAfterMs) {
        this.entries.delete(id);
        this.tombstones.set(id, {
          timestampMs: entry.record.timestampMs,
          untilMs: nowMs + this.options.removeAfterMs,
        });
        changed = true;
      } else if (entry.isAlive && silentMs >= this.options.deadAfterMs) {
        this.entries.set(id, { ...entry, isAlive: false });
        changed = true;
      }
    }
    for (const [id, tomb] of this.tombstones) if (nowMs >= tomb.untilMs) this.tombstones.delete(id);
    return changed;
  }

  get(instanceId: string): MemberEntry | undefined {
    return this.entries.get(instanceId);
  }

  /** Every other member, ordered by instanceId. */
  members(): MemberEntry[] {
    return [...this.entries.values()].sort((a, b) =>
      a.record.instanceId < b.record.instanceId
        ? -1
        : a.record.instanceId > b.record.instanceId
          ? 1
          : 0,
    );
  }

  get size(): number {
    return this.entries.size;
  }
}
