import { chorus } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import { NotLeaderError } from "../node-types.js";
import { PersistentError, type PersistentErrorCode } from "../persistent/errors.js";
import type { DropCode as GroupDropCode } from "../persistent/group.js";
import { SettingsError } from "../persistent/settings.js";
import { StoreError, type StoreErrorCode } from "../streams/types.js";
import type { DropCode as SubscriptionDropCode } from "../subscriptions/index.js";
import { RequestError, dropCodeToWire, invalidArgument, toWireError } from "./errors.js";

const Code = chorus.ErrorResponse.Code;

/**
 * What a client is told: the code's name (HTTP `error`, metrics label), the ErrorResponse
 * code's number on the native protocol, the HTTP status, the message, the stream, and whether
 * the failure is logged as ours. The numbers are the wire's (chorus.proto), written out so a
 * renumbering shows here.
 */
interface Expected {
  code: string;
  nativeCode: number;
  httpStatus: number;
  message: string;
  streamId: string | undefined;
  internal: boolean;
}

function expectError(err: unknown, expected: Expected): void {
  const wire = toWireError(err);
  expect(wire.kind).toBe("error");
  if (wire.kind !== "error") return;
  expect({
    code: wire.code,
    nativeCode: wire.nativeCode,
    httpStatus: wire.httpStatus,
    message: wire.message,
    streamId: wire.streamId,
    internal: wire.internal,
  }).toEqual(expected);
  expect(Code[wire.nativeCode]).toBe(expected.code);
  expect(wire.httpHeaders).toEqual({});
}

/** A row of the tables: a refusal (not logged) of "boom" on stream s-1, unless `more` says. */
function row(
  code: string,
  nativeCode: number,
  httpStatus: number,
  more: Partial<Expected> = {},
): Expected {
  return {
    code,
    nativeCode,
    httpStatus,
    message: "boom",
    streamId: "s-1",
    internal: false,
    ...more,
  };
}

// Keyed by the store's codes, so a new StoreErrorCode does not compile until it is mapped here
// (UNAVAILABLE is a NotHandled, tested below).
const STORE: Record<Exclude<StoreErrorCode, "UNAVAILABLE">, Expected> = {
  STREAM_NOT_FOUND: row("STREAM_NOT_FOUND", 1, 404),
  STREAM_DELETED: row("STREAM_DELETED", 2, 410),
  INVALID_ARGUMENT: row("INVALID_ARGUMENT", 5, 400),
  STORE_CLOSED: row("SHUTTING_DOWN", 9, 503, { message: "the node is shutting down" }),
  STORAGE_FULL: row("STORAGE_FULL", 14, 507),
  CORRUPTED: row("INTERNAL", 6, 500, { message: "storage error: boom", internal: true }),
  IO_FAILED: row("INTERNAL", 6, 500, { message: "storage error: boom", internal: true }),
};

// Persistent subscriptions are served on the native protocol only: the HTTP status is the
// fallback for codes the HTTP API has no status of (500), as before.
const PERSISTENT: Record<PersistentErrorCode, Expected> = {
  GROUP_NOT_FOUND: row("PERSISTENT_SUBSCRIPTION_NOT_FOUND", 11, 500),
  GROUP_EXISTS: row("PERSISTENT_SUBSCRIPTION_EXISTS", 10, 500),
  MAX_CONSUMERS_REACHED: row("MAX_SUBSCRIBERS_REACHED", 12, 500),
  INVALID_ARGUMENT: row("INVALID_ARGUMENT", 5, 400),
  CLOSED: row("SHUTTING_DOWN", 9, 503),
  UNAVAILABLE: row("SHUTTING_DOWN", 9, 503),
};

