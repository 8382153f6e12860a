/**
 * The HTTP API's admin endpoints, the JSON the admin UI (`/ui/`) reads: the stream list, reads
 * of `$all`, persistent subscription groups (list, info, replay parked) and the node's stats
 * from its own metrics registry. Documented in docs/http-api.md. Every endpoint refuses bad
 * input with a 4xx JSON answer naming the problem, before anything is read or changed.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { NotLeaderError, type WriteRefusal } from "../node-types.js";
import { PersistentError } from "../persistent/errors.js";
import type { GroupInfo, GroupKey } from "../persistent/group.js";
import { checkGroupName, type PersistentService } from "../persistent/service.js";
import type { StoredEvent } from "../streams/types.js";
import type { NodeContext } from "./context.js";
import { MAX_PAGE_EVENTS, MAX_SCAN_RECORDS, checkStreamName } from "./convert.js";
import { eventsPage } from "./event-json.js";
import { sendJson } from "./json.js";
import { LATENCY_BUCKETS } from "./metrics.js";
import { checkStreamOwnership } from "./partition-guard.js";
import { HttpError } from "./http-error.js";

/** What the admin endpoints need besides the node's context. */
export interface AdminDependencies {
  /** The node's persistent subscription service (the native API owns it). */
  readonly persistent?: () => PersistentService | undefined;
}

/** Most streams one `GET /streams` page lists. */
export const MAX_STREAM_LIST = 1_000;
/** Default page size of `GET /streams`. */
export const DEFAULT_STREAM_LIST = 100;
/**
 * How many of the most recent events `GET /streams` looks at to find streams: the list names
 * the streams written to within them (`complete: false` in the answer when the log is longer).
 */
export const STREAM_LIST_SCAN_EVENTS = 100_000;
/** Longest `prefix` / `after` accepted (stream names are at most this long). */
const MAX_NAME_TEXT = 1_024;

function badRequest(message: string): HttpError {
  return new HttpError(400, "INVALID_ARGUMENT", message);
}

type Reply = (status: number, body: unknown) => void;

/** Paths the admin endpoints own. */
export function isAdminPath(path: string): boolean {
  return (
    path === "/streams" ||
    path === "/stats" ||
    path === "/subscriptions" ||
    path.startsWith("/subscriptions/") ||
    isAllStreamPath(path)
  );
}

function isAllStreamPath(path: string): boolean {
  return path === "/streams/$all" || path.toLowerCase() === "/streams/%24all";
}

/**
 * Serves one admin request (after authentication). `forward` sends the request, as it is, to
 * the leader (persistent subscription groups are served there). Refusals are answered here;
 * other errors propagate to the HTTP layer.
 */
export async function serveAdmin(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  deps: AdminDependencies,
  forward: (refusal: WriteRefusal) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const method = req.method ?? "GET";
  const ok: Reply = (status, body) => {
    ctx.metrics.httpRequests.inc({ method, status: String(status) });
    sendJson(res, status, body);
  };
  // A refusal (HttpError) or a domain error propagates to http.ts, which answers both.
  await route(ctx, req, url, method, deps, forward, ok, signal);
}

async function route(
  ctx: NodeContext,
  req: IncomingMessage,
  url: URL,
  method: string,
  deps: AdminDependencies,
  forward: (refusal: WriteRefusal) => Promise<void>,
  ok: Reply,
  signal: AbortSignal,
): Promise<void> {
  const path = url.pathname;
  if (path === "/streams") {
    requireMethod(method, ["GET"], "/streams");
    await listStreams(ctx, url.searchParams, ok, signal);
    return;
  }
  if (isAllStreamPath(path)) {
    // Writes to $all are refused as for any stream name that is not one.
    if (method !== "GET") checkStreamName("$all");
    await readAll(ctx, url.searchParams, ok, signal);
    return;
  }
  if (path === "/stats") {
    requireMethod(method, ["GET"], "/stats");
    checkParams(url.searchParams, []);
    ok(200, await stats(ctx));
    return;
  }
  await subscriptions(ctx, req, url, method, deps, forward, ok);
}

