/**
 * The node's persistent subscription groups: create / update / delete / list / getInfo /
 * replayParked, and consumers joining a group. Groups run on the leader only; their state is
 * rebuilt from the replicated system streams whenever this node starts leading.
 */
import { randomUUID } from "node:crypto";
import type { chorus } from "@chorus/protocol";
import type { Logger } from "pino";
import { NotLeaderError, type ClusterView } from "../node-types.js";
import { StoreError, type ExpectedVersion, type StreamStore } from "../streams/types.js";
import { GroupFencedError, PersistentError } from "./errors.js";
import { ALL } from "./source.js";
import {
  acksStream,
  checkpointStream,
  Group,
  parkedStream,
  type ConsumerHandle,
  type ConsumerOptions,
  type ConsumerSink,
  type DropCode,
  type GroupInfo,
  type GroupKey,
  type InitialCursor,
} from "./group.js";
import {
  DEFAULT_GROUP_SETTINGS,
  settingsFromJson,
  settingsFromWire,
  type GroupSettings,
} from "./settings.js";

export const CONFIG_STREAM = "$persistent-config";

/** How often a leader checks that it still leads (and drops its groups when not). */
const WATCH_INTERVAL_MS = 50;
/** How long a new leader waits for its log to be committed before serving groups. */
const BARRIER_TIMEOUT_MS = 5_000;

export interface PersistentServiceDependencies {
  readonly store: () => StreamStore;
  readonly cluster: () => ClusterView | undefined;
  readonly logger: Logger;
}

interface GroupRecord {
  settings: GroupSettings;
  initial: InitialCursor;
}

/** The groups of one leadership term. */
interface Generation {
  readonly epoch: number;
  readonly groups: Map<string, { record: GroupRecord; group: Group }>;
  /**
   * The revision the next record of CONFIG_STREAM takes, as this generation knows it. Records
   * are appended expecting it, so a record another server wrote meanwhile (a lock holder that
   * has not yet noticed losing its lock, in the shared-database mode) is never overlooked.
   */
  configNext: number;
  ready: Promise<void>;
  dead: boolean;
  /** Groups being loaded again after a failure: a consumer subscribing meanwhile waits for it. */
  readonly reloads: Map<string, Promise<void>>;
}

type ConfigRecords = Map<string, { key: GroupKey; record: GroupRecord }>;

/** How often a management operation reads the config again after another server wrote it. */
const CONFIG_ATTEMPTS = 5;

function keyOf(k: GroupKey): string {
  return `${k.streamId}\u0000${k.group}`;
}

function notFound(k: GroupKey): PersistentError {
  return new PersistentError(
    "GROUP_NOT_FOUND",
    `persistent subscription group "${k.group}" on "${k.streamId}" does not exist`,
    k.streamId,
  );
}

export function checkGroupName(group: unknown): string {
  if (typeof group !== "string" || group.length === 0)
    throw new PersistentError("INVALID_ARGUMENT", "the group name must be a non-empty string");
  if (group.length > 256 || [...group].some((c) => c.charCodeAt(0) < 0x20))
    throw new PersistentError(
      "INVALID_ARGUMENT",
      "the group name must be at most 256 characters without control characters",
    );
  return group;
}

/** A filter belongs to $all groups: a group of one stream takes every event of it. */
function checkFilterSource(
  key: GroupKey,
  wire: chorus.IPersistentSettings | null | undefined,
): void {
  if (key.streamId !== ALL && wire?.filter !== null && wire?.filter !== undefined) {
    throw new PersistentError(
      "INVALID_ARGUMENT",
      `a filter applies to persistent subscription groups on "$all" only, not on stream "${key.streamId}" (a stream group takes every event of its stream)`,
      key.streamId,
    );
  }
}