describe("toWireError", () => {
  it.each(Object.entries(STORE))("maps StoreError %s", (code, expected) => {
    expectError(new StoreError(code as StoreErrorCode, "boom", "s-1"), expected);
  });

  it.each(Object.entries(PERSISTENT))("maps PersistentError %s", (code, expected) => {
    expectError(new PersistentError(code as PersistentErrorCode, "boom", "s-1"), expected);
  });

  const internal = { message: "internal error", streamId: undefined, internal: true };
  it.each<[string, unknown, Expected]>([
    [
      "RequestError INVALID_ARGUMENT",
      invalidArgument("boom", "s-1"),
      row("INVALID_ARGUMENT", 5, 400),
    ],
    [
      "RequestError BAD_REQUEST",
      new RequestError(Code.BAD_REQUEST, "boom"),
      row("BAD_REQUEST", 7, 400, { streamId: undefined }),
    ],
    [
      "RequestError NOT_AUTHENTICATED",
      new RequestError(Code.NOT_AUTHENTICATED, "boom"),
      row("NOT_AUTHENTICATED", 4, 401, { streamId: undefined }),
    ],
    [
      "RequestError ACCESS_DENIED",
      new RequestError(Code.ACCESS_DENIED, "boom"),
      row("ACCESS_DENIED", 3, 403, { streamId: undefined }),
    ],
    [
      "SettingsError",
      new SettingsError("boom"),
      row("INVALID_ARGUMENT", 5, 400, { streamId: undefined }),
    ],
    [
      "any other Error (a bug)",
      Object.assign(new Error("EIO: i/o error"), { code: "EIO" }),
      row("INTERNAL", 6, 500, internal),
    ],
    ["a thrown non-Error", "oops", row("INTERNAL", 6, 500, internal)],
  ])("maps %s", (_name, err, expected) => {
    expectError(err, expected);
  });

  it("maps StoreError UNAVAILABLE to NotHandled NOT_READY / HTTP 503, which clients retry", () => {
    expect(
      toWireError(new StoreError("UNAVAILABLE", "the database is unreachable", "s-1")),
    ).toEqual({
      kind: "notHandled",
      code: "NOT_READY",
      message: "the database is unreachable",
      streamId: undefined,
      httpStatus: 503,
      httpHeaders: {},
      internal: false,
      notHandled: {
        reason: chorus.NotHandled.Reason.NOT_READY,
        message: "the database is unreachable",
      },
    });
  });

  it("maps NotLeaderError to NotHandled NOT_LEADER / HTTP 503 with the leader's address", () => {
    const wire = toWireError(
      new NotLeaderError({
        message: "this node is not the leader",
        leaderTcp: { host: "10.0.0.2", port: 1113 },
        leaderHttp: { host: "10.0.0.2", port: 2113 },
      }),
    );
    expect(wire).toEqual({
      kind: "notHandled",
      code: "NOT_LEADER",
      message: "this node is not the leader",
      streamId: undefined,
      httpStatus: 503,
      httpHeaders: { "Chorus-Leader": "10.0.0.2:2113" },
      internal: false,
      notHandled: {
        reason: 2,
        message: "this node is not the leader",
        leaderTcp: { host: "10.0.0.2", port: 1113 },
        leaderHttp: { host: "10.0.0.2", port: 2113 },
      },
    });
    expect(chorus.NotHandled.Reason[2]).toBe("NOT_LEADER");
  });

  it("maps NotLeaderError without a known leader: no endpoints, no Chorus-Leader", () => {
    const wire = toWireError(
      new NotLeaderError({ message: "retry", leaderTcp: undefined, leaderHttp: undefined }),
    );
    expect(wire).toMatchObject({ kind: "notHandled", code: "NOT_LEADER", httpStatus: 503 });
    expect(wire.httpHeaders).toEqual({});
    expect(wire.kind === "notHandled" && wire.notHandled).toEqual({
      reason: chorus.NotHandled.Reason.NOT_LEADER,
      message: "retry",
    });
  });
});

describe("dropCodeToWire", () => {
  // Catch-up subscriptions' and persistent groups' drop reasons (the union, so every one is
  // here), but NOT_READY, which the transport sends as NotHandled NOT_READY instead of a drop.
  const DROPS: Record<
    Exclude<SubscriptionDropCode, "NOT_READY"> | GroupDropCode,
    [string, number]
  > = {
    STREAM_DELETED: ["STREAM_DELETED", 2],
    INVALID_ARGUMENT: ["INVALID_ARGUMENT", 5],
    UNSUBSCRIBED: ["UNKNOWN", 0],
    NOT_LEADER: ["NOT_LEADER", 13],
    PERSISTENT_SUBSCRIPTION_NOT_FOUND: ["PERSISTENT_SUBSCRIPTION_NOT_FOUND", 11],
    SHUTTING_DOWN: ["SHUTTING_DOWN", 9],
    INTERNAL: ["INTERNAL", 6],
    UNKNOWN: ["UNKNOWN", 0],
  };

  it.each(Object.entries(DROPS))("maps the drop reason %s", (code, [name, number]) => {
    const wire = dropCodeToWire(code as Exclude<SubscriptionDropCode, "NOT_READY"> | GroupDropCode);
    expect(wire).toBe(number);
    expect(Code[wire]).toBe(name);
  });
});
