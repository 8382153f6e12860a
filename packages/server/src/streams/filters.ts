/**
 * Filters of `$all` reads and subscriptions. System streams (`$`-prefixed: `$$name` metadata
 * streams, `$persistent-…` and the like) are left out unless asked for.
 */
import { isSystemStream } from "@chorus/protocol";
import type { StoredEvent } from "./types.js";

export { isSystemStream };

export interface EventFilter {
  /** Keep events of streams whose name starts with one of these (all when empty or absent). */
  readonly streamNamePrefixes?: readonly string[];
  /** Keep events whose type starts with one of these (all when empty or absent). */
  readonly eventTypePrefixes?: readonly string[];
  /** Keep events of system streams too (default: left out). */
  readonly includeSystem?: boolean;
}

/**
 * The predicate of a filter: an event passes when its stream is not a system stream (unless
 * `includeSystem`), its stream name starts with one of the stream prefixes (if any) and its
 * type with one of the type prefixes (if any).
 */
export function eventFilter(
  filter: EventFilter,
): (e: Pick<StoredEvent, "streamId" | "type">) => boolean {
  const streams = [...(filter.streamNamePrefixes ?? [])];
  const types = [...(filter.eventTypePrefixes ?? [])];
  const includeSystem = filter.includeSystem === true;
  return (e) =>
    (includeSystem || !isSystemStream(e.streamId)) &&
    (streams.length === 0 || streams.some((p) => e.streamId.startsWith(p))) &&
    (types.length === 0 || types.some((p) => e.type.startsWith(p)));
}
