// The same random sequence of client operations against one node of each backend (the log in
// memory, the log on disk, PostgreSQL), compared answer by answer. The stream rules are shared
// code (packages/server/src/streams), so any difference is a backend reading or writing state
// wrongly: an index that loses an event after a restart, a page that ends early, a metadata
// rule applied to one query and not another, a retry written twice.
//
// Operations draw from small pools (a few streams, event types, ids reused by retries), so
// that they meet each other's state: appends with every kind of expected version, retries of
// earlier appends (some after the stream changed), soft and hard deletes, stream metadata
// (maxCount, truncateBefore, a long maxAgeSec, keys of the user's, and raw events written to
// `$$stream` directly), stream and `$all` reads in both directions from any place with small
// pages and filters, catch-up subscriptions. The targets: a node on each backend, an
// in-process node (no socket), a 3-node cluster, and nodes on disk and on PostgreSQL whose
// appends, deletes and reads go through the HTTP API, and a partitioned client over two groups
// (its `$all` compared group by group, and resumed from each group's position). The disk and
// PostgreSQL nodes and the cluster's leader are killed and restarted between rounds.
//
// Positions differ between backends (byte offsets on the log, consecutive numbers on
// PostgreSQL), so answers are compared with each position replaced by the event it names.
//
// CHORUS_DIFF_SEED and CHORUS_DIFF_OPS run one seed longer; CHORUS_DIFF_TRACE prints each step.
import {
  ChorusClient,
  ChorusError,
  ConnectionSettings,
  WrongExpectedVersionError,
  binaryEvent,
  jsonEvent,
  type EventData,
  type ExpectedVersion,
  type PartitionedReadAllOptions,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type ResolvedEvent,
  type StreamFilter,
  type Subscription,
} from "@chorus/client";
import { partitionOf } from "@chorus/protocol";
import { startCluster, type TestCluster } from "@chorus/testing";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { pick, randomInt, seededRandom, seededUuid, type Random } from "../chaos/schedule.js";
import {
  BACKENDS,
  clientSettings,
  closeBackends,
  killAndRestartBackendNode,
  startBackendNode,
  type Backend,
} from "../backends.js";
import { startChorus } from "../cli-process.js";
import { differentialRun, outcomeOf } from "./differential-kit.js";

afterAll(closeBackends);

const { seeds: SEEDS, ops: OPS } = differentialRun(500);
const ROUND_OPS = 120;
const OP_TIMEOUT_MS = 10_000;

const STREAMS = ["a", "b", "c-1", "c-2", "{t}-x", "ü-日本", `l-${"x".repeat(300)}`];
const TYPES = ["Placed", "Paid", "Pa", "Shipped", "$own", "Bestätigt"];
/** Data of a large event: a few of them fill a page's 4 MiB, so pages end on bytes too. */
const LARGE_BYTES = 900 * 1024;

/** One backend's node and client, and the positions it answered, by the event each names. */
interface Target {
  /** The backend, "cluster", or "http" / "http:postgres" (the HTTP API of a disk / PostgreSQL node). */
  backend: string;
  /** Kills and restarts the target's node (a cluster's leader); absent for memory. */
  restart?: () => Promise<void>;
  stop: () => Promise<void>;
  client: ChorusClient;
  /** Appends, deletes and reads go through the HTTP API instead, where it has them. */
  http?: HttpApi;
  /** The node's connection string (a node in a child process). */
  connection?: string;
  /**
   * A partitioned client's groups (each numbers its own positions). Its `$all` answers are not
   * compared with the others' (no order across groups); `checkMerged` checks them by group.
   */
  groups?: readonly string[];
  /** Place (placeOf) -> "stream@revision" of the event there. */
  eventAt: Map<string, string>;
  /** "stream@revision" -> its position. */
  positionOf: Map<string, bigint>;
}

function randomValue(random: Random, depth = 0): unknown {
  switch (randomInt(random, 0, depth > 1 ? 3 : 5)) {
    case 0:
      return randomInt(random, -1000, 1000);
    case 1:
      return pick(random, ["", "x", "é ü", "日本", "\u0000", 'a"b\\c', "\ud83d\ude00"]);
    case 2:
      return pick(random, [true, false, null, 1.5, -0.25]);
    case 3:
      return randomInt(random, 0, 1e9) * 1e3;
    case 4:
      return Array.from({ length: randomInt(random, 0, 3) }, () => randomValue(random, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: randomInt(random, 0, 3) }, (_, i) => [
          `k${i}`,
          randomValue(random, depth + 1),
        ]),
      );
  }
}

/** A step of the sequence: what it does, and how to run it on one target. */
interface Op {
  describe: string;
  run(target: Target): Promise<unknown>;
  /**
   * For a `$all` operation, which a partitioned client answers merged from its groups: checks
   * the partitioned `target`'s answer, group by group, against the `reference`'s.
   */
  checkMerged?(reference: Target, target: Target): Promise<void>;
}

