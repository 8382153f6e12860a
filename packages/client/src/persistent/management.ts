import { chorus, type Frame } from "@chorus/protocol";
import {
  InvalidArgumentError,
  PersistentSubscriptionExistsError,
  PersistentSubscriptionNotFoundError,
  ServerError,
} from "../errors.js";
import type { OperationContext } from "../operations/context.js";
import { filterToWire, type StreamFilter } from "../operations/read.js";
import { sendRequest } from "../operations/request.js";
import { withRetry } from "../operations/retry.js";
import { checkOperationOptions, checkStreamName } from "../operations/validate.js";
import type { OperationOptions } from "../types.js";
import { checkOptions, optionKeys } from "../util/options.js";

export type ConsumerStrategy = "RoundRobin" | "DispatchToSingle" | "Pinned";

/**
 * Which events a group on `$all` delivers: the filter of `readAll` / `subscribeToAll`, run on
 * the server. No `checkpointInterval`: a group checkpoints by its own settings
 * (`checkpointAfterMs`, `minCheckpointCount`, `maxCheckpointCount`), over events the filter
 * leaves out too.
 */
export type PersistentSubscriptionFilter = Omit<StreamFilter, "checkpointInterval">;

/** Settings of a persistent subscription group (api.md); every one has a server default. */
export interface PersistentSubscriptionSettings {
  /** "start", "end" (fixed when the group is created), or a revision / $all position (inclusive). Default "start". */
  startFrom: "start" | "end" | bigint | number;
  /** Default "RoundRobin". Pinned: the events of one stream always go to the same consumer. */
  consumerStrategy: ConsumerStrategy;
  /** An event not acknowledged within this time is delivered again (retryCount + 1); 0: never. Default 30,000. */
  messageTimeoutMs: number;
  /** Deliveries after the first before an event is parked. Default 10. */
  maxRetryCount: number;
  /** Events read ahead while live. Default 500. */
  liveBufferSize: number;
  /** Events per read of the source. Must be below historyBufferSize. Default 20. */
  readBatchSize: number;
  /** Events read ahead while catching up. Default 500. */
  historyBufferSize: number;
  /** Checkpoint at most this often once minCheckpointCount events are done. Default 2,000. */
  checkpointAfterMs: number;
  /** Default 10. */
  minCheckpointCount: number;
  /** Checkpoint at once when this many events are done. Default 1,000. */
  maxCheckpointCount: number;
  /** 0: no limit. Default 0. */
  maxSubscriberCount: number;
  /** Not supported by this server (it stores no link events); must be false. */
  resolveLinks: boolean;
  /**
   * `$all` groups only (InvalidArgumentError on a stream group): the events the group
   * delivers. Default: every non-system event. `update` with `filter: {}` removes it.
   */
  filter: PersistentSubscriptionFilter | undefined;
}

export interface PersistentConsumerInfo {
  readonly name: string;
  /** The consumer's connection as the server sees it (address:port). */
  readonly connection: string;
  readonly inFlight: number;
  readonly bufferSize: number;
  readonly delivered: number;
  readonly acked: number;
}

export interface PersistentSubscriptionInfo {
  readonly streamId: string;
  readonly group: string;
  readonly settings: PersistentSubscriptionSettings;
  /** "Live" while it has consumers, "Idle" otherwise. */
  readonly status: string;
  readonly consumers: readonly PersistentConsumerInfo[];
  /** Events delivered and not yet acknowledged. */
  readonly inFlight: number;
  readonly parkedCount: number;
  /** Revision (stream groups) or position ($all groups) of the last checkpointed event. */
  readonly lastCheckpoint: bigint | undefined;
  /** Events per second over the last 10 s. */
  readonly deliveryRate: number;
  readonly ackRate: number;
  readonly totalDelivered: number;
  readonly totalAcked: number;
  readonly totalParked: number;
  /** With partitions: the replication group this group lives in (none on a merged `$all` info). */
  readonly partition?: string;
}

export interface ReplayParkedOptions extends OperationOptions {
  /** Replay at most this many parked events (default: all). */
  stopAt?: number;
}

const SETTING_KEYS = optionKeys<PersistentSubscriptionSettings>({
  startFrom: true,
  consumerStrategy: true,
  messageTimeoutMs: true,
  maxRetryCount: true,
  liveBufferSize: true,
  readBatchSize: true,
  historyBufferSize: true,
  checkpointAfterMs: true,
  minCheckpointCount: true,
  maxCheckpointCount: true,
  maxSubscriberCount: true,
  resolveLinks: true,
  filter: true,
});

