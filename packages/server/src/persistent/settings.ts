/**
 * Persistent subscription group settings: defaults (api.md), validation, and the wire form.
 * Pure: no I/O.
 */
import { chorus } from "@chorus/protocol";
import { eventFilter, FilterError, type EventFilter } from "../streams/filters.js";

export type ConsumerStrategy = "RoundRobin" | "DispatchToSingle" | "Pinned";

/** Where a new group starts: the first event, the end at creation time, or a point (inclusive). */
export type StartFrom = "start" | "end" | number;

export interface GroupSettings {
  readonly startFrom: StartFrom;
  readonly consumerStrategy: ConsumerStrategy;
  /** 0: never time out. */
  readonly messageTimeoutMs: number;
  readonly maxRetryCount: number;
  readonly liveBufferSize: number;
  readonly readBatchSize: number;
  readonly historyBufferSize: number;
  readonly checkpointAfterMs: number;
  readonly minCheckpointCount: number;
  readonly maxCheckpointCount: number;
  /** 0: no limit. */
  readonly maxSubscriberCount: number;
  readonly resolveLinks: boolean;
  /**
   * $all groups: the events the group delivers (compiled by streams/filters.ts, as for $all
   * reads). Undefined: every non-system event.
   */
  readonly filter?: GroupFilter | undefined;
}

export const DEFAULT_GROUP_SETTINGS: GroupSettings = Object.freeze({
  startFrom: "start",
  consumerStrategy: "RoundRobin",
  messageTimeoutMs: 30_000,
  maxRetryCount: 10,
  liveBufferSize: 500,
  readBatchSize: 20,
  historyBufferSize: 500,
  checkpointAfterMs: 2_000,
  minCheckpointCount: 10,
  maxCheckpointCount: 1_000,
  maxSubscriberCount: 0,
  resolveLinks: false,
});

const STRATEGIES: readonly ConsumerStrategy[] = ["RoundRobin", "DispatchToSingle", "Pinned"];
/** Upper bounds that keep one group's memory bounded. */
const MAX_BUFFER = 100_000;
const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

/** A settings problem, named for the user; api/errors.ts maps it to INVALID_ARGUMENT. */
export class SettingsError extends Error {
  override readonly name = "SettingsError";
}