/**
 * The lines of a `$all` answer (eventText) by the group that owns each line's stream, in their
 * order: what a merge over `groups` must keep (per-group order; no order across groups).
 */
function byGroup(lines: readonly string[], groups: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = Object.fromEntries(groups.map((g) => [g, []]));
  for (const line of lines) {
    const key = line.slice(0, line.indexOf(" "));
    out[partitionOf(key.slice(0, key.lastIndexOf("@")), groups)]!.push(line);
  }
  return out;
}

/** An answer made comparable by group: an error as it is, lines by group. */
function answerByGroup(answer: unknown, groups: readonly string[]): unknown {
  return Array.isArray(answer) ? byGroup(answer as string[], groups) : answer;
}

/**
 * `$all` over a partitioned client, read whole from its start (or end): by group, what the
 * reference reads. With `maxCount`, the merge hands over that many (or all there are), a
 * prefix of each group's events; read on from the positions of the last ones each group
 * handed over (`fromPosition` by group), it hands over the rest and nothing twice.
 */
async function checkMergedRead(
  reference: Target,
  t: Target,
  options: Omit<ReadAllOptions, "fromPosition" | "maxCount" | "timeoutMs">,
  maxCount: number | undefined,
  describe: string,
): Promise<void> {
  const groups = t.groups!;
  const from = options.direction === "backwards" ? "end" : "start";
  const read = (target: Target, more: Partial<PartitionedReadAllOptions> = {}) =>
    outcome(() =>
      collect(
        target,
        target.client.readAll({
          ...options,
          fromPosition: from,
          timeoutMs: OP_TIMEOUT_MS,
          ...more,
        }),
      ),
    );
  const expected = answerByGroup(await read(reference), groups);
  const whole = await read(t);
  expect(answerByGroup(whole, groups), `${describe}: merged, by group`).toEqual(expected);
  if (maxCount === undefined || !Array.isArray(whole)) return;
  const handed: ResolvedEvent[] = [];
  for await (const e of t.client.readAll({
    ...options,
    fromPosition: from,
    maxCount,
    timeoutMs: OP_TIMEOUT_MS,
  }))
    handed.push(e);
  const lines = handed.map((e) => eventText(t, e));
  expect(lines.length, `${describe}: merged, max ${maxCount}`).toBe(
    Math.min(maxCount, whole.length),
  );
  const some = byGroup(lines, groups);
  const all = byGroup(whole as string[], groups);
  for (const g of groups)
    expect(some[g], `${describe}: max ${maxCount}, group ${g}`).toEqual(
      all[g]!.slice(0, some[g]!.length),
    );
  if (options.direction === "backwards") return;
  const after: Record<string, bigint | "start"> = Object.fromEntries(
    groups.map((g) => [g, "start" as const]),
  );
  for (const e of handed) after[e.event.partition!] = e.event.position;
  const rest = await read(t, { fromPosition: after });
  const restByGroup = answerByGroup(rest, groups) as Record<string, string[]>;
  for (const g of groups)
    expect([...some[g]!, ...restByGroup[g]!], `${describe}: resumed, group ${g}`).toEqual(all[g]);
}

/** Where a position of `stream` is: the position, with its group for a partitioned client. */
const placeOf = (target: Target, stream: string, position: bigint): string =>
  target.groups === undefined
    ? String(position)
    : `${partitionOf(stream, target.groups)}:${position}`;

const positionKey = (target: Target, stream: string, position: bigint): string =>
  target.eventAt.get(placeOf(target, stream, position)) ?? `unknown position`;

function remember(target: Target, stream: string, position: bigint, key: string): void {
  const place = placeOf(target, stream, position);
  const before = target.eventAt.get(place);
  if (before !== undefined && before !== key) {
    throw new Error(`${target.backend}: position ${place} named ${before}, now ${key}`);
  }
  target.eventAt.set(place, key);
  target.positionOf.set(key, position);
}

/** The answer of a target that cannot take part in an operation (`$all` over partitions). */
const SKIPPED = Symbol("skipped");

/**
 * An answer as it compares on `target`. A partitioned client learns no positions from `$all`
 * reads (skipped), so whether a write's position is one it saw before says nothing there.
 */
function comparable(target: Target, answer: unknown): unknown {
  if (target.groups === undefined || typeof answer !== "object" || answer === null) return answer;
  if (Array.isArray(answer)) return answer;
  const { position: _position, deleted: _deleted, ...rest } = answer as Record<string, unknown>;
  return rest;
}

/** A refusal of the HTTP API: its `error` code (and `actual` of a wrong expected version). */
class HttpRefusal extends Error {
  constructor(
    readonly code: string,
    readonly actual: string | undefined,
  ) {
    super(code);
  }
}

