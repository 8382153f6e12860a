/**
 * `chorus subscriptions list|info|create|update|delete|replay-parked`: persistent subscription
 * groups.
 */
import type { PersistentSubscriptionInfo, PersistentSubscriptionSettings } from "@chorus/client";
import type { Context } from "../context.js";
import { UsageError } from "../errors.js";
import { jsonLine, table } from "../records.js";

export interface ListOptions {
  json?: boolean;
}

export async function listGroups(
  ctx: Context,
  stream: string | undefined,
  options: ListOptions,
): Promise<void> {
  const groups = await ctx.withClient((client) =>
    client.persistentSubscriptions.list(stream, { timeoutMs: ctx.timeoutMs }),
  );
  if (options.json) {
    for (const g of groups) await ctx.out.line(jsonLine(infoJson(g)));
    return;
  }
  if (groups.length === 0) {
    await ctx.out.line(
      stream === undefined
        ? "no persistent subscription groups"
        : `no persistent subscription groups on ${stream}`,
    );
    return;
  }
  // Over partitions a group on $all is one group per partition: the column tells them apart.
  const partitioned = ctx.partitioned;
  await ctx.out.lines(
    table(
      [
        ...(partitioned ? ["PARTITION"] : []),
        "STREAM",
        "GROUP",
        "STATUS",
        "CONSUMERS",
        "IN-FLIGHT",
        "PARKED",
        "CHECKPOINT",
      ],
      groups.map((g) => [
        ...(partitioned ? [g.partition ?? "-"] : []),
        g.streamId,
        g.group,
        g.status,
        String(g.consumers.length),
        String(g.inFlight),
        String(g.parkedCount),
        g.lastCheckpoint?.toString() ?? "-",
      ]),
    ),
  );
}

export async function groupInfo(
  ctx: Context,
  stream: string,
  group: string,
  options: ListOptions,
): Promise<void> {
  const info = await ctx.withClient((client) =>
    client.persistentSubscriptions.getInfo(stream, group, { timeoutMs: ctx.timeoutMs }),
  );
  if (options.json) {
    await ctx.out.line(jsonLine(infoJson(info)));
    return;
  }
  await ctx.out.lines(describeInfo(info));
}

/**
 * A group's info for --json: a group with no checkpoint yet has `"lastCheckpoint": null`;
 * over partitions, a `$all` group's info has each partition's under `partitions`.
 */
function infoJson(info: PersistentSubscriptionInfo): object {
  const partitions = partitionsOf(info);
  return {
    ...info,
    lastCheckpoint: info.lastCheckpoint ?? null,
    ...(partitions && {
      partitions: Object.fromEntries(
        Object.entries(partitions).map(([name, p]) => [name, infoJson(p)]),
      ),
    }),
  };
}

/** Each partition's info of a partitioned client's `$all` group; undefined otherwise. */
function partitionsOf(
  info: PersistentSubscriptionInfo,
): Readonly<Record<string, PersistentSubscriptionInfo>> | undefined {
  return (info as { partitions?: Readonly<Record<string, PersistentSubscriptionInfo>> }).partitions;
}

function describeInfo(info: PersistentSubscriptionInfo): string[] {
  const s = info.settings;
  const partitions = partitionsOf(info);
  const lines = [
    `stream:           ${info.streamId}`,
    `group:            ${info.group}`,
    ...(info.partition !== undefined ? [`partition:        ${info.partition}`] : []),
    `status:           ${info.status}`,
    `in flight:        ${info.inFlight}`,
    `parked:           ${info.parkedCount}`,
    `last checkpoint:  ${info.lastCheckpoint?.toString() ?? "-"}`,
    `delivered:        ${info.totalDelivered} (${info.deliveryRate.toFixed(1)}/s)`,
    `acknowledged:     ${info.totalAcked} (${info.ackRate.toFixed(1)}/s)`,
    `parked in total:  ${info.totalParked}`,
    "settings:",
    ...Object.entries(s)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `  ${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`),
    `consumers:        ${info.consumers.length}`,
  ];
  for (const c of info.consumers) {
    lines.push(
      `  ${c.name} ${c.connection}: in flight ${c.inFlight}, buffer ${c.bufferSize}, delivered ${c.delivered}, acknowledged ${c.acked}`,
    );
  }
  if (partitions) {
    // The lines above sum every partition's; each partition's own, with its checkpoint.
    lines.push("partitions:");
    for (const [name, p] of Object.entries(partitions)) {
      lines.push(
        `  ${name}: ${p.status}, in flight ${p.inFlight}, parked ${p.parkedCount}, last checkpoint ${p.lastCheckpoint?.toString() ?? "-"}, consumers ${p.consumers.length}`,
      );
    }
  }
  return lines;
}