export class PersistentService {
  readonly #d: PersistentServiceDependencies;
  #gen: Generation | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #watch: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(deps: PersistentServiceDependencies) {
    this.#d = deps;
  }

  // ---------------------------------------------------------------- leadership

  /** The current generation, loading it when this node has just started leading. */
  async #current(): Promise<Generation> {
    if (this.#closed) throw new PersistentError("CLOSED", "the node is shutting down");
    const cluster = this.#d.cluster();
    const refusal = cluster?.writeRefusal();
    if (refusal) throw new NotLeaderError(refusal);
    const epoch = cluster?.epoch ?? 0;
    let gen = this.#gen;
    if (!gen || gen.dead || gen.epoch !== epoch) {
      if (gen) this.#stopGeneration(gen, "NOT_LEADER", "leadership changed; subscribe again");
      gen = {
        epoch,
        groups: new Map(),
        configNext: 0,
        ready: Promise.resolve(),
        dead: false,
        reloads: new Map(),
      };
      const g = gen;
      gen.ready = this.#load(g).catch((err: unknown) => {
        g.dead = true;
        throw err;
      });
      this.#gen = gen;
      if (cluster && !this.#watch) {
        this.#watch = setInterval(() => this.#checkLeadership(), WATCH_INTERVAL_MS);
        this.#watch.unref();
      }
    }
    await gen.ready;
    if (gen.dead) throw this.#leadershipLost();
    return gen;
  }

  #leadershipLost(): Error {
    const refusal = this.#d.cluster()?.writeRefusal();
    return refusal
      ? new NotLeaderError(refusal)
      : new PersistentError("UNAVAILABLE", "leadership changed; retry");
  }

  #checkLeadership(): void {
    const gen = this.#gen;
    const cluster = this.#d.cluster();
    if (!gen || gen.dead || !cluster) return;
    if (cluster.writeRefusal() !== undefined || cluster.epoch !== gen.epoch) {
      this.#d.logger.info(
        { epoch: gen.epoch },
        "no longer leading: dropping persistent subscription consumers",
      );
      this.#stopGeneration(gen, "NOT_LEADER", "this node is no longer the leader; subscribe again");
    }
  }

  #stopGeneration(gen: Generation, code: DropCode, message: string): void {
    gen.dead = true;
    for (const { group } of gen.groups.values()) group.stop(code, message);
    gen.groups.clear();
    if (this.#gen === gen) this.#gen = undefined;
  }

  /** Waits until everything in this leader's log is committed, then rebuilds every group. */
  async #load(gen: Generation): Promise<void> {
    const store = this.#d.store();
    const cluster = this.#d.cluster();
    if (cluster) {
      const target = cluster.logEnd;
      if (store.commitPosition < target) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            off();
            reject(
              new PersistentError(
                "UNAVAILABLE",
                "the new leader has not committed its log yet; retry",
              ),
            );
          }, BARRIER_TIMEOUT_MS);
          const off = store.onCommit((p) => {
            if (p < target) return;
            clearTimeout(timer);
            off();
            resolve();
          });
          if (store.commitPosition >= target) {
            clearTimeout(timer);
            off();
            resolve();
          }
        });
      }
    }
    const { records, next } = await this.#readConfig(store);
    gen.configNext = next;
    for (const [k, { key, record }] of records) {
      const group = this.#makeGroup(gen, key, record);
      await group.load();
      gen.groups.set(k, { record, group });
    }
  }

  /**
   * Brings the generation's groups up to the config stream as stored: groups created, changed
   * or deleted by another server since this one read it. Only the shared-database mode has
   * other writers (a lock holder that has not yet noticed losing its lock); a replicated
   * leader is the only writer of its term, and finds nothing new. Runs inside #serial.
   */
  async #syncConfig(gen: Generation): Promise<void> {
    const { records, next } = await this.#readConfig(this.#d.store());
    if (gen.dead || next === gen.configNext) return;
    gen.configNext = next;
    for (const [k, entry] of gen.groups) {
      const now = records.get(k);
      if (now !== undefined && JSON.stringify(now.record) === JSON.stringify(entry.record))
        continue;
      gen.groups.delete(k);
      entry.group.stop(
        now === undefined ? "PERSISTENT_SUBSCRIPTION_NOT_FOUND" : "UNKNOWN",
        now === undefined
          ? `persistent subscription group "${entry.group.key.group}" on "${entry.group.key.streamId}" was deleted`
          : "the group's settings changed; subscribe again",
      );
    }
    for (const [k, { key, record }] of records) {
      if (gen.groups.has(k)) continue;
      const group = this.#makeGroup(gen, key, record);
      await group.load();
      if (!gen.dead) gen.groups.set(k, { record, group });
    }
    this.#d.logger.info(
      { next },
      "persistent subscription groups read again: another server changed them",
    );
  }

  /** The groups as CONFIG_STREAM holds them, and the revision its next record takes. */
  async #readConfig(store: StreamStore): Promise<{ records: ConfigRecords; next: number }> {
    const out: ConfigRecords = new Map();
    let from = 0;
    for (;;) {
      let page;
      try {
        page = await store.readStream(CONFIG_STREAM, {
          direction: "forwards",
          fromRevision: from,
          maxCount: 512,
        });
      } catch (err) {
        if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND")
          return { records: out, next: 0 };
        throw err;
      }
      for (const e of page.events) {
        let body: { streamId?: unknown; group?: unknown; settings?: unknown; initial?: unknown };
        try {
          body = JSON.parse(Buffer.from(e.data).toString("utf8")) as typeof body;
        } catch {
          continue;
        }
        if (typeof body.streamId !== "string" || typeof body.group !== "string") continue;
        const key = { streamId: body.streamId, group: body.group };
        const k = keyOf(key);
        if (e.type === "GroupDeleted") {
          out.delete(k);
          continue;
        }
        let settings: GroupSettings;
        try {
          settings = settingsFromJson(body.settings);
        } catch (err) {
          this.#d.logger.warn({ err, ...key }, "ignoring a persistent group with bad settings");
          continue;
        }
        const initialFrom = (body.initial as { from?: unknown } | undefined)?.from;
        const initial = {
          from:
            typeof initialFrom === "number" ? initialFrom : (out.get(k)?.record.initial.from ?? 0),
        };
        out.set(k, { key, record: { settings, initial } });
      }
      if (page.endOfStream) return { records: out, next: page.lastRevision + 1 };
      from = page.nextRevision;
    }
  }

  #makeGroup(gen: Generation, key: GroupKey, record: GroupRecord, fresh = false): Group {
    const group: Group = new Group(
      {
        store: this.#d.store(),
        logger: this.#d.logger,
        // A group just created has no consumers holding its events: no need to wait for them.
        ...(fresh && { rejoinGraceMs: 0, fresh: true }),
        onFailed: (err) => {
          const lost = err instanceof NotLeaderError;
          if (lost) group.stop("NOT_LEADER", "this node is no longer the leader; subscribe again");
          // Another server wrote the group's state: loaded again from it, the group goes on.
          else if (err instanceof GroupFencedError)
            group.stop("UNKNOWN", `${err.message}; subscribe again`);
          else group.stop("INTERNAL", `the group stopped: ${errorText(err)}`);
          const entry = gen.groups.get(keyOf(key));
          if (entry?.group === group) gen.groups.delete(keyOf(key));
          // A lost leadership ends the generation; any other failure reloads this group on next use.
          if (lost) this.#stopGeneration(gen, "NOT_LEADER", "this node is no longer the leader");
          else if (!gen.dead) this.#reloadLater(gen, key, record);
        },
      },
      key,
      record.settings,
      record.initial,
    );
    return group;
  }

  /** After a group failed for a reason other than leadership, rebuild it from its durable state. */
  #reloadLater(gen: Generation, key: GroupKey, record: GroupRecord): void {
    const k = keyOf(key);
    const group = this.#makeGroup(gen, key, record);
    const work = group
      .load()
      .then(() => {
        if (!gen.dead && !gen.groups.has(k)) gen.groups.set(k, { record, group });
      })
      .catch((err: unknown) =>
        // Mostly the store unreachable for now: the group is loaded again on its next use.
        this.#d.logger.warn(
          { err: errorText(err), ...key },
          "reloading a persistent group failed; it is loaded again when next used",
        ),
      )
      .finally(() => {
        if (gen.reloads.get(k) === work) gen.reloads.delete(k);
      });
    gen.reloads.set(k, work);
  }

  /** Management operations run one at a time. */
  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(work, work);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  // ---------------------------------------------------------------- management

  create(key: GroupKey, wire: chorus.IPersistentSettings | null | undefined): Promise<void> {
    return this.#serial(async () => {
      checkFilterSource(key, wire);
      const settings = settingsFromWire(wire, DEFAULT_GROUP_SETTINGS);
      await this.#changeConfig(async (gen) => {
        if (gen.groups.has(keyOf(key))) {
          throw new PersistentError(
            "GROUP_EXISTS",
            `persistent subscription group "${key.group}" on "${key.streamId}" already exists`,
            key.streamId,
          );
        }
        const initial = await this.#initialCursor(key, settings);
        // A group created again after a delete starts afresh.
        const record: GroupRecord = { settings, initial };
        await this.#appendConfig(gen, "GroupCreated", key, record);
        const group = this.#makeGroup(gen, key, record, true);
        await group.initStreams();
        await group.load();
        gen.groups.set(keyOf(key), { record, group });
      });
    });
  }

  update(key: GroupKey, wire: chorus.IPersistentSettings | null | undefined): Promise<void> {
    return this.#serial(async () => {
      checkFilterSource(key, wire);
      await this.#changeConfig(async (gen) => {
        const entry = gen.groups.get(keyOf(key));
        if (!entry) throw notFound(key);
        const settings = settingsFromWire(wire, entry.record.settings);
        const record: GroupRecord = { settings, initial: entry.record.initial };
        await this.#appendConfig(gen, "GroupUpdated", key, record);
        // Consumers subscribe again and get the new settings.
        entry.group.stop("UNKNOWN", "the group's settings changed; subscribe again");
        await entry.group.settled();
        const group = this.#makeGroup(gen, key, record);
        await group.load();
        gen.groups.set(keyOf(key), { record, group });
      });
    });
  }

  delete(key: GroupKey): Promise<void> {
    return this.#serial(async () => {
      await this.#changeConfig(async (gen) => {
        const entry = gen.groups.get(keyOf(key));
        if (!entry) throw notFound(key);
        await this.#appendConfig(gen, "GroupDeleted", key, undefined);
        gen.groups.delete(keyOf(key));
        entry.group.stop(
          "PERSISTENT_SUBSCRIPTION_NOT_FOUND",
          `persistent subscription group "${key.group}" on "${key.streamId}" was deleted`,
        );
        // Its last writes land before the streams are deleted, never after.
        await entry.group.settled();
      });
      const store = this.#d.store();
      for (const s of [checkpointStream(key), acksStream(key), parkedStream(key)]) {
        try {
          await store.delete(s, { kind: "any" }, false);
        } catch (err) {
          if (!(err instanceof StoreError && err.code === "STREAM_NOT_FOUND")) throw err;
        }
      }
    });
  }

  async list(streamId: string | undefined): Promise<GroupInfo[]> {
    const gen = await this.#current();
    return [...gen.groups.values()]
      .filter(({ group }) => streamId === undefined || group.key.streamId === streamId)
      .map(({ group }) => group.info())
      .sort((a, b) => a.streamId.localeCompare(b.streamId) || a.group.localeCompare(b.group));
  }

  /** The groups this node serves now (as leader), for metrics; none while it does not lead. */
  groupsServed(): GroupInfo[] {
    const gen = this.#gen;
    if (!gen || gen.dead) return [];
    return [...gen.groups.values()].map(({ group }) => group.info());
  }

  async getInfo(key: GroupKey): Promise<GroupInfo> {
    return (await this.#find(key)).group.info();
  }

  async replayParked(key: GroupKey, stopAt: number): Promise<number> {
    return (await this.#find(key)).group.replayParked(stopAt);
  }

  /**
   * The group's entry in the current generation. One this server does not know is looked for
   * in the config stream as stored before the answer is GROUP_NOT_FOUND (#syncConfig).
   */
  async #find(key: GroupKey): Promise<{ record: GroupRecord; group: Group }> {
    const gen = await this.#current();
    let entry = gen.groups.get(keyOf(key));
    const reload = entry === undefined ? gen.reloads.get(keyOf(key)) : undefined;
    if (reload) {
      await reload;
      if (gen.dead) throw this.#leadershipLost();
      entry = gen.groups.get(keyOf(key));
    }
    if (!entry) {
      await this.#serial(() => this.#syncConfig(gen));
      if (gen.dead) throw this.#leadershipLost();
      entry = gen.groups.get(keyOf(key));
    }
    if (!entry) throw notFound(key);
    return entry;
  }

  /**
   * Adds a consumer to a group; throws PersistentError (GROUP_NOT_FOUND, MAX_CONSUMERS_REACHED)
   * or NotLeaderError.
   */
  async subscribe(
    key: GroupKey,
    sink: ConsumerSink,
    options: ConsumerOptions,
  ): Promise<ConsumerHandle> {
    const entry = await this.#find(key);
    const max = entry.record.settings.maxSubscriberCount;
    if (max > 0 && entry.group.consumerCount >= max) {
      throw new PersistentError(
        "MAX_CONSUMERS_REACHED",
        `persistent subscription group "${key.group}" on "${key.streamId}" already has its maximum of ${max} consumers`,
        key.streamId,
      );
    }
    return entry.group.addConsumer(sink, options);
  }

  /** Drops every consumer (the node is stopping). */
  close(): void {
    this.#closed = true;
    if (this.#watch) clearInterval(this.#watch);
    this.#watch = undefined;
    if (this.#gen) this.#stopGeneration(this.#gen, "SHUTTING_DOWN", "the node is shutting down");
  }

  // ---------------------------------------------------------------- helpers

  /** Where a new group starts reading: "end" is fixed now, so every leader agrees on it. */
  async #initialCursor(key: GroupKey, settings: GroupSettings): Promise<InitialCursor> {
    const store = this.#d.store();
    if (settings.startFrom === "start") return { from: 0 };
    if (typeof settings.startFrom === "number") {
      if (key.streamId === "$all") {
        // Must be the start of a record: ask the store.
        try {
          await store.readAll({
            direction: "forwards",
            fromPosition: settings.startFrom,
            maxCount: 1,
            maxScan: 1,
          });
        } catch (err) {
          if (err instanceof StoreError && err.code === "INVALID_ARGUMENT")
            throw new PersistentError(
              "INVALID_ARGUMENT",
              `startFrom ${settings.startFrom} is not a position in $all (${err.message})`,
            );
          throw err;
        }
      }
      return { from: settings.startFrom };
    }
    if (key.streamId === "$all") return { from: store.commitPosition };
    try {
      const r = await store.readStream(key.streamId, {
        direction: "backwards",
        fromRevision: "end",
        maxCount: 1,
      });
      return { from: r.lastRevision + 1 };
    } catch (err) {
      if (err instanceof StoreError && err.code === "STREAM_NOT_FOUND") return { from: 0 };
      throw err;
    }
  }

  /**
   * Runs a change of the groups (inside #serial) on the current generation. When another
   * server appended to the config stream first (ConfigConflict), the groups are read again and
   * the change decided again on them.
   */
  async #changeConfig(work: (gen: Generation) => Promise<void>): Promise<void> {
    const gen = await this.#current();
    for (let attempt = 1; ; attempt++) {
      try {
        return await work(gen);
      } catch (err) {
        if (!(err instanceof ConfigConflict)) throw err;
        if (attempt >= CONFIG_ATTEMPTS)
          throw new PersistentError(
            "UNAVAILABLE",
            "the persistent subscription groups keep being changed by another server; retry",
          );
        await this.#syncConfig(gen);
        if (gen.dead) throw this.#leadershipLost();
      }
    }
  }

  /** Appends a config record expecting the generation's known revision (ConfigConflict if not). */
  async #appendConfig(
    gen: Generation,
    type: "GroupCreated" | "GroupUpdated" | "GroupDeleted",
    key: GroupKey,
    record: GroupRecord | undefined,
  ): Promise<void> {
    const body = { streamId: key.streamId, group: key.group, ...record };
    const expected: ExpectedVersion =
      gen.configNext === 0
        ? { kind: "no_stream" }
        : { kind: "exact", revision: gen.configNext - 1 };
    const result = await this.#d.store().append(CONFIG_STREAM, expected, [
      {
        id: randomUUID(),
        type,
        isJson: true,
        data: Buffer.from(JSON.stringify(body), "utf8"),
        metadata: new Uint8Array(0),
      },
    ]);
    if (!result.ok) throw new ConfigConflict();
    gen.configNext = result.nextExpectedVersion + 1;
  }
}

/** The config stream moved on since this server read it: another server changed the groups. */
class ConfigConflict extends Error {}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
