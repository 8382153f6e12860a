import { chorus } from "@chorus/protocol";
import { traceRead, type ReadMessage } from "../diagnostics.js";
import { describe } from "../util/describe.js";
import { InvalidArgumentError, ServerError } from "../errors.js";
import { DEFAULT_READ_PAGE_SIZE } from "../settings/defaults.js";
import type { Direction, OperationOptions, ResolvedEvent } from "../types.js";
import { checkOptions, optionKeys } from "../util/options.js";
import { abortReason } from "../util/timers.js";
import type { OperationContext } from "./context.js";
import { resolvedEventFromWire } from "./events.js";
import { toWireNumber } from "./expected-version.js";
import { ReadCursor } from "./read-cursor.js";
import { sendRequest } from "./request.js";
import { withRetry } from "./retry.js";
import { checkOperationOptions, checkStreamName } from "./validate.js";

export interface ReadOptionsBase extends OperationOptions {
  /** Default "forwards". */
  direction?: Direction;
  /** Most events delivered in total. Default: all. */
  maxCount?: number | bigint;
  resolveLinks?: boolean;
  /** Events per page request. Default DEFAULT_READ_PAGE_SIZE. `timeoutMs` applies per page. */
  pageSize?: number;
}

export interface ReadStreamOptions extends ReadOptionsBase {
  /** Inclusive. Default "start" (forwards) / "end" (backwards). */
  fromRevision?: "start" | "end" | bigint | number;
}

export interface StreamFilter {
  streamNamePrefix?: readonly string[];
  eventTypePrefix?: readonly string[];
  /** Include system streams ("$..."). Default false. */
  includeSystem?: boolean;
}

export interface ReadAllOptions extends ReadOptionsBase {
  /** Forwards: inclusive; backwards: exclusive. Default "start" (forwards) / "end" (backwards). */
  fromPosition?: "start" | "end" | bigint | number;
  filter?: StreamFilter;
}

const READ_BASE_KEYS = {
  credentials: true,
  timeoutMs: true,
  signal: true,
  requireLeader: true,
  direction: true,
  maxCount: true,
  resolveLinks: true,
  pageSize: true,
} as const;

const READ_STREAM_OPTION_KEYS = optionKeys<ReadStreamOptions>({
  ...READ_BASE_KEYS,
  fromRevision: true,
});

const READ_ALL_OPTION_KEYS = optionKeys<ReadAllOptions>({
  ...READ_BASE_KEYS,
  fromPosition: true,
  filter: true,
});

export const FILTER_KEYS = optionKeys<StreamFilter>({
  streamNamePrefix: true,
  eventTypePrefix: true,
  includeSystem: true,
});

/**
 * Filter keys the contract (api.md "More subscription options") names and the server does
 * not support yet: refused, so a filter is never silently wider than asked.
 */
export const UNSUPPORTED_FILTER_KEYS: Readonly<Record<string, string>> = Object.freeze({
  streamNameRegex: "the server filters by stream name prefix only (use streamNamePrefix)",
  eventTypeRegex: "the server filters by event type prefix only (use eventTypePrefix)",
  checkpointInterval:
    "the server sends filtered $all checkpoints on its own schedule; the interval cannot be set",
});

function direction(value: unknown): Direction {
  if (value === undefined) return "forwards";
  if (value === "forwards" || value === "backwards") return value;
  throw new InvalidArgumentError(
    `direction must be "forwards" or "backwards", got ${JSON.stringify(value)}`,
  );
}

function maxCountOf(value: unknown): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  if (typeof value === "bigint") return value < 0n ? -1 : Number(value);
  if (typeof value === "number" && (Number.isInteger(value) || value === Infinity) && value >= 0)
    return value;
  throw new InvalidArgumentError(`maxCount must be a non-negative integer, got ${describe(value)}`);
}

function pageSizeOf(value: unknown): number {
  if (value === undefined) return DEFAULT_READ_PAGE_SIZE;
  if (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 4096)
    return value;
  throw new InvalidArgumentError(`pageSize must be an integer in 1..4096, got ${describe(value)}`);
}

function startOf(value: unknown, dir: Direction, what: string): "start" | "end" | number {
  if (value === undefined) return dir === "forwards" ? "start" : "end";
  if (value === "start" || value === "end") return value;
  if (typeof value === "bigint" || typeof value === "number") return toWireNumber(value, what);
  throw new InvalidArgumentError(
    `${what} must be "start", "end" or a number, got ${describe(value)}`,
  );
}

/** The wire filter; `where` names the call for messages. Refuses unknown and unsupported keys. */
export function filterToWire(
  where: string,
  filter: StreamFilter | undefined,
): chorus.IFilter | undefined {
  checkOptions(where, filter, FILTER_KEYS, {
    path: "filter",
    unsupported: UNSUPPORTED_FILTER_KEYS,
  });
  if (!filter) return undefined;
  const list = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((s) => typeof s !== "string" || s === "")) {
      throw new InvalidArgumentError(`filter.${what} must be an array of non-empty strings`);
    }
    return [...(v as string[])];
  };
  return {
    streamNamePrefix: list(filter.streamNamePrefix, "streamNamePrefix"),
    eventTypePrefix: list(filter.eventTypePrefix, "eventTypePrefix"),
    includeSystem: filter.includeSystem === true,
  };
}

interface Page {
  events: ResolvedEvent[];
  endOfStream: boolean;
  next: number;
}

