import { ServerError, wrongExpectedVersionFromWire } from "../errors.js";
import type { ExpectedVersion, OperationOptions } from "../types.js";
import type { OperationContext } from "./context.js";
import { expectedVersionToWire, normalizeExpectedVersion } from "./expected-version.js";
import { sendRequest } from "./request.js";
import { withRetry } from "./retry.js";
import { optionKeys } from "../util/options.js";
import { checkOperationOptions, checkStreamName } from "./validate.js";

export interface DeleteStreamOptions extends OperationOptions {
  /** Default "any". */
  expectedVersion?: ExpectedVersion;
  /** A hard delete is forever: the stream answers StreamDeletedError afterwards. Default false. */
  hard?: boolean;
}

const DELETE_OPTION_KEYS = optionKeys<DeleteStreamOptions>({
  credentials: true,
  timeoutMs: true,
  signal: true,
  requireLeader: true,
  expectedVersion: true,
  hard: true,
});

export interface DeleteResult {
  readonly position: bigint;
}

/** Deletes a stream (soft by default: it reads as not found and can be written again). */
export async function deleteStream(
  ctx: OperationContext,
  streamId: string,
  options: DeleteStreamOptions = {},
): Promise<DeleteResult> {
  checkStreamName(streamId);
  checkOperationOptions("deleteStream", options, DELETE_OPTION_KEYS);
  const expectedVersion = normalizeExpectedVersion(options.expectedVersion ?? "any");
  const frame = {
    deleteStream: {
      streamId,
      expected: expectedVersionToWire(expectedVersion),
      hard: options.hard === true,
    },
  };
  return withRetry(
    ctx,
    { ...options, name: "deleteStream", requireLeader: options.requireLeader ?? true },
    async (session, signal) => {
      const reply = await sendRequest(session, frame, {
        credentials: options.credentials,
        signal,
        errorContext: { streamId },
      });
      const result = reply.deleteResult;
      if (result?.success) return Object.freeze({ position: BigInt(result.success.position ?? 0) });
      if (result?.wrongExpectedVersion)
        throw wrongExpectedVersionFromWire(streamId, result.wrongExpectedVersion, expectedVersion);
      throw new ServerError("BAD_REPLY", `unexpected reply to a delete: ${reply.body ?? "none"}`);
    },
  );
}