function checkInt(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new SettingsError(`${name} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
}

/** Throws SettingsError naming the first problem. `stored`: settings read back (compileGroupFilter). */
export function validateSettings(s: GroupSettings, stored = false): GroupSettings {
  if (!STRATEGIES.includes(s.consumerStrategy)) {
    throw new SettingsError(
      `consumerStrategy must be one of ${STRATEGIES.join(", ")}, got ${String(s.consumerStrategy)}`,
    );
  }
  if (s.startFrom !== "start" && s.startFrom !== "end")
    checkInt("startFrom", s.startFrom, 0, Number.MAX_SAFE_INTEGER);
  checkInt("messageTimeoutMs", s.messageTimeoutMs, 0, MAX_TIMEOUT_MS);
  checkInt("maxRetryCount", s.maxRetryCount, 0, 1_000_000);
  checkInt("liveBufferSize", s.liveBufferSize, 1, MAX_BUFFER);
  checkInt("readBatchSize", s.readBatchSize, 1, MAX_BUFFER);
  checkInt("historyBufferSize", s.historyBufferSize, 1, MAX_BUFFER);
  checkInt("checkpointAfterMs", s.checkpointAfterMs, 0, MAX_TIMEOUT_MS);
  checkInt("minCheckpointCount", s.minCheckpointCount, 1, 1_000_000);
  checkInt("maxCheckpointCount", s.maxCheckpointCount, 1, 1_000_000);
  checkInt("maxSubscriberCount", s.maxSubscriberCount, 0, 100_000);
  if (s.readBatchSize >= s.historyBufferSize) {
    throw new SettingsError(
      `readBatchSize (${s.readBatchSize}) must be below historyBufferSize (${s.historyBufferSize})`,
    );
  }
  if (s.minCheckpointCount > s.maxCheckpointCount) {
    throw new SettingsError(
      `minCheckpointCount (${s.minCheckpointCount}) must not exceed maxCheckpointCount (${s.maxCheckpointCount})`,
    );
  }
  if (s.resolveLinks) {
    throw new SettingsError("resolveLinks is not supported: this server stores no link events");
  }
  if (s.filter !== undefined) compileGroupFilter(s.filter, stored);
  return s;
}

/**
 * A $all group's filter, with the names of the public API (`streamNamePrefix`, ...): so it is
 * stored in the config stream, shown by getInfo / list and by the HTTP admin API.
 */
export interface GroupFilter {
  readonly streamNamePrefix?: readonly string[];
  readonly streamNameRegex?: string;
  readonly eventTypePrefix?: readonly string[];
  readonly eventTypeRegex?: string;
  readonly includeSystem?: boolean;
}

/** The filter of streams/filters.ts a group's filter stands for (none: every non-system event). */
export function toEventFilter(f: GroupFilter | undefined): EventFilter {
  if (f === undefined) return { includeSystem: false };
  return {
    streamNamePrefixes: f.streamNamePrefix ?? [],
    eventTypePrefixes: f.eventTypePrefix ?? [],
    ...(f.streamNameRegex !== undefined && { streamNameRegex: f.streamNameRegex }),
    ...(f.eventTypeRegex !== undefined && { eventTypeRegex: f.eventTypeRegex }),
    includeSystem: f.includeSystem === true,
  };
}

/**
 * Compiles a group's filter as reads do (one code path: eventFilter of streams/filters.ts); a
 * bad one throws SettingsError with the message a read gets ("filter: ..."). `stored`: the
 * group's filter as stored, which was accepted when the group was made (eventFilter).
 */
export function compileGroupFilter(
  f: GroupFilter | undefined,
  stored = false,
): ReturnType<typeof eventFilter> {
  try {
    return eventFilter(toEventFilter(f), stored);
  } catch (err) {
    if (err instanceof FilterError) throw new SettingsError(`filter: ${err.message}`);
    throw err;
  }
}

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === "string");

/**
 * The filter of a wire or stored form, with only the fields that say something; undefined for
 * one with no condition and no system streams (every non-system event: no filter).
 */
function normalFilter(f: Record<string, unknown>): GroupFilter | undefined {
  const { streamNamePrefix, eventTypePrefix, streamNameRegex, eventTypeRegex } = f;
  const out: GroupFilter = {
    ...(isStringArray(streamNamePrefix) &&
      streamNamePrefix.length > 0 && { streamNamePrefix: [...streamNamePrefix] }),
    ...(typeof streamNameRegex === "string" && streamNameRegex !== "" && { streamNameRegex }),
    ...(isStringArray(eventTypePrefix) &&
      eventTypePrefix.length > 0 && { eventTypePrefix: [...eventTypePrefix] }),
    ...(typeof eventTypeRegex === "string" && eventTypeRegex !== "" && { eventTypeRegex }),
    ...(f["includeSystem"] === true && { includeSystem: true }),
  };
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The wire filter of a group (checkpoint_interval refused: groups checkpoint by their settings). */
function filterFromWire(w: chorus.IFilter): GroupFilter | undefined {
  if ((w.checkpointInterval ?? 0) > 0) {
    throw new SettingsError(
      "filter: checkpoint_interval does not apply to persistent subscription groups (they checkpoint by checkpointAfterMs, minCheckpointCount and maxCheckpointCount)",
    );
  }
  return normalFilter({
    streamNamePrefix: w.streamNamePrefix,
    streamNameRegex: w.streamNameRegex,
    eventTypePrefix: w.eventTypePrefix,
    eventTypeRegex: w.eventTypeRegex,
    includeSystem: w.includeSystem,
  });
}

function filterToWire(f: GroupFilter): chorus.IFilter {
  return {
    streamNamePrefix: [...(f.streamNamePrefix ?? [])],
    eventTypePrefix: [...(f.eventTypePrefix ?? [])],
    ...(f.streamNameRegex !== undefined && { streamNameRegex: f.streamNameRegex }),
    ...(f.eventTypeRegex !== undefined && { eventTypeRegex: f.eventTypeRegex }),
    includeSystem: f.includeSystem === true,
  };
}

const WireStart = chorus.PersistentSettings.StartKind;
const WireStrategy = chorus.PersistentSettings.Strategy;

function num(value: number | null | undefined): number | undefined {
  return value === null || value === undefined ? undefined : Number(value);
}

/** Applies the fields present on the wire over `base` (defaults for create, current for update). */
export function settingsFromWire(
  wire: chorus.IPersistentSettings | null | undefined,
  base: GroupSettings,
): GroupSettings {
  const w = wire ?? {};
  let startFrom = base.startFrom;
  if (w.startKind !== null && w.startKind !== undefined) {
    switch (w.startKind) {
      case WireStart.START:
        startFrom = "start";
        break;
      case WireStart.END:
        startFrom = "end";
        break;
      case WireStart.AT:
        startFrom = Number(w.startAt ?? 0);
        break;
      default:
        throw new SettingsError(`unknown start kind ${String(w.startKind)}`);
    }
  }
  let consumerStrategy = base.consumerStrategy;
  if (w.consumerStrategy !== null && w.consumerStrategy !== undefined) {
    const name = (
      {
        [WireStrategy.ROUND_ROBIN]: "RoundRobin",
        [WireStrategy.DISPATCH_TO_SINGLE]: "DispatchToSingle",
        [WireStrategy.PINNED]: "Pinned",
      } as Record<number, ConsumerStrategy | undefined>
    )[w.consumerStrategy];
    if (name === undefined)
      throw new SettingsError(`unknown consumer strategy ${String(w.consumerStrategy)}`);
    consumerStrategy = name;
  }
  return validateSettings({
    startFrom,
    consumerStrategy,
    messageTimeoutMs: num(w.messageTimeoutMs) ?? base.messageTimeoutMs,
    maxRetryCount: num(w.maxRetryCount) ?? base.maxRetryCount,
    liveBufferSize: num(w.liveBufferSize) ?? base.liveBufferSize,
    readBatchSize: num(w.readBatchSize) ?? base.readBatchSize,
    historyBufferSize: num(w.historyBufferSize) ?? base.historyBufferSize,
    checkpointAfterMs: num(w.checkpointAfterMs) ?? base.checkpointAfterMs,
    minCheckpointCount: num(w.minCheckpointCount) ?? base.minCheckpointCount,
    maxCheckpointCount: num(w.maxCheckpointCount) ?? base.maxCheckpointCount,
    maxSubscriberCount: num(w.maxSubscriberCount) ?? base.maxSubscriberCount,
    resolveLinks: w.resolveLinks ?? base.resolveLinks,
    filter: w.filter === null || w.filter === undefined ? base.filter : filterFromWire(w.filter),
  });
}

export function settingsToWire(s: GroupSettings): chorus.IPersistentSettings {
  return {
    startKind:
      s.startFrom === "start"
        ? WireStart.START
        : s.startFrom === "end"
          ? WireStart.END
          : WireStart.AT,
    ...(typeof s.startFrom === "number" && { startAt: s.startFrom }),
    consumerStrategy:
      WireStrategy[
        s.consumerStrategy === "RoundRobin"
          ? "ROUND_ROBIN"
          : s.consumerStrategy === "DispatchToSingle"
            ? "DISPATCH_TO_SINGLE"
            : "PINNED"
      ],
    messageTimeoutMs: s.messageTimeoutMs,
    maxRetryCount: s.maxRetryCount,
    liveBufferSize: s.liveBufferSize,
    readBatchSize: s.readBatchSize,
    historyBufferSize: s.historyBufferSize,
    checkpointAfterMs: s.checkpointAfterMs,
    minCheckpointCount: s.minCheckpointCount,
    maxCheckpointCount: s.maxCheckpointCount,
    maxSubscriberCount: s.maxSubscriberCount,
    resolveLinks: s.resolveLinks,
    ...(s.filter !== undefined && { filter: filterToWire(s.filter) }),
  };
}

/** Settings as stored in the config stream (JSON); unknown or missing keys take defaults. */
export function settingsFromJson(value: unknown): GroupSettings {
  const o = (typeof value === "object" && value !== null ? value : {}) as Partial<GroupSettings>;
  const filter =
    typeof o.filter === "object" && o.filter !== null
      ? normalFilter(o.filter as Record<string, unknown>)
      : undefined;
  return validateSettings({ ...DEFAULT_GROUP_SETTINGS, ...o, filter }, true);
}
