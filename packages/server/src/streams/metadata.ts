/**
 * Stream metadata: what counts as metadata and which stream it belongs to. Metadata of `name`
 * is the last `$metadata` event (a JSON object) of its metadata stream `$$name`.
 */
import { METADATA_EVENT_TYPE, isMetadataStream } from "@chorus/protocol";
import type { NewEvent, StreamMetadata } from "./types.js";
import { invalid } from "./errors.js";

/** Metadata key set by a soft delete (with truncateBefore = last + 1). */
export const SOFT_DELETED_KEY = "$softDeleted";

/**
 * A numeric metadata setting as it applies: a safe integer >= `min`; anything else (a string,
 * a fraction, a smaller number) is ignored, as if the key were absent.
 */
export function metadataInt(value: unknown, min: number): number | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min
    ? value
    : undefined;
}

/** The metadata an event's data holds: a JSON object (UTF-8); null for anything else. */
export function parseMetadata(data: Uint8Array): StreamMetadata | null {
  try {
    const value: unknown = JSON.parse(
      Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"),
    );
    if (value !== null && typeof value === "object" && !Array.isArray(value))
      return value as StreamMetadata;
  } catch {
    // not JSON: not metadata
  }
  return null;
}

/** The stream a metadata stream `$$name` belongs to (`name`); undefined for other streams. */
export function targetOfMetadataStream(streamId: string): string | undefined {
  return isMetadataStream(streamId) ? streamId.slice(2) : undefined;
}

/**
 * The stream whose metadata an event sets: `name` for a `$metadata` event of `$$name`;
 * undefined for any other event (a `$metadata` event elsewhere is an ordinary event).
 */
export function metadataTarget(streamId: string, type: string): string | undefined {
  return type === METADATA_EVENT_TYPE ? targetOfMetadataStream(streamId) : undefined;
}

/**
 * The metadata an append to a metadata stream sets: that of its last `$metadata` event;
 * undefined when it has none. Throws INVALID_ARGUMENT ("stream metadata must be a JSON
 * object") when one of its `$metadata` events does not hold a JSON object. Other events of a
 * metadata stream are stored as they are.
 */
export function metadataOfAppend(
  streamId: string,
  events: readonly Pick<NewEvent, "type" | "data">[],
): StreamMetadata | undefined {
  let meta: StreamMetadata | undefined;
  for (const e of events) {
    if (e.type !== METADATA_EVENT_TYPE) continue;
    const parsed = parseMetadata(e.data);
    if (parsed === null) throw invalid("stream metadata must be a JSON object", streamId);
    meta = parsed;
  }
  return meta;
}
