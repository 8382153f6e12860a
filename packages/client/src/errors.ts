/**
 * The whole error taxonomy of the client, and the single mapper from wire replies
 * (ErrorResponse, NotHandled, WrongExpectedVersion) to errors.
 */
import { chorus } from "@chorus/protocol";
import type { Endpoint, ExpectedVersion } from "./types.js";

export type ChorusErrorCode =
  | "WRONG_EXPECTED_VERSION"
  | "STREAM_NOT_FOUND"
  | "STREAM_DELETED"
  | "ACCESS_DENIED"
  | "NOT_AUTHENTICATED"
  | "NOT_LEADER"
  | "NOT_HANDLED"
  | "TIMEOUT"
  | "DISCOVERY_FAILED"
  | "CONNECTION_FAILED"
  | "CLIENT_CLOSED"
  | "PERSISTENT_SUBSCRIPTION_EXISTS"
  | "PERSISTENT_SUBSCRIPTION_NOT_FOUND"
  | "MAX_SUBSCRIBERS_REACHED"
  | "SUBSCRIPTION_DROPPED"
  | "INVALID_ARGUMENT"
  | "STORAGE_FULL"
  | "WRONG_PARTITION"
  | "SERVER_ERROR";

/** Base class of every error the client raises on purpose. `code` is stable. */
export abstract class ChorusError extends Error {
  abstract readonly code: ChorusErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class WrongExpectedVersionError extends ChorusError {
  override readonly name = "WrongExpectedVersionError";
  readonly code = "WRONG_EXPECTED_VERSION" as const;
  /** The stream's last revision, or "no_stream" when the stream does not exist. */
  readonly actualVersion: bigint | "no_stream";
  readonly expectedVersion: ExpectedVersion;
  readonly streamId: string;
  constructor(
    streamId: string,
    expectedVersion: ExpectedVersion,
    actualVersion: bigint | "no_stream",
  ) {
    super(
      `wrong expected version on stream "${streamId}": expected ${String(expectedVersion)}, actual ${String(actualVersion)}`,
    );
    this.streamId = streamId;
    this.expectedVersion = expectedVersion;
    this.actualVersion = actualVersion;
  }
}

export class StreamNotFoundError extends ChorusError {
  override readonly name = "StreamNotFoundError";
  readonly code = "STREAM_NOT_FOUND" as const;
  constructor(
    readonly streamId: string,
    message = `stream "${streamId}" not found`,
  ) {
    super(message);
  }
}

export class StreamDeletedError extends ChorusError {
  override readonly name = "StreamDeletedError";
  readonly code = "STREAM_DELETED" as const;
  constructor(
    readonly streamId: string,
    message = `stream "${streamId}" is deleted`,
  ) {
    super(message);
  }
}

export class AccessDeniedError extends ChorusError {
  override readonly name = "AccessDeniedError";
  readonly code = "ACCESS_DENIED" as const;
  constructor(message = "access denied") {
    super(message);
  }
}

export class NotAuthenticatedError extends ChorusError {
  override readonly name = "NotAuthenticatedError";
  readonly code = "NOT_AUTHENTICATED" as const;
  constructor(message = "not authenticated") {
    super(message);
  }
}

/** The leader's external endpoints as a NOT_LEADER reply names them, when known. */
export interface LeaderEndpoints {
  readonly tcp?: Endpoint;
  readonly http?: Endpoint;
}

export class NotLeaderError extends ChorusError {
  override readonly name = "NotLeaderError";
  readonly code = "NOT_LEADER" as const;
  constructor(
    readonly leader: LeaderEndpoints | undefined,
    message = "the node is not the leader",
  ) {
    super(message);
  }
}

export type NotHandledReason = "NOT_READY" | "TOO_BUSY" | "IS_READ_ONLY";

/** The node could not take the request now (NOT_READY, TOO_BUSY) or at all (IS_READ_ONLY). */
export class NotHandledError extends ChorusError {
  override readonly name = "NotHandledError";
  readonly code = "NOT_HANDLED" as const;
  constructor(
    readonly reason: NotHandledReason,
    message?: string,
  ) {
    super(message ? `${reason}: ${message}` : `request not handled: ${reason}`);
  }
}

export class TimeoutError extends ChorusError {
  override readonly name = "TimeoutError";
  readonly code = "TIMEOUT" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Why one seed (or DNS name) did not help to find a node. */
export interface DiscoveryCause {
  /** "host:port" of the seed, or the DNS name. */
  readonly seed: string;
  readonly error: Error;
}

export class DiscoveryError extends ChorusError {
  override readonly name = "DiscoveryError";
  readonly code = "DISCOVERY_FAILED" as const;
  constructor(
    message: string,
    readonly causes: readonly DiscoveryCause[],
  ) {
    super(
      causes.length === 0
        ? message
        : `${message}: ${causes.map((c) => `${c.seed}: ${c.error.message}`).join("; ")}`,
      { cause: causes[0]?.error },
    );
  }
}

/**
 * The connection to a node failed or was lost (refused, reset, heartbeat timeout,
 * protocol error, reconnection limit reached). Operations retry on it.
 */
export class ConnectionError extends ChorusError {
  override readonly name = "ConnectionError";
  readonly code = "CONNECTION_FAILED" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class ClientClosedError extends ChorusError {
  override readonly name = "ClientClosedError";
  readonly code = "CLIENT_CLOSED" as const;
  constructor(message = "the client is closed") {
    super(message);
  }
}

export class PersistentSubscriptionExistsError extends ChorusError {
  override readonly name = "PersistentSubscriptionExistsError";
  readonly code = "PERSISTENT_SUBSCRIPTION_EXISTS" as const;
}

export class PersistentSubscriptionNotFoundError extends ChorusError {
  override readonly name = "PersistentSubscriptionNotFoundError";
  readonly code = "PERSISTENT_SUBSCRIPTION_NOT_FOUND" as const;
}

export class MaxSubscribersReachedError extends ChorusError {
  override readonly name = "MaxSubscribersReachedError";
  readonly code = "MAX_SUBSCRIBERS_REACHED" as const;
}

export class SubscriptionDroppedError extends ChorusError {
  override readonly name = "SubscriptionDroppedError";
  readonly code = "SUBSCRIPTION_DROPPED" as const;
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`subscription dropped: ${reason}`, options);
  }
}

export class InvalidArgumentError extends ChorusError {
  override readonly name = "InvalidArgumentError";
  readonly code = "INVALID_ARGUMENT" as const;
}

/**
 * The node's disk is full: the write was not made (reads still work). Not retried: the node
 * writes again by itself once space is freed, which takes an operator.
 */
export class StorageFullError extends ChorusError {
  override readonly name = "StorageFullError";
  readonly code = "STORAGE_FULL" as const;
}

/**
 * Partitioned deployments: the node's replication group does not own the stream; `owner`
 * names the group that does. The client's group list differs from the servers' (a group
 * missing, misspelled or pointed at the wrong nodes). Not retried.
 */
export class WrongPartitionError extends ChorusError {
  override readonly name = "WrongPartitionError";
  readonly code = "WRONG_PARTITION" as const;
  constructor(
    readonly streamId: string,
    /** The name of the group that owns the stream. */
    readonly owner: string,
    message = `stream "${streamId}" belongs to partition ${owner}`,
  ) {
    super(message);
  }
}

/** The server reported an error the client has no more specific class for. */
export class ServerError extends ChorusError {
  override readonly name = "ServerError";
  readonly code = "SERVER_ERROR" as const;
  constructor(
    /** The wire code, e.g. "INTERNAL", "BAD_REQUEST", "SHUTTING_DOWN". */
    readonly serverCode: string,
    message: string,
  ) {
    super(message);
  }
}

// ------------------------------------------------------------------ the mapper

const ErrorCode = chorus.ErrorResponse.Code;
const Reason = chorus.NotHandled.Reason;
const Kind = chorus.ExpectedVersion.Kind;

function endpointOf(e: chorus.IEndpoint | null | undefined): Endpoint | undefined {
  return e?.host && e.port ? { host: e.host, port: e.port } : undefined;
}

/** The ExpectedVersion a wire message carries, in client terms. */
export function expectedVersionFromWire(
  e: chorus.IExpectedVersion | null | undefined,
): ExpectedVersion {
  switch (e?.kind ?? Kind.ANY) {
    case Kind.NO_STREAM:
      return "no_stream";
    case Kind.STREAM_EXISTS:
      return "stream_exists";
    case Kind.EXACT:
      return BigInt(e?.revision ?? 0);
    default:
      return "any";
  }
}

export interface WireErrorContext {
  /** The stream the request was about, when the reply does not say. */
  streamId?: string;
}

/** Maps an ErrorResponse or NotHandled reply to the matching error. */
export function errorFromWire(
  reply:
    | { error: chorus.IErrorResponse; notHandled?: undefined }
    | { notHandled: chorus.INotHandled; error?: undefined },
  context: WireErrorContext = {},
): ChorusError {
  if (reply.notHandled) {
    const nh = reply.notHandled;
    const message = nh.message ?? "";
    switch (nh.reason ?? Reason.NOT_READY) {
      case Reason.NOT_LEADER: {
        const tcp = endpointOf(nh.leaderTcp);
        const http = endpointOf(nh.leaderHttp);
        return new NotLeaderError(
          tcp || http ? { ...(tcp && { tcp }), ...(http && { http }) } : undefined,
          message || "the node is not the leader",
        );
      }
      case Reason.TOO_BUSY:
        return new NotHandledError("TOO_BUSY", message);
      case Reason.IS_READ_ONLY:
        return new NotHandledError("IS_READ_ONLY", message);
      default:
        return new NotHandledError("NOT_READY", message);
    }
  }
  const err = reply.error;
  const streamId = err.streamId || context.streamId || "";
  const message = err.message || undefined;
  switch (err.code ?? ErrorCode.UNKNOWN) {
    case ErrorCode.STREAM_NOT_FOUND:
      return new StreamNotFoundError(streamId, message);
    case ErrorCode.STREAM_DELETED:
      return new StreamDeletedError(streamId, message);
    case ErrorCode.ACCESS_DENIED:
      return new AccessDeniedError(message);
    case ErrorCode.NOT_AUTHENTICATED:
      return new NotAuthenticatedError(message);
    case ErrorCode.INVALID_ARGUMENT:
      return new InvalidArgumentError(message ?? "invalid argument");
    case ErrorCode.PERSISTENT_SUBSCRIPTION_EXISTS:
      return new PersistentSubscriptionExistsError(
        message ?? "the persistent subscription group exists",
      );
    case ErrorCode.PERSISTENT_SUBSCRIPTION_NOT_FOUND:
      return new PersistentSubscriptionNotFoundError(
        message ?? "the persistent subscription group does not exist",
      );
    case ErrorCode.MAX_SUBSCRIBERS_REACHED:
      return new MaxSubscribersReachedError(
        message ?? "the persistent subscription group has its maximum of consumers",
      );
    case ErrorCode.NOT_LEADER:
      return new NotLeaderError(undefined, message ?? "the node is not the leader");
    case ErrorCode.STORAGE_FULL:
      return new StorageFullError(message ?? "the node's disk is full");
    case ErrorCode.WRONG_PARTITION:
      return new WrongPartitionError(streamId, err.owner ?? "", message);
    default: {
      const name = ErrorCode[err.code ?? 0] ?? `CODE_${String(err.code)}`;
      return new ServerError(name, message ?? `server error ${name}`);
    }
  }
}

/** Maps a WrongExpectedVersion reply of an append or delete. */
export function wrongExpectedVersionFromWire(
  streamId: string,
  wev: chorus.IWrongExpectedVersion,
  requested?: ExpectedVersion,
): WrongExpectedVersionError {
  const actual = wev.streamExists ? BigInt(wev.actualRevision ?? 0) : "no_stream";
  return new WrongExpectedVersionError(
    streamId,
    requested ?? expectedVersionFromWire(wev.expected),
    actual,
  );
}

/**
 * True for failures after which the same request may be sent again: the connection
 * was lost, the node is not (yet) the right one or is busy.
 */
export function isRetriable(err: unknown): boolean {
  if (err instanceof ConnectionError || err instanceof NotLeaderError) return true;
  if (err instanceof NotHandledError)
    return err.reason === "NOT_READY" || err.reason === "TOO_BUSY";
  if (err instanceof ServerError) return err.serverCode === "SHUTTING_DOWN";
  return false;
}
