/**
 * Errors to wire codes, in one place. Domain code (streams/, persistent/, subscriptions/, the
 * cluster) throws domain errors; both protocols, the native one (native.ts) and the HTTP API
 * (http.ts), answer them with what `toWireError` says, so a domain error means the same to
 * every client. The table in errors.unit.test.ts lists every kind.
 */
import { chorus } from "@chorus/protocol";
import { NotLeaderError } from "../node-types.js";
import { PersistentError, type PersistentErrorCode } from "../persistent/errors.js";
import type { DropCode as GroupDropCode } from "../persistent/group.js";
import { SettingsError } from "../persistent/settings.js";
import { StoreError, type StoreErrorCode } from "../streams/types.js";
import type { DropCode as SubscriptionDropCode } from "../subscriptions/index.js";

const Code = chorus.ErrorResponse.Code;
export type CodeName = keyof typeof chorus.ErrorResponse.Code;

/** A request the API layer refuses before touching the store; it names its wire code itself. */
export class RequestError extends Error {
  override readonly name = "RequestError";
  constructor(
    readonly code: chorus.ErrorResponse.Code,
    message: string,
    readonly streamId?: string,
    /** WRONG_PARTITION: the group that owns the stream. */
    readonly owner?: string,
  ) {
    super(message);
  }
}

export function invalidArgument(message: string, streamId?: string): RequestError {
  return new RequestError(Code.INVALID_ARGUMENT, message, streamId);
}

export function codeName(code: chorus.ErrorResponse.Code): string {
  return Code[code] ?? "UNKNOWN";
}

/** The HTTP status of an ErrorResponse code; a code not listed answers 500. */
const HTTP_STATUS: Partial<Record<CodeName, number>> = {
  STREAM_NOT_FOUND: 404,
  STREAM_DELETED: 410,
  ACCESS_DENIED: 403,
  NOT_AUTHENTICATED: 401,
  INVALID_ARGUMENT: 400,
  BAD_REQUEST: 400,
  SHUTTING_DOWN: 503,
  INTERNAL: 500,
  STORAGE_FULL: 507,
  // Partitioned deployments: the stream belongs to another group (see `owner`).
  WRONG_PARTITION: 421,
};

interface WireErrorBase {
  /** The error's name: the HTTP answer's `error` field and the `code` label of the metrics. */
  readonly code: string;
  readonly message: string;
  readonly streamId: string | undefined;
  readonly httpStatus: number;
  readonly httpHeaders: Readonly<Record<string, string>>;
  /** True when the failure is ours (a bug or an I/O failure): logged as an error. */
  readonly internal: boolean;
  /** WRONG_PARTITION: the group that owns the stream (HTTP: `owner` and `Chorus-Partition`). */
  readonly owner?: string;
}

/** Answered with an ErrorResponse on the native protocol. */
export interface ErrorResponseWire extends WireErrorBase {
  readonly kind: "error";
  readonly nativeCode: chorus.ErrorResponse.Code;
}

/** Answered with NotHandled on the native protocol (the request may go elsewhere). */
export interface NotHandledWire extends WireErrorBase {
  readonly kind: "notHandled";
  readonly notHandled: chorus.INotHandled;
}

export type WireError = ErrorResponseWire | NotHandledWire;

function errorResponse(
  name: CodeName,
  message: string,
  streamId: string | undefined,
  internal = false,
): ErrorResponseWire {
  return {
    kind: "error",
    code: name,
    nativeCode: Code[name],
    message,
    streamId,
    httpStatus: HTTP_STATUS[name] ?? 500,
    httpHeaders: {},
    internal,
  };
}

/** The ErrorResponse codes of the store's refusals. */
const STORE_CODES: Record<
  Exclude<StoreErrorCode, "STORE_CLOSED" | "CORRUPTED" | "IO_FAILED" | "UNAVAILABLE">,
  CodeName
