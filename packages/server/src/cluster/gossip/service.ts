/**
 * The gossip service: every `intervalMs` it POSTs this node's view to its targets (see
 * targets.ts), merges the replies, and serves `GET /gossip` / `POST /gossip` through
 * `document()` and `handlePost()` (the HTTP API's node:http adapter: api/gossip-handler.ts).
 *
 * Everything it touches from outside is injected: the clock, the HTTP client (transport), the
 * logger, the random source and the node's own record (`self()`).
 */
import type { Endpoint, GossipDocument, GossipPostResult, MemberInfo } from "../../node-types.js";
import { Membership, significantChange, type MemberEntry } from "./membership.js";
import { gossipTargets } from "./targets.js";
import { HttpGossipTransport, type GossipTransport } from "./transport.js";
import { DEFAULT_GOSSIP_INTERVAL_MS, DEFAULT_GOSSIP_TIMEOUT_MS } from "../timings.js";
import {
  endpointKey,
  parseEndpoint,
  parseGossipDocument,
  parseGossipText,
  recordToWire,
  type MemberRecord,
  type ParsedDocument,
} from "./wire.js";

export { DEFAULT_GOSSIP_INTERVAL_MS, DEFAULT_GOSSIP_TIMEOUT_MS };
/** Dead after three missed rounds plus one round of slack (latency, timer jitter, GC). */
export const DEFAULT_DEAD_AFTER_ROUNDS = 4;
export const DEFAULT_REMOVE_AFTER_MS = 60_000;
export const DEFAULT_MAX_GOSSIP_BODY_BYTES = 1024 * 1024;

export interface GossipClock {
  /** Local monotonic milliseconds: liveness is measured with this clock only. */
  monotonicMs(): number;
  /** Wall clock (ms since the Unix epoch): stamps this node's own record. */
  wallMs(): number;
}

export const systemClock: GossipClock = {
  monotonicMs: () => performance.now(),
  wallMs: () => Date.now(),
};

/** The subset of a pino logger the service uses. */
export interface GossipLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** This node's record as the node produces it; `timestamp` and `isAlive` are the service's. */
export type SelfMemberInfo = Omit<MemberInfo, "timestamp" | "isAlive"> &
  Partial<Pick<MemberInfo, "timestamp" | "isAlive">>;

/** A member as the service reports it. */
export interface GossipMember {
  readonly record: MemberRecord;
  readonly isAlive: boolean;
  readonly isSelf: boolean;
  /** Local monotonic time of the last refresh (for self: now). */
  readonly lastHeardMs: number;
  readonly lastDirectMs: number | undefined;
}

export interface GossipServiceOptions {
  /** This node's record; called whenever a document is produced. */
  readonly self: () => SelfMemberInfo;
  /** Internal HTTP endpoints (`host:port` or `{host, port}`), e.g. `--gossip-seed`. */
  readonly seeds?: readonly (string | Endpoint)[];
  /** Called each round for more seeds (the DNS variant); failures are logged, never fatal. */
  readonly seedSource?: () => readonly Endpoint[] | Promise<readonly Endpoint[]>;
  /** When set, documents carrying another clusterId are refused (missing: accepted). */
  readonly clusterId?: string;
  readonly intervalMs?: number;
  readonly deadAfterMs?: number;
  readonly removeAfterMs?: number;
  /** Deadline of one gossip request (and of one `seedSource()` call). */
  readonly requestTimeoutMs?: number;
  /** Targets per round; default all. */
  readonly fanout?: number;
  readonly maxBodyBytes?: number;
  readonly logger: GossipLogger;
  readonly clock?: GossipClock;
  readonly transport?: GossipTransport;
  /** Uniform in [0, 1); used only with `fanout`. */
  readonly random?: () => number;
}

type Listener = (members: readonly GossipMember[]) => void;

export class GossipService {
  readonly intervalMs: number;
  readonly deadAfterMs: number;
  readonly removeAfterMs: number;
  readonly requestTimeoutMs: number;
  readonly maxBodyBytes: number;

  private readonly membership: Membership;
  private readonly clock: GossipClock;
  private readonly transport: GossipTransport;
  private readonly logger: GossipLogger;
  private readonly random: () => number;
  private readonly fanout: number;
  private readonly staticSeeds: readonly Endpoint[];
  private readonly selfId: string;
  private readonly listeners = new Set<Listener>();
  /** Endpoints found to be this node (a seed that answered with our own instanceId). */
  private readonly selfAliases = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly failing = new Set<string>();
  private readonly rounds = new Set<Promise<void>>();
  private seedLookup: Promise<readonly Endpoint[]> | undefined;
  private lastSelf: MemberRecord | undefined;
  private lastStampMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = false;