interface HttpEvent {
  streamId: string;
  revision: string;
  position: string;
  eventId: string;
  eventType: string;
  isJson: boolean;
  data: unknown;
  metadata: unknown;
}

/** What the operations below use of a client; the HTTP API does the same where it can. */
interface StreamApi {
  appendToStream(
    stream: string,
    events: EventData[],
    options: { expectedVersion: ExpectedVersion; timeoutMs: number },
  ): Promise<{ nextExpectedVersion: bigint; position: bigint }>;
  deleteStream(
    stream: string,
    options: { expectedVersion: ExpectedVersion; hard: boolean; timeoutMs: number },
  ): Promise<{ position: bigint }>;
  readStream(stream: string, options: ReadStreamOptions): AsyncIterable<ResolvedEvent>;
  readAll(options: ReadAllOptions): AsyncIterable<ResolvedEvent>;
}

/** The node's HTTP API (docs/http-api.md) behind the same calls as the client's. */
class HttpApi implements StreamApi {
  constructor(private readonly endpoint: () => string) {}

  private async call(
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<unknown> {
    const res = await fetch(`http://${this.endpoint()}${path}`, {
      method,
      body,
      headers: { "content-type": "application/json", ...headers },
      signal: AbortSignal.timeout(OP_TIMEOUT_MS),
    });
    const answer = (await res.json()) as Record<string, unknown>;
    if (res.status >= 400) {
      const actual = typeof answer["actual"] === "string" ? answer["actual"] : undefined;
      throw new HttpRefusal(String(answer["error"]), actual);
    }
    return answer;
  }

  async appendToStream(
    stream: string,
    events: EventData[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<{ nextExpectedVersion: bigint; position: bigint }> {
    const text = (bytes: Uint8Array | undefined): string =>
      bytes === undefined ? "" : Buffer.from(bytes).toString("utf8");
    const body = `[${events
      .map((e) => {
        const metadata = text(e.metadata);
        return `{"eventId":${JSON.stringify(e.id)},"eventType":${JSON.stringify(e.type)},"data":${text(e.data)}${metadata === "" ? "" : `,"metadata":${metadata}`}}`;
      })
      .join(",")}]`;
    const answer = (await this.call("POST", `/streams/${encodeURIComponent(stream)}`, body, {
      "chorus-expected-version": String(options.expectedVersion),
    })) as { nextExpectedVersion: string; position: string };
    return {
      nextExpectedVersion: BigInt(answer.nextExpectedVersion),
      position: BigInt(answer.position),
    };
  }

  async deleteStream(
    stream: string,
    options: { expectedVersion: ExpectedVersion; hard: boolean },
  ): Promise<{ position: bigint }> {
    const answer = (await this.call("DELETE", `/streams/${encodeURIComponent(stream)}`, undefined, {
      "chorus-expected-version": String(options.expectedVersion),
      "chorus-hard-delete": String(options.hard),
    })) as { position: string };
    return { position: BigInt(answer.position) };
  }

  async *readStream(stream: string, options: ReadStreamOptions): AsyncIterable<ResolvedEvent> {
    const direction = options.direction ?? "forwards";
    let from = String(
      options.fromRevision === "start"
        ? 0
        : (options.fromRevision ?? (direction === "forwards" ? 0 : "end")),
    );
    yield* this.pages(options, (count) => {
      const path = `/streams/${encodeURIComponent(stream)}?from=${from}&count=${count}&direction=${direction}`;
      return this.call("GET", path).then((a) => {
        const page = a as { events: HttpEvent[]; endOfStream: boolean; nextRevision: string };
        from = page.nextRevision;
        return page;
      });
    });
  }

  async *readAll(options: ReadAllOptions): AsyncIterable<ResolvedEvent> {
    if (options.filter !== undefined) throw new Error("the HTTP API reads $all without filters");
    const direction = options.direction ?? "forwards";
    let from = String(options.fromPosition ?? (direction === "forwards" ? "start" : "end"));
    yield* this.pages(options, (count) =>
      this.call("GET", `/streams/%24all?from=${from}&count=${count}&direction=${direction}`).then(
        (a) => {
          const page = a as { events: HttpEvent[]; endOfStream: boolean; nextPosition: string };
          from = page.nextPosition;
          return page;
        },
      ),
    );
  }

  /** Pages of `pageSize` until `maxCount` events or the end, as the client reads. */
  private async *pages(
    options: { maxCount?: number | bigint; pageSize?: number },
    page: (count: number) => Promise<{ events: HttpEvent[]; endOfStream: boolean }>,
  ): AsyncIterable<ResolvedEvent> {
    let left = options.maxCount === undefined ? Infinity : Number(options.maxCount);
    while (left > 0) {
      const { events, endOfStream } = await page(Math.min(options.pageSize ?? 100, left));
      for (const e of events.slice(0, left)) yield { event: recordedOf(e) };
      left -= events.length;
      if (endOfStream) return;
    }
  }
}

/** An HTTP event as the client would hand it over (data parsed, or bytes). */
function recordedOf(e: HttpEvent): RecordedEvent {
  const body = (value: unknown, empty: unknown): unknown =>
    value === null
      ? empty
      : e.isJson
        ? value
        : new Uint8Array(Buffer.from(value as string, "base64"));
  return {
    streamId: e.streamId,
    revision: BigInt(e.revision),
    position: BigInt(e.position),
    id: e.eventId,
    type: e.eventType,
    isJson: e.isJson,
    data: body(e.data, e.isJson ? undefined : new Uint8Array(0)),
    metadata: body(e.metadata, undefined),
    created: new Date(0),
  };
}

/** Where an operation goes: the HTTP API when the target has it and it serves the call. */
const api = (t: Target, httpServes = true): StreamApi =>
  t.http !== undefined && httpServes ? t.http : t.client;

/** The position of event `key` ("stream@revision") on this target. */
function positionIn(target: Target, key: string): bigint {
  const p = target.positionOf.get(key);
  if (p === undefined) throw new Error(`${target.backend} never answered ${key}`);
  return p;
}

function errorOutcome(err: unknown): unknown {
  if (err instanceof WrongExpectedVersionError) {
    return { error: err.code, actual: String(err.actualVersion) };
  }
  if (err instanceof ChorusError) return { error: err.code };
  if (err instanceof HttpRefusal) {
    return err.actual === undefined ? { error: err.code } : { error: err.code, actual: err.actual };
  }
  throw err;
}

const outcome = (run: () => Promise<unknown>): Promise<unknown> => outcomeOf(run, errorOutcome);

function eventText(target: Target, e: ResolvedEvent): string {
  const ev = e.event;
  const key = `${ev.streamId}@${ev.revision}`;
  remember(target, ev.streamId, ev.position, key);
  return `${key} ${eventContent(ev)}`;
}

/** An event's type, id, kind, data and metadata as text (not where it is). */
function eventContent(ev: RecordedEvent): string {
  const full = ev.isJson
    ? JSON.stringify(ev.data)
    : Buffer.from(ev.data as Uint8Array).toString("hex");
  const meta = ev.isJson
    ? JSON.stringify(ev.metadata)
    : ev.metadata === undefined
      ? "none"
      : Buffer.from(ev.metadata as Uint8Array).toString("hex");
  // A large event's data by its digest, so that a failure prints a line, not a megabyte.
  const data =
    full.length > 1000
      ? `sha1:${createHash("sha1").update(full).digest("hex")}:${full.length}`
      : full;
  // setStreamMetadata picks its event's id itself: the same operation has another id on each target.
  const id = ev.type === "$metadata" ? "-" : ev.id;
  return `${ev.type} ${id} ${ev.isJson ? "json" : "bin"} ${data} ${meta}`;
}

async function collect(target: Target, events: AsyncIterable<ResolvedEvent>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of events) out.push(eventText(target, e));
  return out;
}

/**
 * A subscription's catch-up: the events it hands over until it says `caughtUp` (nobody writes
 * meanwhile, so that is where the log ends).
 */
async function catchUp(target: Target, sub: Subscription): Promise<string[]> {
  const out: string[] = [];
  let caught = false;
  const caughtUp = new Promise<void>((resolve) =>
    sub.once("caughtUp", () => {
      caught = true;
      resolve();
    }),
  );
  const loop = (async () => {
    for await (const e of sub) {
      out.push(eventText(target, e));
      if (caught) break;
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no caughtUp in time")), OP_TIMEOUT_MS);
  });
  try {
    await Promise.race([caughtUp, loop, timedOut]);
  } finally {
    clearTimeout(timer);
    await sub.unsubscribe();
  }
  await loop;
  return out;
}

/** The pools and what the sequence has done so far (the same for every target). */
class Generator {
  /** Appends made so far, for retries: stream, expected version, events. */
  readonly appends: { stream: string; expected: ExpectedVersion; events: EventData[] }[] = [];
  /** Events seen (from reads): "stream@revision", for `$all` reads from their positions. */
  readonly keys = new Set<string>();
  /** A guess of each stream's last revision, for exact expected versions near it. */
  readonly last = new Map<string, number>();

  constructor(private readonly random: Random) {}

  private stream(): string {
    const r = this.random();
    if (r < 0.04) return `$$${pick(this.random, STREAMS)}`;
    if (r < 0.07) return "$sys";
    return pick(this.random, STREAMS);
  }

  private expected(stream: string): ExpectedVersion {
    const last = this.last.get(stream) ?? -1;
    const r = this.random();
    if (r < 0.35) return "any";
    if (r < 0.5) return "no_stream";
    if (r < 0.6) return "stream_exists";
    if (r < 0.62) return BigInt(pick(this.random, [Number.MAX_SAFE_INTEGER, 2 ** 40, 1000]));
    if (r < 0.7) return BigInt(randomInt(this.random, 0, 6));
    return BigInt(Math.max(0, last + randomInt(this.random, -1, 1)));
  }

  private events(stream: string): EventData[] {
    // Now and then no events at all: an append that only checks the expected version.
    const count = this.random() < 0.03 ? 0 : randomInt(this.random, 1, 4);
    return Array.from({ length: count }, () => {
      const id = seededUuid(this.random);
      const type = pick(this.random, TYPES);
      if (stream.startsWith("$$") && this.random() < 0.7) {
        const meta: Record<string, unknown> = {};
        if (this.random() < 0.5) meta["$maxCount"] = pick(this.random, [1, 2, 3, 0, -1, "2"]);
        if (this.random() < 0.4) meta["$tb"] = pick(this.random, [0, 1, 2, 5, 1.5, null]);
        if (this.random() < 0.2) meta["$maxAge"] = pick(this.random, [3600, 0, "x"]);
        if (this.random() < 0.3) meta["own"] = randomValue(this.random);
        return jsonEvent({ id, type: "$metadata", data: meta });
      }
      if (this.random() < 0.15) {
        const bytes = Uint8Array.from({ length: randomInt(this.random, 0, 8) }, () =>
          randomInt(this.random, 0, 255),
        );
        return binaryEvent({ id, type, data: bytes, metadata: bytes.slice(0, 2) });
      }
      if (this.random() < 0.03) {
        const fill = String.fromCharCode(97 + randomInt(this.random, 0, 25)).repeat(LARGE_BYTES);
        return jsonEvent({ id, type, data: { v: fill } });
      }
      const metadata = this.random() < 0.3 ? { m: randomValue(this.random) } : undefined;
      return jsonEvent({ id, type, data: { v: randomValue(this.random) }, metadata });
    });
  }

  private filter(): StreamFilter | undefined {
    const r = this.random();
    if (r < 0.4) return undefined;
    if (r < 0.55) return { includeSystem: true };
    if (r < 0.7) return { streamNamePrefix: [pick(this.random, ["c-", "a", "$$", "{t}"])] };
    if (r < 0.8)
      return { eventTypePrefix: [pick(this.random, ["Pa", "$", "S"])], includeSystem: true };
    if (r < 0.9)
      return {
        streamNameRegex: pick(this.random, ["^c-\\d$", "x$", "^\\$\\$"]),
        includeSystem: this.random() < 0.5,
      };
    return { eventTypeRegex: "^Pa(id)?$" };
  }

  next(): Op {
    const r = this.random();
    const random = this.random;
    if (r < 0.3) {
      const stream = this.stream();
      const expected = this.expected(stream);
      const events = this.events(stream);
      this.appends.push({ stream, expected, events });
      return this.append(stream, expected, events, "append");
    }
    if (r < 0.42 && this.appends.length > 0) {
      const { stream, expected, events } = pick(random, this.appends);
      // A retry of a whole earlier append, or of its first events only (a partial match).
      const cut = random() < 0.2 && events.length > 1 ? events.slice(0, events.length - 1) : events;
      return this.append(stream, expected, cut, cut === events ? "retry" : "partial retry");
    }
    if (r < 0.47) {
      const stream = this.stream();
      const expected = this.expected(stream);
      const hard = random() < 0.12;
      return {
        describe: `delete ${stream} ${String(expected)} hard=${hard}`,
        run: async (t) =>
          outcome(async () => {
            const res = await api(t).deleteStream(stream, {
              expectedVersion: expected,
              hard,
              timeoutMs: OP_TIMEOUT_MS,
            });
            return {
              deleted:
                positionKey(t, stream, res.position) === "unknown position" ? "fresh" : "reused",
            };
          }),
      };
    }
    if (r < 0.55) {
      const stream = pick(random, STREAMS);
      const metadata: Record<string, unknown> = {};
      if (random() < 0.5) metadata["maxCount"] = randomInt(random, 1, 4);
      if (random() < 0.4) metadata["truncateBefore"] = randomInt(random, 0, 6);
      if (random() < 0.2) metadata["maxAgeSec"] = 3600;
      if (random() < 0.3) metadata["mine"] = randomValue(random);
      return {
        describe: `setStreamMetadata ${stream} ${JSON.stringify(metadata)}`,
        run: async (t) =>
          outcome(async () => {
            const res = await t.client.setStreamMetadata(stream, metadata, {
              timeoutMs: OP_TIMEOUT_MS,
            });
            return { metaRevision: String(res.nextExpectedVersion) };
          }),
      };
    }
    if (r < 0.6) {
      const stream = this.stream();
      return {
        describe: `getStreamMetadata ${stream}`,
        run: async (t) =>
          outcome(async () => {
            const res = await t.client.getStreamMetadata(stream, { timeoutMs: OP_TIMEOUT_MS });
            return { metadata: res.metadata, metaRevision: String(res.metaRevision) };
          }),
      };
    }
    if (r < 0.8) {
      const stream = random() < 0.1 ? `$$${pick(random, STREAMS)}` : pick(random, STREAMS);
      const direction = random() < 0.5 ? "forwards" : "backwards";
      const last = this.last.get(stream) ?? 0;
      const fromRevision =
        random() < 0.4
          ? direction === "forwards"
            ? "start"
            : "end"
          : random() < 0.05
            ? BigInt(pick(random, [Number.MAX_SAFE_INTEGER, 2 ** 40]))
            : BigInt(randomInt(random, 0, last + 2));
      const maxCount = random() < 0.3 ? undefined : randomInt(random, 1, 8);
      const pageSize = randomInt(random, 1, 4);
      return {
        describe: `readStream ${stream} ${direction} from ${String(fromRevision)} max ${maxCount} page ${pageSize}`,
        run: async (t) =>
          outcome(() =>
            collect(
              t,
              api(t).readStream(stream, {
                direction,
                fromRevision,
                maxCount,
                pageSize,
                timeoutMs: OP_TIMEOUT_MS,
              }),
            ),
          ),
      };
    }
    if (r < 0.85) {
      const direction = random() < 0.5 ? "forwards" : "backwards";
      const keys = [...this.keys];
      const from =
        random() < 0.4 || keys.length === 0
          ? direction === "forwards"
            ? "start"
            : "end"
          : pick(random, keys);
      const filter = this.filter();
      const maxCount = random() < 0.3 ? undefined : randomInt(random, 1, 12);
      const pageSize = randomInt(random, 1, 5);
      const describe = `readAll ${direction} from ${from} max ${maxCount} page ${pageSize} filter ${JSON.stringify(filter)}`;
      return {
        describe,
        checkMerged: (reference, t) =>
          checkMergedRead(reference, t, { direction, pageSize, filter }, maxCount, describe),
        run: async (t) => {
          if (t.groups !== undefined) return SKIPPED;
          const fromPosition = from === "start" || from === "end" ? from : positionIn(t, from);
          return outcome(() =>
            collect(
              t,
              api(t, filter === undefined).readAll({
                direction,
                fromPosition,
                maxCount,
                pageSize,
                filter,
                timeoutMs: OP_TIMEOUT_MS,
              }),
            ),
          );
        },
      };
    }
    if (r < 0.9) {
      const stream = pick(random, STREAMS);
      const last = this.last.get(stream) ?? 0;
      const r2 = random();
      const fromRevision =
        r2 < 0.4
          ? "start"
          : r2 < 0.5
            ? "end"
            : BigInt(r2 < 0.55 ? last + 50 : randomInt(random, 0, last + 1));
      return {
        describe: `subscribeToStream ${stream} from ${String(fromRevision)}`,
        run: (t) =>
          outcome(() =>
            catchUp(
              t,
              t.client.subscribeToStream(stream, { fromRevision, timeoutMs: OP_TIMEOUT_MS }),
            ),
          ),
      };
    }
    if (r < 0.97) {
      const keys = [...this.keys];
      const r2 = random();
      const from = r2 < 0.3 || keys.length === 0 ? "start" : r2 < 0.4 ? "end" : pick(random, keys);
      const filter = this.filter();
      return {
        describe: `subscribeToAll from ${from} filter ${JSON.stringify(filter)}`,
        // Over partitions, from the start: every group's subscription catches up, merged.
        checkMerged: async (reference, t) => {
          const groups = t.groups!;
          const catchUpAll = (target: Target) =>
            outcome(() =>
              catchUp(
                target,
                target.client.subscribeToAll({
                  fromPosition: "start",
                  filter,
                  timeoutMs: OP_TIMEOUT_MS,
                }),
              ),
            );
          expect(
            answerByGroup(await catchUpAll(t), groups),
            `subscribeToAll from start filter ${JSON.stringify(filter)}: merged, by group`,
          ).toEqual(answerByGroup(await catchUpAll(reference), groups));
        },
        run: async (t) => {
          if (t.groups !== undefined) return SKIPPED;
          const fromPosition = from === "start" || from === "end" ? from : positionIn(t, from);
          return outcome(() =>
            catchUp(t, t.client.subscribeToAll({ fromPosition, filter, timeoutMs: OP_TIMEOUT_MS })),
          );
        },
      };
    }
    const stream = pick(random, STREAMS);
    return {
      describe: `read ${stream} whole`,
      run: (t) =>
        outcome(() => collect(t, api(t).readStream(stream, { timeoutMs: OP_TIMEOUT_MS }))),
    };
  }

  private append(stream: string, expected: ExpectedVersion, events: EventData[], what: string): Op {
    return {
      describe: `${what} ${stream} ${String(expected)} ids ${events.map((e) => e.id.slice(0, 8)).join(",")} types ${events.map((e) => e.type).join(",")}`,
      run: async (t) =>
        outcome(async () => {
          const res = await api(
            t,
            events.every((e) => e.isJson),
          ).appendToStream(stream, events, {
            expectedVersion: expected,
            timeoutMs: OP_TIMEOUT_MS,
          });
          const key = `${stream}@${res.nextExpectedVersion}`;
          const seen = t.eventAt.get(placeOf(t, stream, res.position));
          remember(t, stream, res.position, key);
          return {
            next: String(res.nextExpectedVersion),
            position: seen === undefined ? "fresh" : seen,
          };
        }),
    };
  }

  /** Learns the events a read answered (the same on every target): their keys, each stream's last revision. */
  learn(answer: unknown): void {
    if (Array.isArray(answer)) {
      for (const line of answer as string[]) {
        const key = line.slice(0, line.indexOf(" "));
        this.keys.add(key);
        const at = key.lastIndexOf("@");
        const stream = key.slice(0, at);
        const revision = Number(key.slice(at + 1));
        this.last.set(stream, Math.max(this.last.get(stream) ?? -1, revision));
      }
    }
  }
}

const CLI_TIMEOUT_MS = 60_000;

/** Runs `chorus args` to its end; throws with its output unless it exits 0. */
async function chorus(args: string[]): Promise<void> {
  await startChorus(args, CLI_TIMEOUT_MS).done;
}

/** Metadata keys that name the source stream's revisions: an export leaves them out. */
const REVISION_KEYS = ["truncateBefore", "$softDeleted"];

/** What a stream holds for a reader: its events' content and its metadata (or the error). */
async function streamState(client: ChorusClient, stream: string): Promise<unknown> {
  const events = await outcome(async () => {
    const out: string[] = [];
    for await (const e of client.readStream(stream, { timeoutMs: OP_TIMEOUT_MS }))
      out.push(eventContent(e.event));
    return out;
  });
  const metadata = await outcome(async () => {
    const { metadata } = await client.getStreamMetadata(stream, { timeoutMs: OP_TIMEOUT_MS });
    return Object.fromEntries(Object.entries(metadata).filter(([k]) => !REVISION_KEYS.includes(k)));
  });
  return { events, metadata };
}

/**
 * A backup and restore of the source's state: `chorus export --all`, `chorus import` into a
 * fresh node; then every stream reads alike on both (events and metadata), and so does `$all`.
 * A hard-deleted stream is the exception: a tombstone is no event, so the copy has no stream.
 */
async function backupRoundTrip(source: ChorusClient, connection: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "chorus-differential-"));
  const node = await startBackendNode("mem-db");
  const copy = new ChorusClient(node.connectionString);
  try {
    const file = join(dir, "backup.jsonl");
    await chorus(["--connection", connection, "export", "--all", "--out", file]);
    await chorus(["--connection", node.connectionString, "import", file]);
    const deleted = { error: "STREAM_DELETED" };
    for (const stream of STREAMS) {
      const original = (await streamState(source, stream)) as {
        events: unknown;
        metadata: unknown;
      };
      const copied = (await streamState(copy, stream)) as { events: unknown; metadata: unknown };
      // A tombstone is no event: a hard-deleted stream is not in the file (the copy has no such
      // stream, and no metadata of it to compare), nor is a hard-deleted metadata stream
      // `$$name` (the copy's stream has no metadata).
      if (isDeepStrictEqual(original.events, deleted)) {
        expect(copied.events, stream).toEqual({ error: "STREAM_NOT_FOUND" });
        continue;
      }
      // A stream whose events are all truncated away has nothing in the file either: the copy
      // has no such stream, only its metadata.
      if (isDeepStrictEqual(original.events, []) && !isDeepStrictEqual(copied.events, []))
        expect(copied.events, stream).toEqual({ error: "STREAM_NOT_FOUND" });
      const events = isDeepStrictEqual(original.events, []) ? copied.events : original.events;
      const metadata = isDeepStrictEqual(original.metadata, deleted) ? {} : original.metadata;
      expect(copied, `stream ${stream} after a backup and restore`).toEqual({ events, metadata });
    }
    const all = async (client: ChorusClient) => {
      const out: string[] = [];
      for await (const e of client.readAll({ filter: {}, timeoutMs: OP_TIMEOUT_MS }))
        out.push(`${e.event.streamId} ${eventContent(e.event)}`);
      return out;
    };
    expect(await all(copy), "$all after a backup and restore").toEqual(await all(source));
  } finally {
    await copy.close();
    await node.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

describe("the backends answer a random sequence of operations alike", () => {
  it.each(SEEDS)(
    "seed %i",
    async (seed) => {
      const random = seededRandom(seed);
      const targets: Target[] = [];
      try {
        const newTarget = (
          backend: Target["backend"],
          client: ChorusClient,
          stop: () => Promise<void>,
          restart?: () => Promise<void>,
        ): Target => ({
          backend,
          client,
          stop,
          restart,
          eventAt: new Map(),
          positionOf: new Map(),
        });
        // [label, backend]: "http" targets append, delete and read through the HTTP API.
        const nodes: [string, Backend][] = [
          ["mem-db", "mem-db"],
          ["disk", "disk"],
          ["in-process:disk", "in-process:disk"],
          ["http", "disk"],
        ];
        if (BACKENDS.includes("postgres"))
          nodes.push(["postgres", "postgres"], ["http:postgres", "postgres"]);
        for (const [label, backend] of nodes) {
          // Few stream states in memory: rules run on states read back from the index. The
          // disk node keeps no window of recent ids: every retry is found through the index.
          const args = ["--stream-cache", "2"];
          if (label === "disk") args.push("--idempotency-window", "0");
          const node = await startBackendNode(
            backend,
            backend.startsWith("in-process") ? {} : { args },
          );
          const settings = () =>
            clientSettings(backend, node).withReconnectionDelay(20).withDiscoverDelay(50).build();
          const restart =
            backend === "mem-db"
              ? undefined
              : async () => {
                  target.client = await killAndRestartBackendNode(
                    backend,
                    node,
                    target.client,
                    settings,
                  );
                };
          const target = newTarget(label, new ChorusClient(settings()), () => node.stop(), restart);
          if (label.startsWith("http")) target.http = new HttpApi(() => node.httpEndpoint);
          if (!backend.startsWith("in-process")) target.connection = node.connectionString;
          targets.push(target);
        }
        // A cluster on disk: its leader is killed and restarted between rounds.
        const cluster: TestCluster = await startCluster({ size: 3, args: ["--stream-cache", "2"] });
        const clusterClient = new ChorusClient(cluster.connectionString);
        targets.push(
          newTarget(
            "cluster",
            clusterClient,
            () => cluster.stop(),
            async () => {
              const leader = await cluster.leader({ timeoutMs: 30_000 });
              await cluster.kill(leader);
              await cluster.restart(leader);
            },
          ),
        );
        // A partitioned client over two groups of one node each: every stream operation goes
        // to the stream's group (its metadata stream's too). `$all` merges the groups, with no
        // order across them: checkMerged compares its reads and subscriptions group by group.
        // Names that share the pools out: west owns a, b, c-1 and ü-日本, east the others.
        const groups = ["east", "west"];
        const groupNodes = await Promise.all(
          groups.map((name) =>
            startBackendNode("mem-db", {
              args: ["--partition", name, "--partitions", groups.join(",")],
            }),
          ),
        );
        const partitioned = newTarget(
          "partitions",
          new ChorusClient(
            ConnectionSettings.create()
              .withPartitions(
                Object.fromEntries(
                  groups.map((name, i) => [name, groupNodes[i]!.connectionString]),
                ),
              )
              .build(),
          ),
          async () => {
            await Promise.all(groupNodes.map((n) => n.stop()));
          },
        );
        partitioned.groups = groups;
        targets.push(partitioned);
        const gen = new Generator(random);
        for (let i = 0; i < OPS; i++) {
          if (i > 0 && i % ROUND_OPS === 0) {
            for (const t of targets) await t.restart?.();
          }
          const op = gen.next();
          const answers: unknown[] = [];
          for (const t of targets) answers.push(await op.run(t));
          for (let k = 1; k < targets.length; k++) {
            const t = targets[k]!;
            if (answers[k] === SKIPPED) {
              // The reference reads for this check only: what it learns of positions there
              // stays out of its own (the other targets do not read the same).
              const reference = { ...targets[0]!, eventAt: new Map(), positionOf: new Map() };
              await op.checkMerged?.(reference, t);
              continue;
            }
            expect(
              comparable(t, answers[k]),
              `op ${i} (${op.describe}): ${t.backend} vs ${targets[0]!.backend}`,
            ).toEqual(comparable(t, answers[0]));
          }
          gen.learn(answers[0]);
          if (process.env.CHORUS_DIFF_TRACE) {
            process.stderr.write(
              `${i} ${targets.map((t) => t.backend).join(",")} ${op.describe} -> ${JSON.stringify(answers[0]).slice(0, 160)}\n`,
            );
          }
        }
        // What the sequence left, backed up and restored with the CLI.
        const memory = targets[0]!;
        await backupRoundTrip(memory.client, memory.connection!);
      } finally {
        for (const t of targets) {
          await t.client.close();
          await t.stop();
        }
      }
    },
    300_000,
  );
});
