/**
 * A tiny in-process stand-in for a Chorus node, for the client's own tests: HTTP gossip
 * plus a WebSocket speaking the native protocol over an in-memory log. Not exported.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { chorus, decodeFrame, encodeFrame, type Frame, type FrameInit } from "@chorus/protocol";
import { WebSocketServer, type WebSocket } from "ws";

export interface StoredEvent {
  streamId: string;
  revision: number;
  position: number;
  id: string;
  type: string;
  isJson: boolean;
  data: Uint8Array;
  metadata: Uint8Array;
  createdMs: number;
}

type AppendOutcome =
  | { success: { nextExpectedVersion: number; position: number } }
  | { wrongExpectedVersion: chorus.IWrongExpectedVersion };

/** An in-memory log shared by fake nodes (so a "failover" keeps the data). */
export class FakeStore {
  readonly events: StoredEvent[] = [];
  readonly deleted = new Map<string, "soft" | "hard">();
  readonly listeners = new Set<() => void>();

  stream(streamId: string): StoredEvent[] {
    return this.events.filter((e) => e.streamId === streamId);
  }

  append(req: chorus.IAppendRequest): AppendOutcome {
    const streamId = req.streamId ?? "";
    const existing = this.stream(streamId);
    const last = existing.length - 1;
    const events = req.events ?? [];
    const kind = req.expected?.kind ?? 0;
    const K = chorus.ExpectedVersion.Kind;
    // idempotency: the same ids right after the expected version -> the original result
    const first = events[0]?.id;
    const at = existing.findIndex((e) => e.id === first);
    if (at >= 0 && events.every((e, i) => existing[at + i]?.id === e.id)) {
      const lastOne = existing[at + events.length - 1]!;
      return { success: { nextExpectedVersion: lastOne.revision, position: lastOne.position } };
    }
    const ok =
      kind === K.ANY ||
      (kind === K.NO_STREAM && last < 0) ||
      (kind === K.STREAM_EXISTS && last >= 0) ||
      (kind === K.EXACT && Number(req.expected?.revision ?? 0) === last);
    if (!ok)
      return {
        wrongExpectedVersion: {
          expected: req.expected ?? null,
          streamExists: last >= 0,
          actualRevision: Math.max(last, 0),
        },
      };
    let revision = last;
    let position = 0;
    for (const e of events) {
      revision++;
      position = this.events.length + 1;
      this.events.push({
        streamId,
        revision,
        position,
        id: e.id ?? "",
        type: e.type ?? "",
        isJson: e.isJson === true,
        data: e.data ?? new Uint8Array(),
        metadata: e.metadata ?? new Uint8Array(),
        createdMs: 1_700_000_000_000,
      });
    }
    for (const l of this.listeners) l();
    return { success: { nextExpectedVersion: revision, position } };
  }
}

function toWire(e: StoredEvent): chorus.IResolvedEvent {
  return { event: { ...e } };
}

export interface FakeNodeOptions {
  store?: FakeStore;
  instanceId?: string;
  state?: string;
  /** Don't answer pings (a dead-but-open connection). */
  noPong?: boolean;
  /** Intercepts a frame; return true when handled. */
  intercept?: (frame: Frame, ws: WebSocket, send: (f: FrameInit) => void) => boolean;
}

export class FakeNode {
  readonly store: FakeStore;
  readonly instanceId: string;
  state: string;
  readonly received: Frame[] = [];
  readonly upgrades: IncomingMessage[] = [];
  intercept: FakeNodeOptions["intercept"];
  /** Members to report; default: this node alone. */
  gossip: (() => unknown[]) | undefined;
  gossipStatus = 200;
  /** Gossip requests answered so far. */
  gossipReads = 0;
  /** Native pings answered. */
  pings = 0;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #tcp: Server;