  constructor(private readonly options: GossipServiceOptions) {
    this.intervalMs = options.intervalMs ?? DEFAULT_GOSSIP_INTERVAL_MS;
    this.deadAfterMs = options.deadAfterMs ?? DEFAULT_DEAD_AFTER_ROUNDS * this.intervalMs;
    this.removeAfterMs = options.removeAfterMs ?? DEFAULT_REMOVE_AFTER_MS;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_GOSSIP_TIMEOUT_MS;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_GOSSIP_BODY_BYTES;
    this.fanout = options.fanout ?? Number.POSITIVE_INFINITY;
    if (!(this.intervalMs > 0)) throw new RangeError("intervalMs must be positive");
    if (!(this.requestTimeoutMs > 0)) throw new RangeError("requestTimeoutMs must be positive");
    if (!(this.fanout >= 1)) throw new RangeError("fanout must be at least 1");
    this.clock = options.clock ?? systemClock;
    this.transport =
      options.transport ?? new HttpGossipTransport({ maxResponseBytes: this.maxBodyBytes });
    this.logger = options.logger;
    this.random = options.random ?? Math.random;
    this.staticSeeds = (options.seeds ?? []).map((s) => {
      if (typeof s !== "string") return { host: s.host, port: s.port };
      const ep = parseEndpoint(s);
      if (!ep) throw new RangeError(`gossip seed ${JSON.stringify(s)} is not host:port`);
      return ep;
    });
    this.selfId = options.self().instanceId;
    this.membership = new Membership({
      selfId: this.selfId,
      deadAfterMs: this.deadAfterMs,
      removeAfterMs: this.removeAfterMs,
    });
    this.selfRecord(); // validates self() now, so a bad record fails construction
  }

  // ---- lifecycle ----

