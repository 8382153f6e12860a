import { chorus } from "@chorus/protocol";
import { traceRead, type ReadMessage } from "../diagnostics.js";
import { describe } from "../util/describe.js";
import { InvalidArgumentError, ServerError } from "../errors.js";
import { DEFAULT_IN_PROCESS_READ_PAGE_SIZE, DEFAULT_READ_PAGE_SIZE } from "../settings/defaults.js";
import type { Direction, OperationOptions, ResolvedEvent } from "../types.js";
import { checkOptions, optionKeys } from "../util/options.js";
import { abortReason } from "../util/timers.js";
import type { OperationContext } from "./context.js";
import { decodeJsonOf, resolvedEventFromWire } from "./events.js";
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
  /**
   * Events per page request. Default DEFAULT_READ_PAGE_SIZE (DEFAULT_IN_PROCESS_READ_PAGE_SIZE
   * from a node of this process). `timeoutMs` applies per page.
   */
  pageSize?: number;
  /**
   * Default true: a JSON event's data and metadata come parsed. false: as the bytes stored
   * (Uint8Array), exactly as their writer sent them: for integers beyond 2^53, which
   * JSON.parse changes, or a parser of your own.
   */
  decodeJson?: boolean;
}

export interface ReadStreamOptions extends ReadOptionsBase {
  /** Inclusive. Default "start" (forwards) / "end" (backwards). */
  fromRevision?: "start" | "end" | bigint | number;
}

/**
 * Which events of `$all` a read or subscription gets; the server applies it next to the log,
 * so only matching events travel. Conditions on the stream name and on the event type must
 * both hold. A field takes prefixes or a regular expression, not both.
 */
export interface StreamFilter {
  /** Streams whose name starts with one of these. */
  streamNamePrefix?: readonly string[];
  /**
   * Streams whose name matches this JavaScript regular expression (compiled with the "u"
   * flag; matches anywhere unless anchored with ^ and $). At most 1,000 characters.
   */
  streamNameRegex?: string;
  /** Events whose type starts with one of these. */
  eventTypePrefix?: readonly string[];
  /** Events whose type matches this regular expression (as streamNameRegex). */
  eventTypeRegex?: string;
  /** Include system streams ("$..."). Default false. */
  includeSystem?: boolean;
  /**
   * subscribeToAll only: the server sends a "checkpoint" (a position to resume after) once
   * this many events were examined without a match. Default: the server's own schedule.
   */
  checkpointInterval?: number;
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
  decodeJson: true,
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
  streamNameRegex: true,
  eventTypePrefix: true,
  eventTypeRegex: true,
  includeSystem: true,
  checkpointInterval: true,
});

/** Longest filter regular expression the server accepts, in UTF-16 code units. */
export const MAX_FILTER_PATTERN_LENGTH = 1_000;
/** Largest checkpointInterval (the wire field is 32-bit). */
export const MAX_CHECKPOINT_INTERVAL = 0xffff_ffff;

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

