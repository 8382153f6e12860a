/**
 * What the stream rules know of a stream: plain data, whatever the backend. The log store
 * passes its committed view (`StreamState` is one) to the read rules and a snapshot of its
 * write view (`writeView(state)`, storage/stream-index.ts) to the write rules; a database
 * backend builds one from its rows.
 */
import type { StreamMetadata } from "./types.js";

export interface StreamView {
  /** Last revision written; -1 when the stream has no events (absent, or metadata only). */
  readonly last: number;
  /** Hard-deleted (a tombstone was written): gone for good. */
  readonly tombstoned: boolean;
  /** Current metadata: the last `$metadata` event of `$$name` as an object; null when none. */
  readonly meta: StreamMetadata | null;
}

/** A stream nothing was ever written to (nor its metadata). */
export const ABSENT_STREAM: StreamView = Object.freeze({ last: -1, tombstoned: false, meta: null });
