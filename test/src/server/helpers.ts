import { chorus, decodeFrame, encodeFrame, type Frame, type FrameInit } from "@chorus/protocol";
import { createLogger, createNode, type ChorusNode, type NodeOptions } from "@chorus/server";
import { randomUUID } from "node:crypto";
import type { ChorusClient } from "@chorus/client";
import type { TestNode } from "@chorus/testing";
import { afterEach } from "vitest";
import WebSocket from "ws";

/** The value of the sample `key` of a `/metrics` text (`name{labels}` exactly as exposed), or undefined. */
export function metricSample(text: string, key: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${key} `));
  return line === undefined ? undefined : Number(line.slice(key.length + 1));
}

export const PORTS_0 = { extTcpPort: 0, extHttpPort: 0, intTcpPort: 0, intHttpPort: 0 } as const;

export async function startNode(options: Partial<NodeOptions> = {}): Promise<ChorusNode> {
  return createNode(
    { memDb: true, ...PORTS_0, ...options },
    { logger: createLogger({ level: "silent" }) },
  );
}

/** Polls a predicate until it holds or the deadline passes. */
export async function waitFor(
  predicate: () => boolean,
  timeoutMs = 5_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface Closed {
  code: number;
  reason: string;
}

/** A raw native-protocol client: ws + @chorus/protocol, no SDK. */
export class RawClient {
  readonly frames: Frame[] = [];
  closed: Closed | undefined;
  #next = 1;
  readonly #waiters = new Map<number, (f: Frame) => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer, isBinary) => {
      if (!isBinary) throw new Error("server sent a text frame");
      const frame = decodeFrame(new Uint8Array(data), 64 * 1024 * 1024);
      this.frames.push(frame);
      const id = Number(frame.correlationId);
      const w = this.#waiters.get(id);
      if (w) {
        this.#waiters.delete(id);
        w(frame);
      }
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
    ws.on("error", () => undefined);
  }

  static async connect(url: string, options: WebSocket.ClientOptions = {}): Promise<RawClient> {
    const ws = new WebSocket(url, options);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return new RawClient(ws);
  }

  nextId(): number {
    return this.#next++;
  }

  /** Sends a request and resolves with the first frame carrying its correlation id. */
  request(init: Omit<FrameInit, "correlationId">, timeoutMs = 5_000): Promise<Frame> {
    const id = this.nextId();
    return this.requestWithId(id, init, timeoutMs);
  }

  requestWithId(
    id: number,
    init: Omit<FrameInit, "correlationId">,
    timeoutMs = 5_000,
  ): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        reject(new Error(`no reply to request ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(id, (f) => {
        clearTimeout(timer);
        resolve(f);
      });
      this.ws.send(encodeFrame({ ...init, correlationId: id }));
    });
  }

  send(init: FrameInit): void {
    this.ws.send(encodeFrame(init));
  }

  framesFor(id: number): Frame[] {
    return this.frames.filter((f) => Number(f.correlationId) === id);
  }

  async waitClosed(timeoutMs = 5_000): Promise<Closed> {
    await waitFor(() => this.closed !== undefined, timeoutMs, "the connection to close");
    return this.closed as Closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.ws.close();
    await this.waitClosed();
  }
}

export function nativeUrl(node: ChorusNode, scheme = "ws"): string {
  return `${scheme}://${node.endpoints.extTcp.host}:${node.endpoints.extTcp.port}/`;
}

export function httpUrl(node: ChorusNode, path: string, scheme = "http"): string {
  return `${scheme}://${node.endpoints.extHttp.host}:${node.endpoints.extHttp.port}${path}`;
}

export function jsonEvent(
  type: string,
  data: unknown,
  id: string = randomUUID(),
): chorus.IEventData {
  return {
    id,
    type,
    isJson: true,
    data: Buffer.from(JSON.stringify(data)),
    metadata: new Uint8Array(0),
  };
}

export const Kind = chorus.ExpectedVersion.Kind;
export const Code = chorus.ErrorResponse.Code;

export async function append(
  c: RawClient,
  streamId: string,
  events: chorus.IEventData[],
  expected: chorus.IExpectedVersion = { kind: Kind.ANY },
  timeoutMs?: number,
): Promise<Frame> {
  return c.request({ append: { streamId, expected, events } }, timeoutMs);
}

export async function readAllForwards(
  c: RawClient,
  streamId: string,
): Promise<chorus.IRecordedEvent[]> {
  const f = await c.request({
    readStream: { streamId, direction: chorus.Direction.FORWARDS, fromRevision: 0, maxCount: 4096 },
  });
  if (f.body !== "readResult")
    throw new Error(`expected readResult, got ${f.body} ${JSON.stringify(f.error)}`);
  return (f.readResult?.events ?? []).map((e) => e.event as chorus.IRecordedEvent);
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

/** The node process, the client and raw sockets a test of the file started: closed after each test. */
export interface PerTest {
  node?: TestNode;
  client?: ChorusClient;
  readonly sockets: Array<{ destroy(): void }>;
}

/** Registers the file's afterEach that closes what a test put into the returned holder. */
export function closedAfterEach(): PerTest {
  const held: PerTest = { sockets: [] };
  afterEach(async () => {
    for (const s of held.sockets.splice(0)) s.destroy();
    await held.client?.close();
    held.client = undefined;
    await held.node?.stop();
    held.node = undefined;
  });
  return held;
}
