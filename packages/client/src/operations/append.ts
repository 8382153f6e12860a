import { traceAppend } from "../diagnostics.js";
import { InvalidArgumentError, ServerError, wrongExpectedVersionFromWire } from "../errors.js";
import type { ExpectedVersion, OperationOptions } from "../types.js";
import type { OperationContext } from "./context.js";
import { checkEventData, eventDataToWire, type EventData } from "./events.js";
import { expectedVersionToWire, normalizeExpectedVersion } from "./expected-version.js";
import { sendRequest } from "./request.js";
import { withRetry } from "./retry.js";
import { optionKeys } from "../util/options.js";
import { checkOperationOptions, checkStreamName } from "./validate.js";

export interface AppendOptions extends OperationOptions {
  /** Default "any". */
  expectedVersion?: ExpectedVersion;
}

export const APPEND_OPTION_KEYS = optionKeys<AppendOptions>({
  credentials: true,
  timeoutMs: true,
  signal: true,
  requireLeader: true,
  expectedVersion: true,
});

export interface AppendResult {
  /** Revision of the last event written. */
  readonly nextExpectedVersion: bigint;
  /** Log position of the last event written. */
  readonly position: bigint;
}

/**
 * Appends events. Validated client-side; retried (with the same event ids, so the server
 * recognises a repeat and answers with the original result) on connection loss,
 * NOT_LEADER, NOT_READY and TOO_BUSY. Throws WrongExpectedVersionError on a conflict.
 */
export async function appendToStream(
  ctx: OperationContext,
  streamId: string,
  events: EventData | readonly EventData[],
  options: AppendOptions = {},
): Promise<AppendResult> {
  checkStreamName(streamId);
  checkOperationOptions("appendToStream", options, APPEND_OPTION_KEYS);
  const list = Array.isArray(events) ? (events as readonly EventData[]) : [events as EventData];
  if (list.length === 0) throw new InvalidArgumentError("appendToStream needs at least one event");
  const ids = new Set<string>();
  const checked = list.map((e, i) => {
    const event = checkEventData(e, i);
    const key = event.id.toLowerCase();
    if (ids.has(key))
      throw new InvalidArgumentError(`event id ${event.id} appears twice in one append`);
    ids.add(key);
    return event;
  });
  const expectedVersion = normalizeExpectedVersion(options.expectedVersion ?? "any");
  // The diagnostics seam: a subscriber may add metadata (trace context) before encoding.
  return traceAppend(streamId, checked, expectedVersion, (events) =>
    send(ctx, streamId, events, expectedVersion, options),
  );
}

function send(
  ctx: OperationContext,
  streamId: string,
  events: readonly EventData[],
  expectedVersion: ExpectedVersion,
  options: AppendOptions,
): Promise<AppendResult> {
  const frame = {
    append: {
      streamId,
      expected: expectedVersionToWire(expectedVersion),
      events: events.map(eventDataToWire),
    },
  };
  return withRetry(
    ctx,
    { ...options, name: "appendToStream", requireLeader: options.requireLeader ?? true },
    async (session, signal) => {
      const reply = await sendRequest(session, frame, {
        credentials: options.credentials,
        signal,
        errorContext: { streamId },
      });
      const result = reply.appendResult;
      if (result?.success) {
        return Object.freeze({
          nextExpectedVersion: BigInt(result.success.nextExpectedVersion ?? 0),
          position: BigInt(result.success.position ?? 0),
        });
      }
      if (result?.wrongExpectedVersion)
        throw wrongExpectedVersionFromWire(streamId, result.wrongExpectedVersion, expectedVersion);
      throw new ServerError("BAD_REPLY", `unexpected reply to an append: ${reply.body ?? "none"}`);
    },
  );
}