function pageSizeOf(value: unknown, ctx: OperationContext): number {
  if (value === undefined)
    return ctx.settings.location.kind === "inProcess"
      ? DEFAULT_IN_PROCESS_READ_PAGE_SIZE
      : DEFAULT_READ_PAGE_SIZE;
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

/**
 * The wire filter; `where` names the call for messages. Refuses unknown keys, patterns that
 * do not compile or are too long, prefixes together with a pattern on the same field, and
 * (for reads) a checkpointInterval. The server checks again (it also refuses lookaround and
 * backreferences in patterns it must run on its linear-time engine: docs/protocol.md).
 */
export function filterToWire(
  where: string,
  filter: StreamFilter | undefined,
): chorus.IFilter | undefined {
  checkOptions(where, filter, FILTER_KEYS, { path: "filter" });
  if (!filter) return undefined;
  const list = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((s) => typeof s !== "string" || s === "")) {
      throw new InvalidArgumentError(
        `${where}: filter.${what} must be an array of non-empty strings`,
      );
    }
    return [...(v as string[])];
  };
  const streamNamePrefix = list(filter.streamNamePrefix, "streamNamePrefix");
  const eventTypePrefix = list(filter.eventTypePrefix, "eventTypePrefix");
  const streamNameRegex = pattern(where, filter.streamNameRegex, "streamNameRegex");
  const eventTypeRegex = pattern(where, filter.eventTypeRegex, "eventTypeRegex");
  for (const [prefixes, regex, p, r] of [
    [streamNamePrefix, streamNameRegex, "streamNamePrefix", "streamNameRegex"],
    [eventTypePrefix, eventTypeRegex, "eventTypePrefix", "eventTypeRegex"],
  ] as const) {
    if (prefixes.length > 0 && regex !== undefined) {
      throw new InvalidArgumentError(
        `${where}: filter takes ${p} or ${r}, not both (for both conditions, write them into the regular expression)`,
      );
    }
  }
  const interval = filter.checkpointInterval;
  if (interval !== undefined) {
    if (where === "readAll") {
      throw new InvalidArgumentError(
        `${where}: filter.checkpointInterval applies to subscribeToAll only (a read has no checkpoint events)`,
      );
    }
    if (!Number.isInteger(interval) || interval < 1 || interval > MAX_CHECKPOINT_INTERVAL) {
      throw new InvalidArgumentError(
        `${where}: filter.checkpointInterval must be an integer in 1..${MAX_CHECKPOINT_INTERVAL}, got ${describe(interval)}`,
      );
    }
  }
  return {
    streamNamePrefix,
    eventTypePrefix,
    ...(streamNameRegex !== undefined && { streamNameRegex }),
    ...(eventTypeRegex !== undefined && { eventTypeRegex }),
    includeSystem: filter.includeSystem === true,
    ...(interval !== undefined && { checkpointInterval: interval }),
  };
}

/** A filter pattern, checked as the server compiles it ("u" flag, bounded length). */
function pattern(where: string, value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") {
    throw new InvalidArgumentError(
      `${where}: filter.${field} must be a non-empty string, got ${describe(value)}`,
    );
  }
  if (value.length > MAX_FILTER_PATTERN_LENGTH) {
    throw new InvalidArgumentError(
      `${where}: filter.${field} is ${value.length} characters long; at most ${MAX_FILTER_PATTERN_LENGTH} are accepted`,
    );
  }
  try {
    new RegExp(value, "u");
  } catch (err) {
    throw new InvalidArgumentError(
      `${where}: filter.${field} is not a valid regular expression: ${(err as Error).message}`,
    );
  }
  return value;
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
  const decode = decodeJsonOf("readStream", options.decodeJson);
  const dir = direction(options.direction);
  const cursor = new ReadCursor({
    direction: dir,
    from: startOf(options.fromRevision, dir, "fromRevision"),
    maxCount: maxCountOf(options.maxCount),
    pageSize: pageSizeOf(options.pageSize, ctx),
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
            {
              credentials: options.credentials,
              signal: s,
              errorContext: { streamId },
              cancel: true,
            },
          );
          const r = reply.readResult;
          if (!r)
            throw new ServerError(
              "BAD_REPLY",
              `unexpected reply to a stream read: ${reply.body ?? "none"}`,
            );
          return {
            events: (r.events ?? []).map((e) => resolvedEventFromWire(e, ctx.partition, decode)),
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
  const decode = decodeJsonOf("readAll", options.decodeJson);
  const dir = direction(options.direction);
  const filter = filterToWire("readAll", options.filter);
  const cursor = new ReadCursor({
    direction: dir,
    from: startOf(options.fromPosition, dir, "fromPosition"),
    maxCount: maxCountOf(options.maxCount),
    pageSize: pageSizeOf(options.pageSize, ctx),
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
          { credentials: options.credentials, signal: s, cancel: true },
        );
        const r = reply.readResult;
        if (!r)
          throw new ServerError(
            "BAD_REPLY",
            `unexpected reply to a read of $all: ${reply.body ?? "none"}`,
          );
        return {
          events: (r.events ?? []).map((e) => resolvedEventFromWire(e, ctx.partition, decode)),
          endOfStream: r.endOfStream === true,
          next: Number(r.nextPosition ?? 0),
        };
      }),
    options.signal,
    { operation: "readAll", streamId: "$all" },
  );
}