/**
 * Pages lazily with one page of prefetch: while the application consumes a page, the next
 * one is on its way. Each page is one retried operation, so a connection lost mid-read
 * resumes at the first event not yet received.
 */
async function* pagedRead(
  cursor: ReadCursor,
  fetch: (request: ReturnType<ReadCursor["next"]>, signal: AbortSignal) => Promise<Page>,
  userSignal: AbortSignal | undefined,
  target: Pick<ReadMessage, "operation" | "streamId">,
): AsyncGenerator<ResolvedEvent, void, undefined> {
  if (cursor.done) return;
  const local = new AbortController();
  const onAbort = () => local.abort(abortReason(userSignal!));
  userSignal?.addEventListener("abort", onAbort, { once: true });
  if (userSignal?.aborted) onAbort();
  const start = (): Promise<Page> => {
    const req = cursor.next();
    // One traced request per page (diagnostics channels; nothing is built without a listener).
    const p = traceRead(
      () => ({
        ...target,
        direction: cursor.direction,
        from: req.fromEnd ? "end" : BigInt(req.from),
        maxCount: req.maxCount,
      }),
      () => fetch(req, local.signal),
    );
    p.catch(() => undefined); // surfaces when awaited; never an unhandled rejection
    return p;
  };
  try {
    let pending: Promise<Page> | undefined = start();
    while (pending) {
      const page: Page = await pending;
      const deliver = cursor.advance({
        count: page.events.length,
        endOfStream: page.endOfStream,
        next: page.next,
      });
      pending = cursor.done ? undefined : start();
      for (let i = 0; i < deliver; i++) {
        if (local.signal.aborted) throw local.signal.reason;
        yield page.events[i]!;
      }
    }
  } finally {
    userSignal?.removeEventListener("abort", onAbort);
    if (!local.signal.aborted) local.abort(new Error("read ended"));
  }
}

/** Reads a stream as an AsyncIterable; StreamNotFoundError / StreamDeletedError surface while iterating. */
export function readStream(
  ctx: OperationContext,
  streamId: string,
  options: ReadStreamOptions = {},
): AsyncIterable<ResolvedEvent> {
  checkStreamName(streamId);
  checkOperationOptions("readStream", options, READ_STREAM_OPTION_KEYS);
  const dir = direction(options.direction);
  const cursor = new ReadCursor({
    direction: dir,
    from: startOf(options.fromRevision, dir, "fromRevision"),
    maxCount: maxCountOf(options.maxCount),
    pageSize: pageSizeOf(options.pageSize),
  });
  const requireLeader = options.requireLeader ?? ctx.settings.nodePreference === "leader";
  return pagedRead(
    cursor,
    (req, signal) =>
      withRetry(
        ctx,
        { ...options, signal, name: "readStream", requireLeader },
        async (session, s) => {
          const reply = await sendRequest(
            session,
            {
              readStream: {
                streamId,
                direction:
                  dir === "forwards" ? chorus.Direction.FORWARDS : chorus.Direction.BACKWARDS,
                fromEnd: req.fromEnd,
                fromRevision: req.from,
                maxCount: req.maxCount,
                resolveLinks: options.resolveLinks === true,
              },
            },
            { credentials: options.credentials, signal: s, errorContext: { streamId } },
          );
          const r = reply.readResult;
          if (!r)
            throw new ServerError(
              "BAD_REPLY",
              `unexpected reply to a stream read: ${reply.body ?? "none"}`,
            );
          return {
            events: (r.events ?? []).map(resolvedEventFromWire),
            endOfStream: r.endOfStream === true,
            next: Number(r.nextRevision ?? 0),
          };
        },
      ),
    options.signal,
    { operation: "readStream", streamId },
  );
}

/** Reads $all as an AsyncIterable. */
export function readAll(
  ctx: OperationContext,
  options: ReadAllOptions = {},
): AsyncIterable<ResolvedEvent> {
  checkOperationOptions("readAll", options, READ_ALL_OPTION_KEYS);
  const dir = direction(options.direction);
  const filter = filterToWire("readAll", options.filter);
  const cursor = new ReadCursor({
    direction: dir,
    from: startOf(options.fromPosition, dir, "fromPosition"),
    maxCount: maxCountOf(options.maxCount),
    pageSize: pageSizeOf(options.pageSize),
  });
  const requireLeader = options.requireLeader ?? ctx.settings.nodePreference === "leader";
  return pagedRead(
    cursor,
    (req, signal) =>
      withRetry(ctx, { ...options, signal, name: "readAll", requireLeader }, async (session, s) => {
        const reply = await sendRequest(
          session,
          {
            readAll: {
              direction:
                dir === "forwards" ? chorus.Direction.FORWARDS : chorus.Direction.BACKWARDS,
              fromEnd: req.fromEnd,
              fromPosition: req.from,
              maxCount: req.maxCount,
              ...(filter && { filter }),
              resolveLinks: options.resolveLinks === true,
            },
          },
          { credentials: options.credentials, signal: s },
        );
        const r = reply.readResult;
        if (!r)
          throw new ServerError(
            "BAD_REPLY",
            `unexpected reply to a read of $all: ${reply.body ?? "none"}`,
          );
        return {
          events: (r.events ?? []).map(resolvedEventFromWire),
          endOfStream: r.endOfStream === true,
          next: Number(r.nextPosition ?? 0),
        };
      }),
    options.signal,
    { operation: "readAll", streamId: "$all" },
  );
}