const REPLAY_PARKED_KEYS = optionKeys<ReplayParkedOptions>({
  credentials: true,
  timeoutMs: true,
  signal: true,
  requireLeader: true,
  stopAt: true,
});

const Start = chorus.PersistentSettings.StartKind;
const Strategy = chorus.PersistentSettings.Strategy;
const STRATEGIES: Record<ConsumerStrategy, chorus.PersistentSettings.Strategy> = {
  RoundRobin: Strategy.ROUND_ROBIN,
  DispatchToSingle: Strategy.DISPATCH_TO_SINGLE,
  Pinned: Strategy.PINNED,
};
const INTEGER_SETTINGS = [
  "messageTimeoutMs",
  "maxRetryCount",
  "liveBufferSize",
  "readBatchSize",
  "historyBufferSize",
  "checkpointAfterMs",
  "minCheckpointCount",
  "maxCheckpointCount",
  "maxSubscriberCount",
] as const;

/** A persistent group's source: a stream name or "$all". */
export function checkSource(streamId: unknown): string {
  return streamId === "$all" ? streamId : checkStreamName(streamId);
}

export function checkGroup(group: unknown): string {
  if (typeof group !== "string" || group.length === 0)
    throw new InvalidArgumentError("the group name must be a non-empty string");
  return group;
}

