/**
 * Argument checks of the StreamStore operations. Each throws the StoreError INVALID_ARGUMENT
 * the store has always thrown (same message, same stream id), checking in the same order, so
 * every backend refuses the same requests with the same words.
 */
import { eventTypeProblem, streamNameProblem } from "@chorus/protocol";
import { invalid } from "./errors.js";
import type { ExpectedVersion, NewEvent, ReadAllOptions, ReadStreamOptions } from "./types.js";
import { uuidBytes } from "./uuid.js";

/**
 * Longest name (in UTF-16 units) surely within 1024 UTF-8 bytes: a unit is at most 3 bytes
 * (a surrogate pair, 2 units, is 4).
 */
const SURELY_SHORT_UNITS = 341;

/**
 * `streamNameProblem`, answered without a UTF-8 length or a regular expression for the
 * common name (short, no control character): it is checked on every append.
 */
export function streamNameProblemOf(name: unknown): string | null {
  if (typeof name === "string" && name.length > 0 && name.length <= SURELY_SHORT_UNITS) {
    let plain = true;
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      if (c < 0x20 || c === 0x7f) {
        plain = false;
        break;
      }
    }
    if (plain && name !== "$all" && name !== "$$") return null;
  }
  return streamNameProblem(name);
}

/** `eventTypeProblem`, without a UTF-8 length for the common (short) type. */
export function eventTypeProblemOf(type: unknown): string | null {
  if (typeof type === "string" && type.length > 0 && type.length <= SURELY_SHORT_UNITS) return null;
  return eventTypeProblem(type);
}

/**
 * A stream id is a non-empty string of at most 1024 UTF-8 bytes without control characters,
 * and neither `$all` nor `$$` (the protocol's `streamNameProblem`, word for word).
 */
export function validateStreamId(streamId: string): void {
  const problem = streamNameProblemOf(streamId);
  if (problem !== null) throw invalid(problem, streamId);
}

/**
 * An expected version is `any`, `no_stream`, `stream_exists`, or `exact` with a revision that
 * is a safe integer >= 0 ("expected revision must be an integer >= 0"); anything else is
 * "unknown expected version".
 */
export function validateExpectedVersion(expected: ExpectedVersion, streamId: string): void {
  switch (expected?.kind) {
    case "any":
    case "no_stream":
    case "stream_exists":
      return;
    case "exact":
      if (Number.isSafeInteger(expected.revision) && expected.revision >= 0) return;
      throw invalid("expected revision must be an integer >= 0", streamId);
    default:
      throw invalid("unknown expected version", streamId);
  }
}

/**
 * The events of an append: an array (possibly empty) in which, event by event, the id is a
 * UUID, the type is a valid event type (non-empty string of at most 1024 UTF-8 bytes) and data
 * and metadata are byte arrays. The first problem is the one reported. (Sizes are the
 * backend's: the log refuses a record above 64 MiB.) Returns the ids' 16 bytes as latin1
 * strings (`uuidBytes`), parsed by the same check, or an event's `idKey` when its caller
 * parsed the id already.
 */
export function validateNewEvents(events: NewEvent[], streamId: string): string[] {
  if (!Array.isArray(events)) throw invalid("events must be an array", streamId);
  const keys: string[] = [];
  for (const e of events) {
    const key = e.idKey ?? uuidBytes(e.id);
    if (key === undefined) throw invalid(`event id ${String(e.id)} is not a UUID`, streamId);
    keys.push(key);
    const typeProblem = eventTypeProblemOf(e.type);
    if (typeProblem !== null) throw invalid(typeProblem, streamId);
    if (!(e.data instanceof Uint8Array) || !(e.metadata instanceof Uint8Array)) {
      throw invalid("event data and metadata must be byte arrays", streamId);
    }
  }
  return keys;
}

/**
 * A stream read: maxCount a positive integer, maxBytes (when given) a positive integer,
 * fromRevision an integer >= 0 or "end", direction forwards or backwards (checked in that
 * order).
 */
export function validateReadStreamOptions(options: ReadStreamOptions, streamId: string): void {
  const { direction, fromRevision, maxCount } = options;
  if (!Number.isSafeInteger(maxCount) || maxCount < 1)
    throw invalid("maxCount must be a positive integer", streamId);
  if (!validMaxBytes(options.maxBytes))
    throw invalid("maxBytes must be a positive integer", streamId);
  if (fromRevision !== "end" && (!Number.isSafeInteger(fromRevision) || fromRevision < 0)) {
    throw invalid('fromRevision must be an integer >= 0 or "end"', streamId);
  }
  if (direction !== "forwards" && direction !== "backwards")
    throw invalid("direction must be forwards or backwards", streamId);
}

/**
 * A read of `$all`: maxCount a positive integer, maxScan (when given) >= 1, maxBytes (when
 * given) a positive integer, fromPosition an integer from 0 to the commit position or "end",
 * direction forwards or backwards (checked in that order).
 */
export function validateReadAllOptions(options: ReadAllOptions, commitPosition: number): void {
  const { direction, fromPosition, maxCount, maxScan } = options;
  if (!Number.isSafeInteger(maxCount) || maxCount < 1)
    throw invalid("maxCount must be a positive integer");
  if (!((maxScan ?? 1) >= 1)) throw invalid("maxScan must be >= 1");
  if (!validMaxBytes(options.maxBytes)) throw invalid("maxBytes must be a positive integer");
  if (
    fromPosition !== "end" &&
    (!Number.isSafeInteger(fromPosition) || fromPosition < 0 || fromPosition > commitPosition)
  ) {
    throw invalid(
      `fromPosition must be an integer between 0 and the commit position ${commitPosition}, or "end"`,
    );
  }
  if (direction !== "forwards" && direction !== "backwards")
    throw invalid("direction must be forwards or backwards");
}

function validMaxBytes(maxBytes: number | undefined): boolean {
  return maxBytes === undefined || (Number.isSafeInteger(maxBytes) && maxBytes >= 1);
}