  /** Starts the loop; the first round runs at once. */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops the loop, aborts requests in flight and closes sockets; resolves when all settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.transport.close();
    await Promise.allSettled([...this.rounds]);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.running) return;
      const round = this.gossipOnce()
        .catch((err: unknown) => this.logger.error({ err }, "gossip round failed"))
        .finally(() => this.rounds.delete(round));
      this.rounds.add(round);
      this.schedule(this.intervalMs);
    }, delayMs);
  }

  // ---- the view ----

  /** Registers a listener for membership, state or liveness changes; returns its remover. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every member, this node first, the others by instanceId (liveness as of now). */
  members(): GossipMember[] {
    const now = this.clock.monotonicMs();
    this.sweep(now);
    return this.snapshot(this.selfRecord(), now);
  }

  /** The alive Leader with the highest epoch, if any (for NOT_LEADER answers and forwarding). */
  leader(): GossipMember | undefined {
    let best: GossipMember | undefined;
    for (const m of this.members())
      if (m.isAlive && m.record.state === "Leader")
        if (!best || m.record.epochNumber > best.record.epochNumber) best = m;
    return best;
  }

  /** The `GET /gossip` body (and the reply to a POST). */
  document(): GossipDocument {
    const now = this.clock.monotonicMs();
    this.sweep(now);
    const self = this.selfRecord();
    const doc: GossipDocument = {
      members: this.snapshot(self, now).map((m) => recordToWire(m.record, m.isAlive)),
      sender: this.selfId,
    };
    if (this.options.clusterId !== undefined) doc.clusterId = this.options.clusterId;
    return doc;
  }

  /**
   * `POST /gossip` with the body's text: validates, merges, answers with this node's view.
   * A bad body gets 400 and changes nothing; another cluster's document gets 409.
   */
  handlePost(text: string): GossipPostResult {
    if (Buffer.byteLength(text) > this.maxBodyBytes)
      return this.refuse(413, "PAYLOAD_TOO_LARGE", `the body exceeds ${this.maxBodyBytes} bytes`);
    const parsed = parseGossipText(text);
    if (!parsed.ok) return this.refuse(400, "BAD_REQUEST", parsed.reason);
    const mismatch = this.clusterMismatch(parsed.doc);
    if (mismatch) return this.refuse(409, "CLUSTER_MISMATCH", mismatch);
    this.merge(parsed.doc);
    return { status: 200, body: this.document() };
  }

  /** Runs one round now: POSTs the view to every target and merges the replies. */
  async gossipOnce(): Promise<void> {
    this.sweep(this.clock.monotonicMs());
    const seeds = [...this.staticSeeds, ...(await this.sourcedSeeds())];
    if (this.stopped) return;
    const self = this.selfRecord();
    const selfKeys = new Set(this.selfAliases);
    selfKeys.add(endpointKey(self.internalHttp));
    selfKeys.add(endpointKey(self.externalHttp));
    const targets = gossipTargets({
      members: this.membership.members(),
      seeds,
      selfKeys,
      fanout: this.fanout,
      random: this.random,
    });
    const keys = new Set(targets.map(endpointKey));
    for (const key of this.failing) if (!keys.has(key)) this.failing.delete(key);
    const body = JSON.stringify(this.document());
    await Promise.all(
      targets.filter((t) => !this.inFlight.has(endpointKey(t))).map((t) => this.exchange(t, body)),
    );
  }

  /** Logs an unexpected error of a request handler. */
  logError(err: unknown): void {
    this.logger.error({ err }, "gossip request failed");
  }

  // ---- internals ----

  private async exchange(target: Endpoint, body: string): Promise<void> {
    const key = endpointKey(target);
    this.inFlight.add(key);
    try {
      const text = await this.transport.post(target, body, this.requestTimeoutMs);
      if (this.stopped) return;
      const parsed = parseGossipText(text);
      if (!parsed.ok) throw new Error(`malformed reply: ${parsed.reason}`);
      if (parsed.doc.sender === this.selfId) {
        if (!this.selfAliases.has(key)) {
          this.selfAliases.add(key);
          this.logger.info(
            { endpoint: key },
            "gossip target is this node; skipping it from now on",
          );
        }
        return;
      }
      const mismatch = this.clusterMismatch(parsed.doc);
      if (mismatch) throw new Error(mismatch);
      this.merge(parsed.doc);
      if (this.failing.delete(key))
        this.logger.info({ endpoint: key }, "gossip target reachable again");
    } catch (err) {
      if (this.stopped) return;
      const reason = err instanceof Error ? err.message : String(err);
      if (this.failing.has(key)) this.logger.debug({ endpoint: key, reason }, "gossip failed");
      else {
        this.failing.add(key);
        this.logger.warn({ endpoint: key, reason }, "gossip failed");
      }
    } finally {
      this.inFlight.delete(key);
    }
  }

  private async sourcedSeeds(): Promise<readonly Endpoint[]> {
    const source = this.options.seedSource;
    if (!source) return [];
    this.seedLookup ??= this.lookupSeeds(source).finally(() => {
      this.seedLookup = undefined;
    });
    return this.seedLookup;
  }

  private async lookupSeeds(
    source: () => readonly Endpoint[] | Promise<readonly Endpoint[]>,
  ): Promise<readonly Endpoint[]> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        Promise.resolve().then(source),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`seedSource gave no answer within ${this.requestTimeoutMs} ms`)),
            this.requestTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.logger.warn({ err }, "gossip seed lookup failed; using the static seeds only");
      return [];
    } finally {
      clearTimeout(timer);
    }
  }

  private clusterMismatch(doc: ParsedDocument): string | undefined {
    const mine = this.options.clusterId;
    if (mine === undefined || doc.clusterId === undefined || doc.clusterId === mine)
      return undefined;
    const reason = `document of cluster ${doc.clusterId} ignored (this is cluster ${mine})`;
    this.logger.warn({ sender: doc.sender, clusterId: doc.clusterId }, reason);
    return reason;
  }

  private refuse(status: number, error: string, message: string): GossipPostResult {
    this.logger.warn({ status, reason: message }, "gossip POST refused");
    return { status, body: { error, message } };
  }

  private merge(doc: ParsedDocument): void {
    const now = this.clock.monotonicMs();
    const changed = this.membership.merge(doc, now);
    const swept = this.membership.sweep(now);
    if (changed || swept) this.emit(now);
  }

  private sweep(now: number): void {
    if (this.membership.sweep(now)) this.emit(now);
  }

  /** This node's record, freshly stamped; a significant change of it is reported. */
  private selfRecord(): MemberRecord {
    const info = this.options.self();
    const stamp = Math.max(Math.floor(this.clock.wallMs()), this.lastStampMs + 1);
    this.lastStampMs = stamp;
    const parsed = parseGossipDocument({
      members: [{ ...info, isAlive: true, timestamp: new Date(stamp).toISOString() }],
    });
    const record = parsed.ok ? parsed.doc.members[0]?.record : undefined;
    if (!record)
      throw new Error(`self() returned an invalid MemberInfo: ${parsed.ok ? "?" : parsed.reason}`);
    if (record.instanceId !== this.selfId) throw new Error("self() changed its instanceId");
    const previous = this.lastSelf;
    this.lastSelf = record;
    if (previous && significantChange(previous, record))
      this.emit(this.clock.monotonicMs(), record);
    return record;
  }

  private snapshot(self: MemberRecord, now: number): GossipMember[] {
    const mine: GossipMember = {
      record: self,
      isAlive: true,
      isSelf: true,
      lastHeardMs: now,
      lastDirectMs: now,
    };
    return [mine, ...this.membership.members().map((e) => other(e))];
  }

  private emit(now: number, self?: MemberRecord): void {
    if (this.listeners.size === 0) return;
    const record = self ?? this.lastSelf;
    if (!record) return;
    const members = this.snapshot(record, now);
    for (const listener of this.listeners) {
      try {
        listener(members);
      } catch (err) {
        this.logger.error({ err }, "gossip onChange listener threw");
      }
    }
  }
}

function other(e: MemberEntry): GossipMember {
  return { ...e, isSelf: false };
}
