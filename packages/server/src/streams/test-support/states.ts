/** What the rule tables run through (tests only): stream states, expected versions, outcomes. */
import { StoreError, type ExpectedVersion } from "../types.js";
import { ABSENT_STREAM, type StreamView } from "../view.js";

export const STATES = {
  /** Never written. */
  absent: ABSENT_STREAM,
  /** Revisions 0..4. */
  exists: { last: 4, tombstoned: false, meta: null },
  /** Revisions 0..4, then soft-deleted. */
  softDeleted: { last: 4, tombstoned: false, meta: { truncateBefore: 5, $softDeleted: true } },
  /** Soft-deleted after revision 4, then written again (revision 5). */
  recreated: { last: 5, tombstoned: false, meta: { truncateBefore: 5, $softDeleted: true } },
  /** Revisions 0..4, then hard-deleted. */
  tombstoned: { last: 4, tombstoned: true, meta: null },
  /** Metadata written, no event. */
  metadataOnly: { last: -1, tombstoned: false, meta: { maxCount: 3 } },
} satisfies Record<string, StreamView>;

export type StateName = keyof typeof STATES;

export const ANY: ExpectedVersion = { kind: "any" };
export const NO_STREAM: ExpectedVersion = { kind: "no_stream" };
export const STREAM_EXISTS: ExpectedVersion = { kind: "stream_exists" };
export const exact = (revision: number): ExpectedVersion => ({ kind: "exact", revision });

/** A wrong-expected-version decision. */
export const conflict = (streamExists: boolean, actualRevision: number) => ({
  kind: "conflict" as const,
  result: { ok: false as const, wrongExpectedVersion: { streamExists, actualRevision } },
});

/** What `f` returns, or the code of the StoreError it throws. */
export function outcome<T>(f: () => T): T | string {
  try {
    return f();
  } catch (err) {
    if (err instanceof StoreError) return err.code;
    throw err;
  }
}
