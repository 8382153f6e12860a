// The write checker of quality.md for the cluster chaos tests: writers that remember what was
// acknowledged, and checks run once the faults have healed: every acknowledged append is
// present exactly once on every node, revisions are gapless, at most one leader per epoch,
// and every node's log is a prefix of one log.
//
// The history checks further down (checkAppendHistory, checkSubscriptionHistory,
// checkLogsAgree, leadersByEpoch) are pure: they take a recorded history and a node's
// committed log and return the violations as sentences, for `npm run chaos -- --real`
// (test/src/chaos), which reports every violation instead of stopping at the first.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { chorus } from "@chorus/protocol";
import { getJson, waitFor, type TestCluster, type TestNode } from "@chorus/testing";
import { expect } from "vitest";
import { RawClient } from "../server/helpers.js";
import { roleChanges } from "./helpers.js";

const CLIENT_OPTIONS =
  "&operationTimeout=30000&reconnectionDelay=20&discoverDelay=20&maxReconnections=10000" +
  "&maxDiscoverAttempts=1000&heartbeatInterval=200&heartbeatTimeout=500";

/** Where writers write and checks look: a cluster, or one node (`{ connectionString, nodes: [node] }`). */
export type WriteTarget = Pick<TestCluster, "connectionString" | "nodes">;

export interface Writers {
  readonly count: number;
  /** Event id -> writer, for every append the cluster acknowledged. */
  readonly acknowledged: Map<string, number>;
  /** Failed or timed out: may or may not be there. */
  readonly unknown: Set<string>;
  /** Stops the loops (each finishes its append in flight) and closes the clients. */
  stop(): Promise<void>;
}

/**
 * `count` writers appending one event at a time to their own stream `writer-N`, until stopped;
 * each event's data padded with `padBytes` bytes.
 */
export function startWriters(cluster: WriteTarget, count: number, padBytes = 0): Writers {
  const acknowledged = new Map<string, number>();
  const unknown = new Set<string>();
  const clients: ChorusClient[] = [];
  let stopping = false;
  const loops = Array.from({ length: count }, async (_, w) => {
    const client = new ChorusClient(`${cluster.connectionString}${CLIENT_OPTIONS}`);
    clients.push(client);
    while (!stopping) {
      const event = jsonEvent({
        type: "W",
        data: padBytes > 0 ? { w, pad: "p".repeat(padBytes) } : { w },
      });
      try {
        await client.appendToStream(`writer-${w}`, event);
        acknowledged.set(event.id, w);
      } catch {
        unknown.add(event.id);
      }
    }
  });
  let stopped: Promise<void> | undefined;
  return {
    count,
    acknowledged,
    unknown,
    stop() {
      stopping = true;
      stopped ??= Promise.all(loops).then(async () => {
        await Promise.all(clients.map((c) => c.close()));
      });
      return stopped;
    },
  };
}

/** Waits until the writers have `more` acknowledgements beyond what they have now. */
export async function writesContinue(writers: Writers, more: number, what: string): Promise<void> {
  const target = writers.acknowledged.size + more;
  await waitFor(() => writers.acknowledged.size >= target, { timeoutMs: 20_000, message: what });
}

/** Event ids and revisions of a stream as one node serves them (committed prefix). */
export async function streamOn(
  node: TestNode,
  stream: string,
): Promise<{ ids: string[]; revisions: number[] }> {
  const ids: string[] = [];
  const revisions: number[] = [];
  for (let from = 0; ;) {
    const res = await getJson(
      `http://${node.httpEndpoint}/streams/${stream}?from=${from}&count=100`,
      5_000,
    );
    if (res.status === 404) return { ids, revisions };
    const body = res.body as { events: Array<{ eventId: string; revision: string }> };
    for (const e of body.events) {
      ids.push(e.eventId);
      revisions.push(Number(e.revision));
    }
    if (body.events.length < 100) return { ids, revisions };
    from += body.events.length;
  }
}

/**
 * Every acknowledged append of every writer is on every node exactly once, revisions are
 * gapless, and nothing is there that was neither acknowledged nor of unknown outcome. Waits
 * (up to 20 s) for the nodes to agree first.
 */