> = {
  STREAM_NOT_FOUND: "STREAM_NOT_FOUND",
  STREAM_DELETED: "STREAM_DELETED",
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  STORAGE_FULL: "STORAGE_FULL",
};

/** The ErrorResponse codes of the persistent subscription service's refusals. */
const PERSISTENT_CODES: Record<PersistentErrorCode, CodeName> = {
  GROUP_NOT_FOUND: "PERSISTENT_SUBSCRIPTION_NOT_FOUND",
  GROUP_EXISTS: "PERSISTENT_SUBSCRIPTION_EXISTS",
  MAX_CONSUMERS_REACHED: "MAX_SUBSCRIBERS_REACHED",
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  CLOSED: "SHUTTING_DOWN",
  UNAVAILABLE: "SHUTTING_DOWN",
};

function storeError(err: StoreError): WireError {
  switch (err.code) {
    case "STORE_CLOSED":
      return errorResponse("SHUTTING_DOWN", "the node is shutting down", err.streamId);
    case "CORRUPTED":
    case "IO_FAILED":
      return errorResponse("INTERNAL", `storage error: ${err.message}`, err.streamId, true);
    case "UNAVAILABLE":
      return notReady(err.message);
    default:
      return errorResponse(STORE_CODES[err.code], err.message, err.streamId);
  }
}

/**
 * A write reached a node that does not lead: the native protocol answers NotHandled NOT_LEADER
 * with the leader's endpoints, HTTP 503 NOT_LEADER with the leader in `Chorus-Leader` (HTTP
 * writes a follower cannot forward end here).
 */
function notLeader(err: NotLeaderError): NotHandledWire {
  const { message, leaderTcp, leaderHttp } = err.refusal;
  return {
    kind: "notHandled",
    code: "NOT_LEADER",
    message,
    streamId: undefined,
    httpStatus: 503,
    httpHeaders: leaderHttp ? { "Chorus-Leader": `${leaderHttp.host}:${leaderHttp.port}` } : {},
    internal: false,
    notHandled: {
      reason: chorus.NotHandled.Reason.NOT_LEADER,
      message,
      ...(leaderTcp && { leaderTcp: { host: leaderTcp.host, port: leaderTcp.port } }),
      ...(leaderHttp && { leaderHttp: { host: leaderHttp.host, port: leaderHttp.port } }),
    },
  };
}

/** The storage is out of reach for now: NotHandled NOT_READY (HTTP 503), which clients retry. */
function notReady(message: string): NotHandledWire {
  return {
    kind: "notHandled",
    code: "NOT_READY",
    message,
    streamId: undefined,
    httpStatus: 503,
    httpHeaders: {},
    internal: false,
    notHandled: { reason: chorus.NotHandled.Reason.NOT_READY, message },
  };
}

/** Maps anything thrown while serving a request to what the client is told. */
export function toWireError(err: unknown): WireError {
  if (err instanceof RequestError) {
    const wire = errorResponse(codeName(err.code) as CodeName, err.message, err.streamId);
    if (err.owner === undefined) return wire;
    return { ...wire, owner: err.owner, httpHeaders: { "Chorus-Partition": err.owner } };
  }
  if (err instanceof StoreError) return storeError(err);
  if (err instanceof NotLeaderError) return notLeader(err);
  if (err instanceof PersistentError) {
    return errorResponse(PERSISTENT_CODES[err.code], err.message, err.streamId);
  }
  if (err instanceof SettingsError)
    return errorResponse("INVALID_ARGUMENT", err.message, undefined);
  return errorResponse("INTERNAL", "internal error", undefined, true);
}

/** The SubscriptionDropped code of a catch-up subscription's or a persistent group's drop. */
export function dropCodeToWire(
  code: Exclude<SubscriptionDropCode, "NOT_READY" | "NOT_LEADER"> | GroupDropCode,
): chorus.ErrorResponse.Code {
  return code === "UNSUBSCRIBED" ? Code.UNKNOWN : Code[code];
}