  private constructor(options: FakeNodeOptions) {
    this.store = options.store ?? new FakeStore();
    this.instanceId = options.instanceId ?? "node-1";
    this.state = options.state ?? "Leader";
    this.intercept = options.intercept;
    this.#http = createServer((req, res) => this.#onHttp(req, res));
    this.#tcp = createServer();
    this.#wss = new WebSocketServer({ server: this.#tcp, autoPong: !options.noPong });
    this.#wss.on("connection", (ws, req) => {
      this.upgrades.push(req);
      this.#onSocket(ws);
    });
  }

  static async start(options: FakeNodeOptions = {}): Promise<FakeNode> {
    const node = new FakeNode(options);
    await new Promise<void>((r) => node.#http.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => node.#tcp.listen(0, "127.0.0.1", r));
    return node;
  }

  get httpPort(): number {
    return (this.#http.address() as AddressInfo).port;
  }
  get tcpPort(): number {
    return (this.#tcp.address() as AddressInfo).port;
  }
  get httpEndpoint(): string {
    return `127.0.0.1:${this.httpPort}`;
  }
  get clients(): number {
    return this.#wss.clients.size;
  }

  memberInfo(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      instanceId: this.instanceId,
      state: this.state,
      isAlive: true,
      timestamp: "2024-01-01T00:00:00.000Z",
      internalTcp: { host: "127.0.0.1", port: 1 },
      externalTcp: { host: "127.0.0.1", port: this.tcpPort },
      internalHttp: { host: "127.0.0.1", port: 2 },
      externalHttp: { host: "127.0.0.1", port: this.httpPort },
      lastCommitPosition: "0",
      writerCheckpoint: "0",
      chaserCheckpoint: "0",
      epochNumber: 1,
      epochPosition: "0",
      epochId: "e",
      nodePriority: 0,
      isReadOnlyReplica: false,
      ...overrides,
    };
  }

  #onHttp(req: IncomingMessage, res: ServerResponse): void {
    if (req.url !== "/gossip") {
      res.writeHead(404).end();
      return;
    }
    this.gossipReads++;
    if (this.gossipStatus !== 200) {
      res.writeHead(this.gossipStatus).end("nope");
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ members: this.gossip ? this.gossip() : [this.memberInfo()] }));
  }

  /** Cuts every client connection (like a crash). */
  dropConnections(): void {
    for (const ws of this.#wss.clients) ws.terminate();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((r) => this.#wss.close(() => r()));
    await new Promise<void>((r) => this.#tcp.close(() => r()));
    this.#http.closeAllConnections();
    await new Promise<void>((r) => this.#http.close(() => r()));
  }

  #onSocket(ws: WebSocket): void {
    const subs = new Map<number, { credit: number; pump: () => void; stop: () => void }>();
    const send = (f: FrameInit) => {
      if (ws.readyState === ws.OPEN) ws.send(encodeFrame(f));
    };
    ws.on("close", () => {
      for (const s of subs.values()) s.stop();
    });
    ws.on("message", (data: Buffer) => {
      const frame = decodeFrame(new Uint8Array(data));
      this.received.push(frame);
      const id = frame.correlationId;
      if (this.intercept?.(frame, ws, send)) return;
      if (frame.append) {
        if (this.state !== "Leader") {
          send({ correlationId: id, notHandled: { reason: chorus.NotHandled.Reason.NOT_LEADER } });
          return;
        }
        send({ correlationId: id, appendResult: this.store.append(frame.append) });
      } else if (frame.readStream) {
        const r = frame.readStream;
        const streamId = r.streamId ?? "";
        const events = this.store.stream(streamId);
        if (events.length === 0) {
          send({
            correlationId: id,
            error: { code: chorus.ErrorResponse.Code.STREAM_NOT_FOUND, streamId },
          });
          return;
        }
        const backwards = r.direction === chorus.Direction.BACKWARDS;
        const last = events.length - 1;
        const from = r.fromEnd ? (backwards ? last : last + 1) : Number(r.fromRevision);
        const max = r.maxCount ?? 0;
        const page = backwards
          ? events
              .filter((e) => e.revision <= from)
              .reverse()
              .slice(0, max)
          : events.filter((e) => e.revision >= from).slice(0, max);
        const lastInPage = page[page.length - 1];
        const next = lastInPage
          ? backwards
            ? lastInPage.revision - 1
            : lastInPage.revision + 1
          : from;
        const endOfStream = backwards ? next < 0 : next > last;
        send({
          correlationId: id,
          readResult: {
            events: page.map(toWire),
            endOfStream,
            nextRevision: Math.max(next, 0),
            lastRevision: last,
          },
        });
      } else if (frame.readAll) {
        const r = frame.readAll;
        const all = this.store.events;
        const backwards = r.direction === chorus.Direction.BACKWARDS;
        const max = r.maxCount ?? 0;
        const from = r.fromEnd ? (backwards ? Infinity : all.length + 1) : Number(r.fromPosition);
        const page = backwards
          ? all
              .filter((e) => e.position < from)
              .reverse()
              .slice(0, max)
          : all.filter((e) => e.position >= from).slice(0, max);
        const lastInPage = page[page.length - 1];
        const next = lastInPage
          ? backwards
            ? lastInPage.position
            : lastInPage.position + 1
          : Number.isFinite(from)
            ? from
            : 0;
        const endOfStream = backwards ? (lastInPage?.position ?? 0) <= 1 : next > all.length;
        send({
          correlationId: id,
          readResult: { events: page.map(toWire), endOfStream, nextPosition: next },
        });
      } else if (frame.deleteStream) {
        this.store.deleted.set(
          frame.deleteStream.streamId ?? "",
          frame.deleteStream.hard ? "hard" : "soft",
        );
        send({
          correlationId: id,
          deleteResult: { success: { position: this.store.events.length } },
        });
      } else if (frame.subscribe) {
        const s = frame.subscribe;
        const K = chorus.SubscribeRequest.StartKind;
        let after = s.start === K.AFTER ? Number(s.all ? s.afterPosition : s.afterRevision) : -1;
        const matches = (e: StoredEvent) => (s.all ? true : e.streamId === s.streamId);
        const mark = (e: StoredEvent) => (s.all ? e.position : e.revision);
        const state = {
          credit: s.credit ?? 0,
          caughtUp: false,
          pump: () => {
            const pending = this.store.events.filter((e) => matches(e) && mark(e) > after);
            const batch = pending.slice(0, state.credit);
            if (batch.length > 0) {
              state.credit -= batch.length;
              after = mark(batch[batch.length - 1]!);
              send({ correlationId: id, subscriptionEvents: { events: batch.map(toWire) } });
            }
            if (!state.caughtUp && pending.length === batch.length) {
              state.caughtUp = true;
              send({
                correlationId: id,
                subscriptionCaughtUp: { position: this.store.events.length },
              });
            }
          },
          stop: () => this.store.listeners.delete(state.pump),
        };
        subs.set(id, state);
        this.store.listeners.add(state.pump);
        send({
          correlationId: id,
          subscriptionConfirmed: { headPosition: this.store.events.length },
        });
        state.pump();
      } else if (frame.subscriptionCredit) {
        const sub = subs.get(id);
        if (sub) {
          sub.credit += frame.subscriptionCredit.credit ?? 0;
          sub.pump();
        }
      } else if (frame.unsubscribe) {
        subs.get(id)?.stop();
        subs.delete(id);
      } else if (frame.ping) {
        this.pings++;
        send({ correlationId: id, pong: { instanceId: this.instanceId, state: this.state } });
      }
    });
  }
}