export async function checkWrites(cluster: WriteTarget, writers: Writers): Promise<void> {
  for (let w = 0; w < writers.count; w++) {
    const expected = [...writers.acknowledged].filter(([, v]) => v === w).map(([id]) => id);
    const views = await waitFor(
      async () => {
        const all = await Promise.all(cluster.nodes.map((n) => streamOn(n, `writer-${w}`)));
        const first = JSON.stringify(all[0]?.ids);
        return all.every((v) => JSON.stringify(v.ids) === first) ? all : undefined;
      },
      { timeoutMs: 20_000, message: `writer-${w} identical on every node` },
    );
    const { ids, revisions } = views[0]!;
    expect(revisions).toEqual(revisions.map((_, i) => i));
    expect(new Set(ids).size).toBe(ids.length);
    const stored = new Set(ids);
    expect(expected.filter((id) => !stored.has(id))).toEqual([]);
    expect(ids.filter((id) => !writers.acknowledged.has(id) && !writers.unknown.has(id))).toEqual(
      [],
    );
  }
}

/** One event of a node's committed log, in `$all` order. */
export interface LogEntry {
  readonly position: bigint;
  readonly id: string;
  readonly streamId: string;
  readonly revision: bigint;
}

/**
 * Every event of `$all` (system events included) as one node serves it: its committed log,
 * read over that node's own native endpoint (never forwarded). Each page read waits at most
 * `pageTimeoutMs`.
 */
