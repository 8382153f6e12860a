/** The StoreErrors the stream rules throw, with the messages every backend gives. */
import { StoreError } from "./types.js";

/** INVALID_ARGUMENT: a request refused for its arguments. */
export function invalid(message: string, streamId?: string): StoreError {
  return new StoreError("INVALID_ARGUMENT", message, streamId);
}

/** STREAM_DELETED: the stream is hard-deleted (tombstoned). */
export function streamDeleted(streamId: string): StoreError {
  return new StoreError("STREAM_DELETED", `stream ${streamId} is deleted`, streamId);
}

/** STREAM_NOT_FOUND: no event of the stream can be read (absent, metadata only, soft-deleted). */
export function streamNotFound(streamId: string): StoreError {
  return new StoreError("STREAM_NOT_FOUND", `stream ${streamId} not found`, streamId);
}