function requireMethod(method: string, allowed: string[], where: string): void {
  if (!allowed.includes(method)) {
    throw new HttpError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed on ${where}`, {
      Allow: allowed.join(", "),
    });
  }
}

function quote(text: string): string {
  return JSON.stringify(text.length > 32 ? `${text.slice(0, 32)}...` : text);
}

/** Refuses query parameters the endpoint does not know, and repeated ones. */
function checkParams(q: URLSearchParams, known: readonly string[]): void {
  const seen = new Set<string>();
  for (const name of q.keys()) {
    if (!known.includes(name)) {
      throw badRequest(
        known.length === 0
          ? `unknown query parameter ${quote(name)}: this endpoint takes none`
          : `unknown query parameter ${quote(name)}; known: ${known.join(", ")}`,
      );
    }
    if (seen.has(name)) throw badRequest(`query parameter ${quote(name)} is given twice`);
    seen.add(name);
  }
}

function intParam(
  q: URLSearchParams,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = q.get(name);
  if (text === null) return fallback;
  const n = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw badRequest(`${name} must be an integer between ${min} and ${max}, got ${quote(text)}`);
  }
  return n;
}

function boolParam(q: URLSearchParams, name: string): boolean {
  const text = q.get(name);
  if (text === null) return false;
  if (text === "true") return true;
  if (text === "false") return false;
  throw badRequest(`${name} must be true or false, got ${quote(text)}`);
}

function nameParam(q: URLSearchParams, name: string): string | undefined {
  const text = q.get(name);
  if (text === null) return undefined;
  if (text.length > MAX_NAME_TEXT)
    throw badRequest(`${name} is longer than ${MAX_NAME_TEXT} characters`);
  if ([...text].some((c) => c.charCodeAt(0) < 0x20))
    throw badRequest(`${name} must not contain control characters`);
  return text;
}

// ------------------------------------------------------------------------- GET /streams

interface StreamSummary {
  streamId: string;
  lastRevision: string;
  lastPosition: string;
  lastEventType: string;
  lastCreated: string;
}

/**
 * `GET /streams?prefix=P&limit=N&after=NAME&system=false`: the streams written to within the
 * last STREAM_LIST_SCAN_EVENTS events, by name. Streams whose name starts with `$` are listed
 * only with `system=true` or a prefix starting with `$`.
 */
async function listStreams(
  ctx: NodeContext,
  q: URLSearchParams,
  ok: Reply,
  signal: AbortSignal,
): Promise<void> {
  checkParams(q, ["prefix", "limit", "after", "system"]);
  const prefix = nameParam(q, "prefix") ?? "";
  const after = nameParam(q, "after");
  const limit = intParam(q, "limit", DEFAULT_STREAM_LIST, 1, MAX_STREAM_LIST);
  const system = boolParam(q, "system") || prefix.startsWith("$");

  const found = new Map<string, StreamSummary>();
  const note = (e: StoredEvent): boolean => {
    if (found.has(e.streamId)) return false;
    if (!e.streamId.startsWith(prefix)) return false;
    if (!system && e.streamId.startsWith("$")) return false;
    found.set(e.streamId, {
      streamId: e.streamId,
      lastRevision: String(e.revision),
      lastPosition: String(e.position),
      lastEventType: e.type,
      lastCreated: new Date(e.createdMs).toISOString(),
    });
    return false;
  };
  let from: number | "end" = "end";
  let scanned = 0;
  let complete = false;
  // The filter keeps nothing (it notes each stream's newest event), so each call reads up to
  // MAX_SCAN_RECORDS records and says where to go on.
  while (scanned < STREAM_LIST_SCAN_EVENTS) {
    const maxScan = Math.min(MAX_SCAN_RECORDS, STREAM_LIST_SCAN_EVENTS - scanned);
    const page = await ctx.store.readAll({
      direction: "backwards",
      fromPosition: from,
      maxCount: 1,
      filter: note,
      maxScan,
      signal,
    });
    scanned += maxScan;
    if (page.endOfStream) {
      complete = true;
      break;
    }
    if (page.nextPosition === from) break;
    from = page.nextPosition;
  }
  const names = [...found.keys()]
    .filter((name) => after === undefined || name > after)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pageNames = names.slice(0, limit);
  ctx.metrics.reads.inc({ interface: "http", kind: "streams" });
  ok(200, {
    streams: pageNames.map((name) => found.get(name)),
    next: names.length > limit ? (pageNames[pageNames.length - 1] ?? null) : null,
    complete,
  });
}

// ------------------------------------------------------------------------ GET /streams/$all

/** `GET /streams/$all?from=start|end|P&direction=forwards|backwards&count=N` */
async function readAll(
  ctx: NodeContext,
  q: URLSearchParams,
  ok: Reply,
  signal: AbortSignal,
): Promise<void> {
  checkParams(q, ["from", "direction", "count"]);
  const direction = q.get("direction") ?? "forwards";
  if (direction !== "forwards" && direction !== "backwards")
    throw badRequest(`direction must be forwards or backwards, got ${quote(direction)}`);
  const fromText = q.get("from") ?? (direction === "forwards" ? "start" : "end");
  let fromPosition: number | "end";
  if (fromText === "end") fromPosition = "end";
  else if (fromText === "start") fromPosition = 0;
  else if (/^\d{1,16}$/.test(fromText) && Number.isSafeInteger(Number(fromText)))
    fromPosition = Number(fromText);
  else throw badRequest(`from must be start, end or a position, got ${quote(fromText)}`);
  if (direction === "backwards" && fromText === "start")
    throw badRequest("a backwards read of $all cannot start at start; use end or a position");
  const count = intParam(q, "count", 20, 1, MAX_PAGE_EVENTS);
  if (typeof fromPosition === "number" && fromPosition > ctx.store.commitPosition) {
    throw badRequest(
      `position ${fromPosition} is beyond the end of the log (${ctx.store.commitPosition})`,
    );
  }
  const r = await ctx.store.readAll({ direction, fromPosition, maxCount: count, signal });
  ctx.metrics.reads.inc({ interface: "http", kind: "all" });
  ok(
    200,
    eventsPage(r.events, {
      nextPosition: String(r.nextPosition),
      endOfStream: r.endOfStream,
    }),
  );
}

// ------------------------------------------------------------------------ /subscriptions

/** A group as the HTTP API shows it (positions as decimal strings). */
function groupToJson(g: GroupInfo): Record<string, unknown> {
  return {
    streamId: g.streamId,
    group: g.group,
    status: g.status,
    settings: {
      ...g.settings,
      startFrom:
        typeof g.settings.startFrom === "number"
          ? String(g.settings.startFrom)
          : g.settings.startFrom,
    },
    consumers: g.consumers.map((c) => ({ ...c })),
    inFlight: g.inFlight,
    parkedCount: g.parkedCount,
    lastCheckpoint: g.lastCheckpoint === undefined ? null : String(g.lastCheckpoint),
    deliveryRate: g.deliveryRate,
    ackRate: g.ackRate,
    totalDelivered: g.totalDelivered,
    totalAcked: g.totalAcked,
    totalParked: g.totalParked,
  };
}

function decodeSegment(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw badRequest(`the ${what} in the path is not valid percent-encoding`);
  }
}

/** The group a path names: `/subscriptions/{stream}/{group}[/replay-parked]`. */
function groupFromPath(segments: readonly string[]): GroupKey {
  const streamText = decodeSegment(segments[0] ?? "", "stream name");
  const groupText = decodeSegment(segments[1] ?? "", "group name");
  let streamId: string;
  try {
    streamId = streamText === "$all" ? streamText : checkStreamName(streamText);
  } catch (err) {
    throw badRequest(err instanceof Error ? err.message : String(err));
  }
  let group: string;
  try {
    group = checkGroupName(groupText);
  } catch (err) {
    throw badRequest(err instanceof Error ? err.message : String(err));
  }
  return { streamId, group };
}

async function subscriptions(
  ctx: NodeContext,
  req: IncomingMessage,
  url: URL,
  method: string,
  deps: AdminDependencies,
  forward: (refusal: WriteRefusal) => Promise<void>,
  ok: Reply,
): Promise<void> {
  const path = url.pathname;
  const q = url.searchParams;
  const segments = path === "/subscriptions" ? [] : path.slice("/subscriptions/".length).split("/");
  let key: GroupKey | undefined;
  let replay = false;
  let stopAt = 0;
  if (segments.length === 0) {
    requireMethod(method, ["GET"], "/subscriptions");
    checkParams(q, ["stream"]);
  } else if (segments.length === 2) {
    requireMethod(method, ["GET"], "/subscriptions/{stream}/{group}");
    checkParams(q, []);
    key = groupFromPath(segments);
  } else if (segments.length === 3 && segments[2] === "replay-parked") {
    requireMethod(method, ["POST"], "/subscriptions/{stream}/{group}/replay-parked");
    checkParams(q, ["stopAt"]);
    key = groupFromPath(segments);
    stopAt = intParam(q, "stopAt", 0, 0, Number.MAX_SAFE_INTEGER);
    const length = Number(req.headers["content-length"] ?? "0");
    if (req.headers["transfer-encoding"] !== undefined || length > 0)
      throw badRequest("replay-parked takes no body; pass stopAt as a query parameter");
    replay = true;
  } else {
    throw new HttpError(
      404,
      "NOT_FOUND",
      `no such endpoint ${path}: use /subscriptions, /subscriptions/{stream}/{group} or /subscriptions/{stream}/{group}/replay-parked`,
    );
  }
  // A group on a stream lives with the stream's replication group (`$all` is local).
  if (key !== undefined) checkStreamOwnership(ctx.options, key.streamId);
  const streamFilter = nameParam(q, "stream");
  let listStream: string | undefined;
  if (streamFilter !== undefined) {
    try {
      listStream = streamFilter === "$all" ? streamFilter : checkStreamName(streamFilter);
    } catch (err) {
      throw badRequest(err instanceof Error ? err.message : String(err));
    }
  }

  // Groups are served where the persistent subscriptions run (the leader): elsewhere the
  // request goes there as it is.
  const refusal = ctx.persistentCluster()?.writeRefusal();
  if (refusal) {
    await forward(refusal);
    return;
  }
  const service = deps.persistent?.();
  if (service === undefined) {
    throw new HttpError(
      503,
      "NOT_READY",
      "persistent subscriptions are not available on this node",
    );
  }
  try {
    if (key === undefined) {
      const groups = await service.list(listStream);
      ok(200, { subscriptions: groups.map(groupToJson) });
    } else if (!replay) {
      ok(200, groupToJson(await service.getInfo(key)));
    } else {
      const replayed = await service.replayParked(key, stopAt);
      ok(200, { replayed });
    }
  } catch (err) {
    if (err instanceof PersistentError && err.code === "GROUP_NOT_FOUND")
      throw new HttpError(404, "PERSISTENT_SUBSCRIPTION_NOT_FOUND", err.message);
    if (err instanceof NotLeaderError) {
      await forward(err.refusal);
      return;
    }
    throw err;
  }
}

// ------------------------------------------------------------------------------ GET /stats

/** Sums a metric's values (over its labels), optionally only those with `label` = `value`. */
async function total(
  metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> },
  match?: Record<string, string>,
): Promise<number> {
  const { values } = await metric.get();
  return values
    .filter(
      (v) => match === undefined || Object.entries(match).every(([k, x]) => v.labels[k] === x),
    )
    .reduce((sum, v) => sum + v.value, 0);
}

/**
 * The latency of a cumulative histogram at quantile `q` (0..1), in the buckets' unit:
 * linear within the bucket it falls in; the largest finite bound for the overflow bucket.
 */
export function bucketQuantile(
  bounds: readonly number[],
  cumulative: readonly number[],
  q: number,
): number | null {
  const count = cumulative[cumulative.length - 1] ?? 0;
  if (count <= 0) return null;
  const rank = q * count;
  for (let i = 0; i < bounds.length; i++) {
    const upTo = cumulative[i] ?? 0;
    if (upTo >= rank) {
      const below = i === 0 ? 0 : (cumulative[i - 1] ?? 0);
      const lower = i === 0 ? 0 : (bounds[i - 1] ?? 0);
      const upper = bounds[i] ?? lower;
      const inBucket = upTo - below;
      return inBucket <= 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
    }
  }
  return bounds[bounds.length - 1] ?? null;
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000;

async function stats(ctx: NodeContext): Promise<Record<string, unknown>> {
  const m = ctx.metrics;
  const store = ctx.store.stats();
  // Cumulative counts per bucket bound, over every interface.
  const values = (await m.appendDuration.get()).values as {
    value: number;
    metricName?: string;
    labels: Record<string, string | number | undefined>;
  }[];
  const cumulative = LATENCY_BUCKETS.map((le) =>
    values
      .filter((v) => v.metricName?.endsWith("_bucket") === true && Number(v.labels.le) === le)
      .reduce((s, v) => s + v.value, 0),
  );
  const count = values
    .filter((v) => v.metricName?.endsWith("_count") === true)
    .reduce((s, v) => s + v.value, 0);
  const sumSeconds = values
    .filter((v) => v.metricName?.endsWith("_sum") === true)
    .reduce((s, v) => s + v.value, 0);
  const boundsMs = LATENCY_BUCKETS.map((s) => round3(s * 1000));
  // The overflow bucket (+Inf) is the total count.
  const cumulativeAll = [...cumulative, count];
  const boundsAll = [...boundsMs, boundsMs[boundsMs.length - 1] ?? 0];
  const quantile = (q: number): number | null => {
    const v = bucketQuantile(boundsAll, cumulativeAll, q);
    return v === null ? null : round3(v);
  };
  return {
    instanceId: ctx.instanceId,
    state: ctx.state(),
    time: new Date().toISOString(),
    uptimeMs: Math.round(process.uptime() * 1000),
    store: {
      events: store.events,
      streams: store.streams,
      logBytes: store.logBytes,
      commitPosition: String(ctx.store.commitPosition),
    },
    totals: {
      appends: await total(m.appends),
      appendsSucceeded: await total(m.appends, { result: "success" }),
      eventsWritten: await total(m.eventsWritten),
      reads: await total(m.reads),
      deletes: await total(m.deletes),
      requestErrors: await total(m.requestErrors),
      httpRequests: await total(m.httpRequests),
      connectionsActive: await total(m.connectionsActive),
      subscriptionsActive: await total(m.subscriptionsActive),
    },
    appendLatency: {
      count,
      sumMs: round3(sumSeconds * 1000),
      bucketsMs: boundsMs.map((le, i) => ({ le, count: cumulative[i] ?? 0 })),
      p50Ms: quantile(0.5),
      p90Ms: quantile(0.9),
      p99Ms: quantile(0.99),
    },
  };
}