export async function committedLogOn(node: TestNode, pageTimeoutMs = 5_000): Promise<LogEntry[]> {
  const c = await RawClient.connect(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
  try {
    const out: LogEntry[] = [];
    for (let from = 0; ;) {
      const reply = await c.request(
        {
          readAll: {
            direction: chorus.Direction.FORWARDS,
            fromPosition: from,
            maxCount: 1000,
            filter: { includeSystem: true },
          },
        },
        pageTimeoutMs,
      );
      const page = reply.readResult;
      if (!page)
        throw new Error(`no read result from ${node.httpEndpoint}: ${JSON.stringify(reply)}`);
      for (const e of page.events ?? []) {
        out.push({
          position: BigInt(String(e.event?.position ?? 0)),
          id: e.event?.id ?? "",
          streamId: e.event?.streamId ?? "",
          revision: BigInt(String(e.event?.revision ?? 0)),
        });
      }
      if (page.endOfStream || (page.events ?? []).length === 0) return out;
      from = Number(page.nextPosition);
    }
  } finally {
    await c.close();
  }
}

/** `position:eventId` of every event of `$all` as one node serves it (its committed log). */
export async function logOn(node: TestNode): Promise<string[]> {
  return (await committedLogOn(node)).map((e) => `${e.position}:${e.id}`);
}

/** Every node's committed log is a prefix of the longest one. Returns the longest length. */
export async function checkLogsArePrefixes(cluster: TestCluster): Promise<number> {
  const logs = await Promise.all(cluster.nodes.map((n) => logOn(n)));
  const longest = logs.reduce((a, b) => (b.length > a.length ? b : a), []);
  for (const [i, log] of logs.entries()) {
    expect(log, `node ${i}'s log is a prefix of the longest`).toEqual(longest.slice(0, log.length));
  }
  return longest.length;
}

/** The leaders named for each epoch in the nodes' "cluster role changed" log lines. */
export function leadersByEpoch(nodes: readonly TestNode[]): Map<number, Set<string>> {
  const leaders = new Map<number, Set<string>>();
  for (const node of nodes) {
    for (const entry of roleChanges(node)) {
      if (entry.leader === null) continue;
      const set = leaders.get(entry.epoch) ?? new Set<string>();
      set.add(entry.leader);
      leaders.set(entry.epoch, set);
    }
  }
  return leaders;
}

/**
 * At most one leader per epoch, from every node's "cluster role changed" log lines: all the
 * leaders named for one epoch (by the leader itself or by its followers) are one node.
 */
export function checkOneLeaderPerEpoch(cluster: TestCluster): Map<number, string> {
  const result = new Map<number, string>();
  for (const [epoch, set] of leadersByEpoch(cluster.nodes)) {
    expect([...set], `leaders of epoch ${epoch}`).toHaveLength(1);
    result.set(epoch, [...set][0]!);
  }
  return result;
}

/** The whole checker, once every node is up and the faults have healed. */
export async function checkHistory(cluster: TestCluster, writers: Writers): Promise<void> {
  await checkWrites(cluster, writers);
  await checkLogsArePrefixes(cluster);
  checkOneLeaderPerEpoch(cluster);
}

// ---------------------------------------------------------------------------------------
// Pure history checks: a recorded history against a node's committed log, violations out.

/** The expected version an append was made with. */
export type CheckedExpectedVersion = bigint | "any" | "no_stream" | "stream_exists";

/** What the writer was told about an append. */
export type AppendOutcome =
  | {
      readonly kind: "acknowledged";
      /** The revision of the last event written, as the client was told. */
      readonly nextExpectedVersion: bigint;
      /** The log position of the last event written, as the client was told. */
      readonly position: bigint;
    }
  /** A definite refusal (a wrong expected version): none of its events may be there. */
  | { readonly kind: "failed"; readonly reason: string }
  /** Timed out, connection lost, ...: all of its events are there, or none. */
  | { readonly kind: "unknown"; readonly reason: string };

/** One append a writer made: its stream, expected version, event ids (in order) and outcome. */
export interface AppendRecord {
  readonly writer: number;
  readonly streamId: string;
  readonly expectedVersion: CheckedExpectedVersion;
  readonly eventIds: readonly string[];
  readonly outcome: AppendOutcome;
}

/** An event as a subscription handed it to the application. */
export interface DeliveredEvent {
  readonly position: bigint;
  readonly id: string;
  readonly streamId: string;
  readonly revision: bigint;
  /** The replication group it came from (a partitioned client), else undefined. */
  readonly partition?: string | undefined;
}

const at = (e: { streamId: string; revision: bigint; position: bigint }) =>
  `${e.streamId}@${e.revision} (position ${e.position})`;

function describeAppend(a: AppendRecord): string {
  const ids =
    a.eventIds.length === 1 ? a.eventIds[0] : `${a.eventIds[0]} +${a.eventIds.length - 1}`;
  return `append by writer ${a.writer} to ${a.streamId} (expected ${String(a.expectedVersion)}, ids ${ids})`;
}

/**
 * The write checker over one node's committed log (`log`, in `$all` order) and every append
 * the writers made:
 * - positions strictly increase, and no event id is in the log twice;
 * - in every stream an append names, revisions are 0, 1, 2, ... in `$all` order (gapless,
 *   and `$all` order agrees with the stream's order), and every event there was appended by
 *   a writer (acknowledged or of unknown outcome);
 * - an acknowledged append is present, whole, contiguous, in its stream, at the revision and
 *   position the writer was told; a failed one is absent; an unknown one is whole or absent;
 * - a present append honoured its expected version (exact v: first revision v + 1;
 *   `no_stream`: 0; `stream_exists`: not 0), so there is at most one success per (stream,
 *   expected version) for exact versions and `no_stream`, checked on its own as well.
 * Returns the violations (empty when the history is correct).
 */
export function checkAppendHistory(
  appends: readonly AppendRecord[],
  log: readonly LogEntry[],
): string[] {
  const violations: string[] = [];
  const byId = new Map<string, LogEntry[]>();
  let previous: LogEntry | undefined;
  for (const e of log) {
    if (previous !== undefined && e.position <= previous.position) {
      violations.push(`$all order: ${at(e)} comes after ${at(previous)}`);
    }
    previous = e;
    const list = byId.get(e.id) ?? [];
    list.push(e);
    byId.set(e.id, list);
  }
  for (const [id, list] of byId) {
    if (list.length > 1) {
      violations.push(
        `duplicate: event ${id} is in the log ${list.length} times: ${list.map(at).join(", ")}`,
      );
    }
  }
  const streams = new Set(appends.map((a) => a.streamId));
  const appendOf = new Map<string, AppendRecord>();
  for (const a of appends) for (const id of a.eventIds) appendOf.set(id, a);
  const perStream = new Map<string, LogEntry[]>();
  for (const e of log) {
    if (!streams.has(e.streamId)) continue;
    const list = perStream.get(e.streamId) ?? [];
    list.push(e);
    perStream.set(e.streamId, list);
    if (!appendOf.has(e.id)) {
      violations.push(`unexpected: ${at(e)} holds event ${e.id}, which no writer appended`);
    }
  }
  for (const [stream, list] of perStream) {
    const bad = list.findIndex((e, i) => e.revision !== BigInt(i));
    if (bad >= 0) {
      violations.push(
        `revisions of ${stream} are not 0, 1, 2, ... in $all order: event ${bad} is ${at(list[bad]!)}` +
          (bad > 0 ? ` after ${at(list[bad - 1]!)}` : ""),
      );
    }
  }
  const successes = new Map<string, AppendRecord[]>();
  for (const a of appends) {
    const entries = a.eventIds.map((id) => byId.get(id)?.[0]);
    const present = entries.filter((e) => e !== undefined).length;
    const what = describeAppend(a);
    const { outcome } = a;
    if (outcome.kind === "acknowledged" && present < entries.length) {
      violations.push(
        `lost: acknowledged ${what} (revision ${outcome.nextExpectedVersion}, position ${outcome.position}): ` +
          `${entries.length - present} of its ${entries.length} events missing`,
      );
    } else if (outcome.kind === "failed" && present > 0) {
      violations.push(`failed ${what} (${outcome.reason}) is present: ${present} of its events`);
    } else if (outcome.kind === "unknown" && present > 0 && present < entries.length) {
      violations.push(
        `torn: ${what} of unknown outcome is partly present (${present} of ${entries.length})`,
      );
    }
    if (present !== entries.length || entries.length === 0) continue;
    const first = entries[0]!;
    const last = entries[entries.length - 1]!;
    const contiguous = entries.every(
      (e, i) => e!.streamId === a.streamId && e!.revision === first.revision + BigInt(i),
    );
    if (!contiguous) {
      violations.push(
        `${what} is not contiguous in its stream: ${entries.map((e) => at(e!)).join(", ")}`,
      );
      continue;
    }
    const expected = a.expectedVersion;
    const honoured =
      typeof expected === "bigint"
        ? first.revision === expected + 1n
        : expected === "no_stream"
          ? first.revision === 0n
          : expected === "stream_exists"
            ? first.revision > 0n
            : true;
    if (!honoured) {
      violations.push(`${what} was written at ${at(first)}, against its expected version`);
    }
    if (
      outcome.kind === "acknowledged" &&
      (last.revision !== outcome.nextExpectedVersion || last.position !== outcome.position)
    ) {
      violations.push(
        `${what} was acknowledged as revision ${outcome.nextExpectedVersion} at position ` +
          `${outcome.position}, but its last event is ${at(last)}`,
      );
    }
    if (typeof expected === "bigint" || expected === "no_stream") {
      const key = `${a.streamId} expected ${String(expected)}`;
      const list = successes.get(key) ?? [];
      list.push(a);
      successes.set(key, list);
    }
  }
  for (const [key, list] of successes) {
    if (list.length > 1) {
      violations.push(
        `${list.length} successes for (${key}): ${list.map((a) => `writer ${a.writer} ${a.outcome.kind} ${a.eventIds[0]}`).join("; ")}`,
      );
    }
  }
  return violations;
}

/**
 * The subscription checker: what a catch-up subscription from the start handed to the
 * application (`delivered`, in order) against the committed events it should see
 * (`expected`, in `$all` order: the log filtered to the subscription's stream or filter).
 * No event twice, no gap or reordering within a stream (each stream's revisions come as
 * 0, 1, 2, ...), positions strictly increasing, and the delivered sequence is the committed
 * one: nothing that is not in the log (an event later lost), nothing left out.
 */
export function checkSubscriptionHistory(
  name: string,
  delivered: readonly DeliveredEvent[],
  expected: readonly LogEntry[],
): string[] {
  const violations: string[] = [];
  const seen = new Map<string, number>();
  for (const e of delivered) seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
  for (const [id, n] of seen) {
    if (n > 1) violations.push(`${name}: repeat: event ${id} delivered ${n} times`);
  }
  const lastRevision = new Map<string, bigint>();
  let previous: DeliveredEvent | undefined;
  for (const e of delivered) {
    const last = lastRevision.get(e.streamId) ?? -1n;
    if (e.revision <= last) {
      violations.push(`${name}: repeat or reorder: ${at(e)} after revision ${last} of that stream`);
    } else if (e.revision > last + 1n) {
      violations.push(
        `${name}: gap: ${at(e)} after revision ${last} of that stream (missing ${last + 1n}..${e.revision - 1n})`,
      );
    }
    lastRevision.set(e.streamId, e.revision > last ? e.revision : last);
    if (previous !== undefined && e.position <= previous.position) {
      violations.push(`${name}: ${at(e)} delivered after ${at(previous)}`);
    }
    previous = e;
  }
  const n = Math.min(delivered.length, expected.length);
  const mismatch = Array.from({ length: n }, (_, i) => i).find(
    (i) => delivered[i]!.id !== expected[i]!.id,
  );
  if (mismatch !== undefined) {
    violations.push(
      `${name}: event ${mismatch} delivered was ${at(delivered[mismatch]!)} (${delivered[mismatch]!.id}); ` +
        `the committed log has ${at(expected[mismatch]!)} (${expected[mismatch]!.id})`,
    );
  }
  if (delivered.length > expected.length) {
    const extra = delivered[expected.length]!;
    violations.push(
      `${name}: delivered ${delivered.length - expected.length} events beyond the committed log, ` +
        `from ${at(extra)} (${extra.id})`,
    );
  } else if (delivered.length < expected.length) {
    const missing = expected[delivered.length]!;
    violations.push(
      `${name}: delivered ${delivered.length} of ${expected.length} committed events; ` +
        `next missing ${at(missing)}`,
    );
  }
  return violations;
}

/**
 * After healing, every voter holds one log: each node's committed log (`logs[i]`) is equal to
 * every other's. Returns the differences (lagging nodes and diverging entries).
 */
export function checkLogsAgree(logs: readonly (readonly LogEntry[])[]): string[] {
  const violations: string[] = [];
  const longest = logs.reduce<readonly LogEntry[]>((a, b) => (b.length > a.length ? b : a), []);
  for (const [i, log] of logs.entries()) {
    const diverge = log.findIndex(
      (e, k) => e.id !== longest[k]!.id || e.position !== longest[k]!.position,
    );
    if (diverge >= 0) {
      violations.push(
        `node ${i}'s log diverges at entry ${diverge}: ${at(log[diverge]!)} ${log[diverge]!.id}, ` +
          `where another node has ${at(longest[diverge]!)} ${longest[diverge]!.id}`,
      );
    } else if (log.length < longest.length) {
      violations.push(`node ${i} holds ${log.length} of ${longest.length} log entries`);
    }
  }
  return violations;
}

/** An event a persistent subscription handed to the application, in the order of handing. */
export interface PersistentHanding {
  /** The subscription object that handed it (a new one after a drop is another consumer). */
  readonly consumer: string;
  readonly id: string;
  readonly streamId: string;
  readonly revision: bigint;
  readonly position: bigint;
}

export interface PersistentHistory {
  /** Every handing, across consumers, in the order they happened. */
  readonly handings: readonly PersistentHanding[];
  /**
   * Event id -> how many handings there were when its ack was confirmed durable
   * (`PersistentAcked`): a handing of the id at that index or later came after.
   */
  readonly confirmedAt: ReadonlyMap<string, number>;
}

/** Sentences of one kind, at most `shown` of them spelled out. */
function capped(violations: string[], kind: string, items: readonly string[], shown = 5): void {
  if (items.length === 0) return;
  violations.push(
    `${kind}: ${items.length} event(s): ${items.slice(0, shown).join("; ")}` +
      (items.length > shown ? `; ... ${items.length - shown} more` : ""),
  );
}

/**
 * The persistent-subscription checker of quality.md over one group's consumers (which ack
 * every event as it is handed and never nack) and the group's events in the committed log
 * (`expected`, in `$all` order):
 * - every committed event is handed to some consumer, and its ack is confirmed;
 * - nothing is handed that the committed log does not hold (an event later lost);
 * - no consumer (subscription object) is handed the same event twice;
 * - no event is handed again, to any consumer, once its ack was confirmed.
 * An event handled by two consumers is allowed (at least once across consumers, while
 * consumers join again): counted in `byTwo`, not a violation.
 */
export function checkPersistentHistory(
  name: string,
  history: PersistentHistory,
  expected: readonly LogEntry[],
): { violations: string[]; byTwo: number } {
  const violations: string[] = [];
  const inLog = new Map(expected.map((e) => [e.id, e]));
  const consumersOf = new Map<string, string[]>();
  const notInLog: string[] = [];
  const twice: string[] = [];
  const afterConfirm: string[] = [];
  for (const [k, h] of history.handings.entries()) {
    if (!inLog.has(h.id)) notInLog.push(`${at(h)} (${h.id}) to ${h.consumer}`);
    const consumers = consumersOf.get(h.id) ?? [];
    if (consumers.includes(h.consumer)) twice.push(`${at(h)} (${h.id}) to ${h.consumer}`);
    consumers.push(h.consumer);
    consumersOf.set(h.id, consumers);
    const confirmed = history.confirmedAt.get(h.id);
    if (confirmed !== undefined && k >= confirmed)
      afterConfirm.push(
        `${at(h)} (${h.id}) to ${h.consumer}, handing ${k}, confirmed at ${confirmed}`,
      );
  }
  const lost = expected.filter((e) => !consumersOf.has(e.id)).map((e) => `${at(e)} (${e.id})`);
  const unconfirmed = expected
    .filter((e) => consumersOf.has(e.id) && !history.confirmedAt.has(e.id))
    .map((e) => `${at(e)} (${e.id})`);
  capped(violations, `${name}: committed but never handed to a consumer`, lost);
  capped(violations, `${name}: handed but its ack never confirmed`, unconfirmed);
  capped(violations, `${name}: handed an event the committed log does not hold`, notInLog);
  capped(violations, `${name}: handed twice to one consumer`, twice);
  capped(violations, `${name}: handed again after its ack was confirmed`, afterConfirm);
  const byTwo = [...consumersOf.values()].filter((c) => new Set(c).size > 1).length;
  return { violations, byTwo };
}
