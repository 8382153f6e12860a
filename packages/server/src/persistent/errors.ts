/**
 * Why the persistent subscription service refused a request. A domain error: the API layer
 * (api/errors.ts) decides what a client sees.
 */
export type PersistentErrorCode =
  | "GROUP_NOT_FOUND"
  | "GROUP_EXISTS"
  /** The group already has `maxSubscriberCount` consumers. */
  | "MAX_CONSUMERS_REACHED"
  | "INVALID_ARGUMENT"
  /** The service is closed: the node is shutting down. */
  | "CLOSED"
  /** Leadership is changing (or a new leader has not committed its log yet): retry. */
  | "UNAVAILABLE";

export class PersistentError extends Error {
  override readonly name = "PersistentError";
  constructor(
    readonly code: PersistentErrorCode,
    message: string,
    readonly streamId?: string,
  ) {
    super(message);
  }
}
