import { traceAppend } from "../diagnostics.js";
import { InvalidArgumentError, ServerError, wrongExpectedVersionFromWire } from "../errors.js";
import type { Frame } from "@chorus/protocol";
import type { ExpectedVersion, OperationOptions } from "../types.js";
import type { Abortable } from "../util/timers.js";
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
export function appendToStream(
  ctx: OperationContext,
  streamId: string,
  events: EventData | readonly EventData[],
  options: AppendOptions = {},
): Promise<AppendResult> {
  // Not an async function: the promise withRetry makes is the operation's (an async wrapper
  // would add turns of the microtask queue to every append); bad input still rejects.
  let checked: readonly EventData[];
  let expectedVersion: ExpectedVersion;
  try {
    checkStreamName(streamId);
    checkOperationOptions("appendToStream", options, APPEND_OPTION_KEYS);
    checked = checkEvents(events);
    expectedVersion = normalizeExpectedVersion(options.expectedVersion ?? "any");
  } catch (err) {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rethrown as it came
    return Promise.reject(err);
  }
  // The diagnostics seam: a subscriber may add metadata (trace context) before encoding.
  return traceAppend(streamId, checked, expectedVersion, (events) =>
    send(ctx, streamId, events, expectedVersion, options),
  );
}

/** The events of an append, checked: at least one, each an EventData, no id twice. */
function checkEvents(events: EventData | readonly EventData[]): readonly EventData[] {
  if (!Array.isArray(events)) return [checkEventData(events, 0)];
  const list = events as readonly EventData[];
  if (list.length === 0) throw new InvalidArgumentError("appendToStream needs at least one event");
  // One event cannot repeat an id: the set is for batches only.
  const ids = list.length > 1 ? new Set<string>() : undefined;
  return list.map((e, i) => {
    const event = checkEventData(e, i);
    if (ids) {
      const key = event.id.toLowerCase();
      if (ids.has(key))
        throw new InvalidArgumentError(`event id ${event.id} appears twice in one append`);
      ids.add(key);
    }
    return event;
  });
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
  const requestOptions = {
    credentials: options.credentials,
    errorContext: { streamId },
    signal: undefined as Abortable | undefined,
  };
  const readReply = (reply: Frame): AppendResult => {
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
  };
  return withRetry(
    ctx,
    { ...options, name: "appendToStream", requireLeader: options.requireLeader ?? true },
    // Every attempt sends the same frame (the same event ids): a retried append is idempotent.
    (session, signal) => {
      requestOptions.signal = signal;
      return sendRequest(session, frame, requestOptions, readReply);
    },
  );
}