/** The flags of `create`, as commander parses them. */
export interface CreateOptions {
  startFrom?: "start" | "end" | bigint;
  strategy?: PersistentSubscriptionSettings["consumerStrategy"];
  messageTimeoutMs?: number;
  maxRetryCount?: number;
  maxSubscriberCount?: number;
  liveBufferSize?: number;
  readBatchSize?: number;
  historyBufferSize?: number;
  checkpointAfterMs?: number;
  minCheckpointCount?: number;
  maxCheckpointCount?: number;
  json?: boolean;
}

/** The group settings the flags give (the rest are the server's defaults). */
export function settingsOf(options: CreateOptions): Partial<PersistentSubscriptionSettings> {
  const settings: Partial<PersistentSubscriptionSettings> = {};
  if (options.startFrom !== undefined) settings.startFrom = options.startFrom;
  if (options.strategy !== undefined) settings.consumerStrategy = options.strategy;
  const numeric = [
    "messageTimeoutMs",
    "maxRetryCount",
    "maxSubscriberCount",
    "liveBufferSize",
    "readBatchSize",
    "historyBufferSize",
    "checkpointAfterMs",
    "minCheckpointCount",
    "maxCheckpointCount",
  ] as const;
  for (const key of numeric) {
    const v = options[key];
    if (v !== undefined) settings[key] = v;
  }
  return settings;
}

export async function createGroup(
  ctx: Context,
  stream: string,
  group: string,
  options: CreateOptions,
): Promise<void> {
  await ctx.withClient((client) =>
    client.persistentSubscriptions.create(stream, group, settingsOf(options), {
      timeoutMs: ctx.timeoutMs,
    }),
  );
  await done(
    ctx,
    options,
    { created: { streamId: stream, group } },
    `created group ${group} on ${stream}`,
  );
}

/** Changes the settings the flags name; the others keep their values. */
export async function updateGroup(
  ctx: Context,
  stream: string,
  group: string,
  options: CreateOptions,
): Promise<void> {
  const settings = settingsOf(options);
  const changed = Object.keys(settings);
  if (changed.length === 0)
    throw new UsageError("subscriptions update: name at least one setting to change");
  await ctx.withClient((client) =>
    client.persistentSubscriptions.update(stream, group, settings, { timeoutMs: ctx.timeoutMs }),
  );
  await done(
    ctx,
    options,
    { updated: { streamId: stream, group, settings: changed } },
    `updated group ${group} on ${stream} (${changed.join(", ")}); its consumers join again with them`,
  );
}

export async function deleteGroup(
  ctx: Context,
  stream: string,
  group: string,
  options: ListOptions,
): Promise<void> {
  await ctx.withClient((client) =>
    client.persistentSubscriptions.delete(stream, group, { timeoutMs: ctx.timeoutMs }),
  );
  await done(
    ctx,
    options,
    { deleted: { streamId: stream, group } },
    `deleted group ${group} on ${stream}`,
  );
}

export interface ReplayOptions {
  stopAt?: number;
  json?: boolean;
}

export async function replayParked(
  ctx: Context,
  stream: string,
  group: string,
  options: ReplayOptions,
): Promise<void> {
  await ctx.withClient((client) =>
    client.persistentSubscriptions.replayParked(stream, group, {
      timeoutMs: ctx.timeoutMs,
      ...(options.stopAt !== undefined && { stopAt: options.stopAt }),
    }),
  );
  await done(
    ctx,
    options,
    { replayParked: { streamId: stream, group, stopAt: options.stopAt ?? null } },
    `replaying ${options.stopAt === undefined ? "every parked event" : `up to ${options.stopAt} parked events`} of group ${group} on ${stream}`,
  );
}

async function done(
  ctx: Context,
  options: { json?: boolean },
  json: object,
  text: string,
): Promise<void> {
  await ctx.out.line(options.json ? jsonLine(json) : text);
}
