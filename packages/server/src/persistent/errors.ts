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

/**
 * One of a group's own streams moved past the revision the group expected: another server
 * wrote it (in the shared-database mode, a lock holder that had not yet noticed losing its
 * lock). The group stops and is loaded again from what is stored; its consumers subscribe again.
 */
export class GroupFencedError extends Error {
  override readonly name = "GroupFencedError";
  constructor(
    readonly streamId: string,
    /** The revision the group expected to be last (-1: no event). */
    readonly expected: number,
    /** The stream's last revision (-1: no event). */
    readonly actual: number,
  ) {
    super(
      `${streamId} was written by another server (expected its last revision ${expected}, found ${actual})`,
    );
  }
}