/** The wire form of the settings given (unset ones are left to the server). */
export function settingsToWire(
  where: string,
  settings: Partial<PersistentSubscriptionSettings>,
): chorus.IPersistentSettings {
  if (settings === undefined)
    throw new InvalidArgumentError(`${where}: settings must be an object`);
  checkOptions(where, settings, SETTING_KEYS, { noun: "setting" });
  const wire: chorus.IPersistentSettings = {};
  const start = settings.startFrom;
  if (start !== undefined) {
    if (start === "start") wire.startKind = Start.START;
    else if (start === "end") wire.startKind = Start.END;
    else if (
      (typeof start === "bigint" && start >= 0n && start <= BigInt(Number.MAX_SAFE_INTEGER)) ||
      (typeof start === "number" && Number.isSafeInteger(start) && start >= 0)
    ) {
      wire.startKind = Start.AT;
      wire.startAt = Number(start);
    } else {
      throw new InvalidArgumentError(
        `startFrom must be "start", "end" or a non-negative revision/position, got ${String(start)}`,
      );
    }
  }
  if (settings.consumerStrategy !== undefined) {
    const s = STRATEGIES[settings.consumerStrategy];
    if (s === undefined)
      throw new InvalidArgumentError(
        `consumerStrategy must be one of ${Object.keys(STRATEGIES).join(", ")}, got ${String(settings.consumerStrategy)}`,
      );
    wire.consumerStrategy = s;
  }
  for (const key of INTEGER_SETTINGS) {
    const v = settings[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw new InvalidArgumentError(`${key} must be a non-negative integer, got ${String(v)}`);
    wire[key] = v;
  }
  if (settings.resolveLinks !== undefined) {
    if (typeof settings.resolveLinks !== "boolean")
      throw new InvalidArgumentError("resolveLinks must be a boolean");
    wire.resolveLinks = settings.resolveLinks;
  }
  if (settings.filter !== undefined) {
    const filter = settings.filter as StreamFilter;
    if (typeof filter === "object" && filter !== null && "checkpointInterval" in filter)
      throw new InvalidArgumentError(
        `${where}: filter.checkpointInterval does not apply to persistent subscription groups (they checkpoint by checkpointAfterMs, minCheckpointCount and maxCheckpointCount)`,
      );
    wire.filter = filterToWire(where, filter);
  }
  const { readBatchSize: batch, historyBufferSize: history } = settings;
  if (batch !== undefined && history !== undefined && batch >= history)
    throw new InvalidArgumentError(
      `readBatchSize (${batch}) must be below historyBufferSize (${history})`,
    );
  return wire;
}

/** A group's filter as the server shows it; undefined when it has none. */
function filterFromWire(
  f: chorus.IFilter | null | undefined,
): PersistentSubscriptionFilter | undefined {
  if (!f) return undefined;
  const filter: PersistentSubscriptionFilter = {
    ...(f.streamNamePrefix?.length && { streamNamePrefix: Object.freeze([...f.streamNamePrefix]) }),
    ...(f.streamNameRegex && { streamNameRegex: f.streamNameRegex }),
    ...(f.eventTypePrefix?.length && { eventTypePrefix: Object.freeze([...f.eventTypePrefix]) }),
    ...(f.eventTypeRegex && { eventTypeRegex: f.eventTypeRegex }),
    ...(f.includeSystem === true && { includeSystem: true }),
  };
  return Object.keys(filter).length > 0 ? Object.freeze(filter) : undefined;
}

/**
 * Refuses a filter on a group of one stream (InvalidArgumentError): only `$all` groups take
 * one. The server refuses it too.
 */
function checkFilterSource(where: string, streamId: string, settings: unknown): void {
  if (
    streamId !== "$all" &&
    typeof settings === "object" &&
    settings !== null &&
    (settings as { filter?: unknown }).filter !== undefined
  )
    throw new InvalidArgumentError(
      `${where}: a filter applies to groups on "$all" only, not on stream "${streamId}" (a stream group takes every event of its stream)`,
    );
}

function settingsFromWire(
  w: chorus.IPersistentSettings | null | undefined,
): PersistentSubscriptionSettings {
  const s = w ?? {};
  const strategy = (Object.keys(STRATEGIES) as ConsumerStrategy[]).find(
    (k) => STRATEGIES[k] === s.consumerStrategy,
  );
  return Object.freeze({
    startFrom:
      s.startKind === Start.END
        ? "end"
        : s.startKind === Start.AT
          ? BigInt(s.startAt ?? 0)
          : "start",
    consumerStrategy: strategy ?? "RoundRobin",
    messageTimeoutMs: Number(s.messageTimeoutMs ?? 0),
    maxRetryCount: Number(s.maxRetryCount ?? 0),
    liveBufferSize: Number(s.liveBufferSize ?? 0),
    readBatchSize: Number(s.readBatchSize ?? 0),
    historyBufferSize: Number(s.historyBufferSize ?? 0),
    checkpointAfterMs: Number(s.checkpointAfterMs ?? 0),
    minCheckpointCount: Number(s.minCheckpointCount ?? 0),
    maxCheckpointCount: Number(s.maxCheckpointCount ?? 0),
    maxSubscriberCount: Number(s.maxSubscriberCount ?? 0),
    resolveLinks: s.resolveLinks === true,
    filter: filterFromWire(s.filter),
  });
}

function infoFromWire(
  i: chorus.IPersistentGroupInfo,
  partition: string | undefined,
): PersistentSubscriptionInfo {
  return Object.freeze({
    streamId: i.streamId ?? "",
    group: i.group ?? "",
    settings: settingsFromWire(i.settings),
    status: i.status ?? "",
    consumers: Object.freeze(
      (i.consumers ?? []).map((c) =>
        Object.freeze({
          name: c.name ?? "",
          connection: c.connection ?? "",
          inFlight: c.inFlight ?? 0,
          bufferSize: c.bufferSize ?? 0,
          delivered: Number(c.delivered ?? 0),
          acked: Number(c.acked ?? 0),
        }),
      ),
    ),
    inFlight: i.inFlight ?? 0,
    parkedCount: Number(i.parkedCount ?? 0),
    lastCheckpoint: i.hasCheckpoint ? BigInt(i.lastCheckpoint ?? 0) : undefined,
    deliveryRate: i.deliveryRate ?? 0,
    ackRate: i.ackRate ?? 0,
    totalDelivered: Number(i.totalDelivered ?? 0),
    totalAcked: Number(i.totalAcked ?? 0),
    totalParked: Number(i.totalParked ?? 0),
    ...(partition !== undefined && { partition }),
  });
}

/**
 * Sends one management request to the leader, with the client's retries. A retry whose
 * earlier attempt may have succeeded (the reply was lost) treats `doneIfRetried` errors
 * (exists after a create, not found after a delete) as success.
 */
async function manage(
  ctx: OperationContext,
  name: string,
  streamId: string,
  options: OperationOptions,
  frame: Parameters<typeof sendRequest>[1],
  doneIfRetried?: new (...args: never[]) => Error,
): Promise<Frame> {
  checkOperationOptions(name, options);
  let attempts = 0;
  return withRetry(ctx, { ...options, name, requireLeader: true }, async (session, signal) => {
    attempts++;
    try {
      return await sendRequest(session, frame, {
        credentials: options.credentials,
        signal,
        errorContext: { streamId },
      });
    } catch (err) {
      if (attempts > 1 && doneIfRetried && err instanceof doneIfRetried)
        return chorus.Frame.create({ persistentDone: {} });
      throw err;
    }
  });
}

function expectDone(reply: Frame, what: string): void {
  if (!reply.persistentDone)
    throw new ServerError("BAD_REPLY", `unexpected reply to ${what}: ${reply.body ?? "none"}`);
}

export async function createGroup(
  ctx: OperationContext,
  streamId: string,
  group: string,
  settings: Partial<PersistentSubscriptionSettings> = {},
  options: OperationOptions = {},
): Promise<void> {
  checkFilterSource("persistentSubscriptions.create", checkSource(streamId), settings);
  const frame = {
    persistentCreate: {
      streamId: checkSource(streamId),
      group: checkGroup(group),
      settings: settingsToWire("persistentSubscriptions.create", settings),
    },
  };
  expectDone(
    await manage(
      ctx,
      "persistentSubscriptions.create",
      streamId,
      options,
      frame,
      PersistentSubscriptionExistsError,
    ),
    "create",
  );
}

export async function updateGroup(
  ctx: OperationContext,
  streamId: string,
  group: string,
  settings: Partial<PersistentSubscriptionSettings>,
  options: OperationOptions = {},
): Promise<void> {
  checkFilterSource("persistentSubscriptions.update", checkSource(streamId), settings);
  const frame = {
    persistentUpdate: {
      streamId: checkSource(streamId),
      group: checkGroup(group),
      settings: settingsToWire("persistentSubscriptions.update", settings),
    },
  };
  expectDone(
    await manage(ctx, "persistentSubscriptions.update", streamId, options, frame),
    "update",
  );
}

export async function deleteGroup(
  ctx: OperationContext,
  streamId: string,
  group: string,
  options: OperationOptions = {},
): Promise<void> {
  const frame = { persistentDelete: { streamId: checkSource(streamId), group: checkGroup(group) } };
  expectDone(
    await manage(
      ctx,
      "persistentSubscriptions.delete",
      streamId,
      options,
      frame,
      PersistentSubscriptionNotFoundError,
    ),
    "delete",
  );
}

export async function listGroups(
  ctx: OperationContext,
  streamId: string | undefined,
  options: OperationOptions = {},
): Promise<PersistentSubscriptionInfo[]> {
  const frame = {
    persistentList: { streamId: streamId === undefined ? "" : checkSource(streamId) },
  };
  const reply = await manage(ctx, "persistentSubscriptions.list", streamId ?? "", options, frame);
  if (!reply.persistentListResult)
    throw new ServerError("BAD_REPLY", `unexpected reply to list: ${reply.body ?? "none"}`);
  return (reply.persistentListResult.groups ?? []).map((g) => infoFromWire(g, ctx.partition));
}

export async function getGroupInfo(
  ctx: OperationContext,
  streamId: string,
  group: string,
  options: OperationOptions = {},
): Promise<PersistentSubscriptionInfo> {
  const frame = {
    persistentGetInfo: { streamId: checkSource(streamId), group: checkGroup(group) },
  };
  const reply = await manage(ctx, "persistentSubscriptions.getInfo", streamId, options, frame);
  const info = reply.persistentInfoResult?.info;
  if (!info)
    throw new ServerError("BAD_REPLY", `unexpected reply to getInfo: ${reply.body ?? "none"}`);
  return infoFromWire(info, ctx.partition);
}

export async function replayParked(
  ctx: OperationContext,
  streamId: string,
  group: string,
  options: ReplayParkedOptions = {},
): Promise<void> {
  checkOptions("persistentSubscriptions.replayParked", options, REPLAY_PARKED_KEYS);
  const { stopAt, ...rest } = options;
  if (stopAt !== undefined && (!Number.isSafeInteger(stopAt) || stopAt < 1))
    throw new InvalidArgumentError(`stopAt must be a positive integer, got ${String(stopAt)}`);
  const frame = {
    persistentReplayParked: {
      streamId: checkSource(streamId),
      group: checkGroup(group),
      stopAt: stopAt ?? 0,
    },
  };
  expectDone(
    await manage(ctx, "persistentSubscriptions.replayParked", streamId, rest, frame),
    "replayParked",
  );
}
