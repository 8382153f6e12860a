import { chorus } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import {
  AccessDeniedError,
  ChorusError,
  ConnectionError,
  DiscoveryError,
  errorFromWire,
  InvalidArgumentError,
  isRetriable,
  NotAuthenticatedError,
  NotHandledError,
  NotLeaderError,
  ServerError,
  StorageFullError,
  StreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  wrongExpectedVersionFromWire,
} from "./errors.js";

const Code = chorus.ErrorResponse.Code;
const Reason = chorus.NotHandled.Reason;

describe("errorFromWire", () => {
  it.each([
    [Code.STREAM_NOT_FOUND, StreamNotFoundError, "STREAM_NOT_FOUND"],
    [Code.STREAM_DELETED, StreamDeletedError, "STREAM_DELETED"],
    [Code.ACCESS_DENIED, AccessDeniedError, "ACCESS_DENIED"],
    [Code.NOT_AUTHENTICATED, NotAuthenticatedError, "NOT_AUTHENTICATED"],
    [Code.INVALID_ARGUMENT, InvalidArgumentError, "INVALID_ARGUMENT"],
    [Code.STORAGE_FULL, StorageFullError, "STORAGE_FULL"],
    [Code.INTERNAL, ServerError, "SERVER_ERROR"],
    [Code.BAD_REQUEST, ServerError, "SERVER_ERROR"],
    [Code.UNKNOWN, ServerError, "SERVER_ERROR"],
  ])("error code %i -> %o", (code, type, stable) => {
    const err = errorFromWire({ error: { code, message: "m", streamId: "s" } });
    expect(err).toBeInstanceOf(type);
    expect(err).toBeInstanceOf(ChorusError);
    expect(err.code).toBe(stable);
  });

  it("names the stream from the context when the reply does not", () => {
    const err = errorFromWire({ error: { code: Code.STREAM_NOT_FOUND } }, { streamId: "order-1" });
    expect(err).toBeInstanceOf(StreamNotFoundError);
    expect((err as StreamNotFoundError).streamId).toBe("order-1");
    expect(err.message).toBe('stream "order-1" not found');
  });

  it("keeps the server's code for ServerError", () => {
    const err = errorFromWire({
      error: { code: Code.SHUTTING_DOWN, message: "bye" },
    }) as ServerError;
    expect(err.serverCode).toBe("SHUTTING_DOWN");
    expect(isRetriable(err)).toBe(true);
  });

  it("maps NOT_LEADER with the leader's endpoints", () => {
    const err = errorFromWire({
      notHandled: {
        reason: Reason.NOT_LEADER,
        leaderTcp: { host: "10.0.0.2", port: 1113 },
        leaderHttp: { host: "10.0.0.2", port: 2113 },
      },
    });
    expect(err).toBeInstanceOf(NotLeaderError);
    expect((err as NotLeaderError).leader).toEqual({
      tcp: { host: "10.0.0.2", port: 1113 },
      http: { host: "10.0.0.2", port: 2113 },
    });
    expect(isRetriable(err)).toBe(true);
  });

  it("maps NOT_LEADER without endpoints", () => {
    const err = errorFromWire({
      notHandled: { reason: Reason.NOT_LEADER, leaderTcp: { host: "", port: 0 } },
    }) as NotLeaderError;
    expect(err.leader).toBeUndefined();
  });

  it.each([
    [Reason.NOT_READY, "NOT_READY", true],
    [Reason.TOO_BUSY, "TOO_BUSY", true],
    [Reason.IS_READ_ONLY, "IS_READ_ONLY", false],
  ])("maps not handled %i", (reason, name, retriable) => {
    const err = errorFromWire({ notHandled: { reason } }) as NotHandledError;
    expect(err).toBeInstanceOf(NotHandledError);
    expect(err.reason).toBe(name);
    expect(isRetriable(err)).toBe(retriable);
  });
});

describe("wrongExpectedVersionFromWire", () => {
  it("carries stream, expected and actual versions", () => {
    const err = wrongExpectedVersionFromWire("s", {
      expected: { kind: chorus.ExpectedVersion.Kind.EXACT, revision: 3 },
      streamExists: true,
      actualRevision: 5,
    });
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect([err.streamId, err.expectedVersion, err.actualVersion, err.code]).toEqual([
      "s",
      3n,
      5n,
      "WRONG_EXPECTED_VERSION",
    ]);
  });
  it("says no_stream when the stream does not exist", () => {
    const err = wrongExpectedVersionFromWire("s", { streamExists: false }, "stream_exists");
    expect([err.expectedVersion, err.actualVersion]).toEqual(["stream_exists", "no_stream"]);
  });
});

describe("taxonomy", () => {
  it("DiscoveryError lists each seed's cause", () => {
    const err = new DiscoveryError("no node found", [
      { seed: "a:1", error: new Error("connection refused (ECONNREFUSED)") },
      { seed: "b:2", error: new Error("timed out after 100 ms") },
    ]);
    expect(err.message).toBe(
      "no node found: a:1: connection refused (ECONNREFUSED); b:2: timed out after 100 ms",
    );
    expect(err.causes).toHaveLength(2);
    expect(err.code).toBe("DISCOVERY_FAILED");
  });
  it("connection errors are retriable, domain errors are not", () => {
    expect(isRetriable(new ConnectionError("lost"))).toBe(true);
    expect(isRetriable(new StreamNotFoundError("s"))).toBe(false);
    expect(isRetriable(new WrongExpectedVersionError("s", "any", 1n))).toBe(false);
  });
});
