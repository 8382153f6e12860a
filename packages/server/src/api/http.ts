import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, type Socket } from "node:net";
import type { ExpectedVersion } from "../streams/types.js";
import {
  NotLeaderError,
  type Endpoint,
  type MemberInfo,
  type WriteRefusal,
} from "../node-types.js";
import type { NodeContext } from "./context.js";
import { invalidArgument, toWireError } from "./errors.js";
import { checkStreamOwnership } from "./partition-guard.js";
import { createGossipHandler } from "./gossip-handler.js";
import type { BudgetHolder, ByteBudget } from "./byte-budget.js";
import { eventValueSpans, type Span } from "@chorus/protocol";
import { HttpError } from "./http-error.js";
import { eventsPage } from "./event-json.js";
import { ReaderGone } from "../streams/types.js";
import { isAdminPath, serveAdmin, type AdminDependencies } from "./http-admin.js";
import { isUiPath, serveUi } from "./ui-assets.js";
import { sendJson } from "./json.js";
import {
  MAX_PAGE_EVENTS,
  checkAppendSize,
  checkEvents,
  checkClientWrite,
  checkStreamName,
  expectedFromText,
  expectedToText,
} from "./convert.js";

const ZERO_UUID = "00000000-0000-0000-0000-000000000000";
/** Paths served without authentication. */
const OPEN_PATHS = new Set(["/health/live", "/health/ready", "/gossip"]);

/** An advertised host: the bound IP, or for a wildcard bind the address the request came in on. */
function advertised(bound: Endpoint, req: IncomingMessage | undefined): Endpoint {
  if (req && (bound.host === "0.0.0.0" || bound.host === "::")) {
    const local = req.socket.localAddress;
    if (local && isIP(local) !== 0)
      return { host: local.replace(/^::ffff:/, ""), port: bound.port };
  }
  return { host: bound.host, port: bound.port };
}

/** The `--*-advertise-as` settings replace what others are told, not what is bound. */
function override(endpoint: Endpoint, host: string | null, port: number | null): Endpoint {
  return { host: host ?? endpoint.host, port: port ?? endpoint.port };
}

/** This node's gossip record; without `req` (gossip's own record) a wildcard bind stays as is. */
export function memberInfo(ctx: NodeContext, req?: IncomingMessage): MemberInfo {
  const ep = ctx.endpoints();
  const none = { host: ctx.options.extIp, port: 0 };
  const commit = String(ctx.store.commitPosition);
  const o = ctx.options;
  const epoch = ctx.cluster()?.epochInfo();
  return {
    instanceId: ctx.instanceId,
    state: ctx.state(),
    isAlive: true,
    timestamp: new Date().toISOString(),
    internalTcp: override(
      advertised(ep?.intTcp ?? none, req),
      o.intHostAdvertiseAs,
      o.intTcpPortAdvertiseAs,
    ),
    externalTcp: override(
      advertised(ep?.extTcp ?? none, req),
      o.extHostAdvertiseAs,
      o.extTcpPortAdvertiseAs,
    ),
    internalHttp: override(
      advertised(ep?.intHttp ?? none, req),
      o.intHostAdvertiseAs,
      o.intHttpPortAdvertiseAs,
    ),
    externalHttp: override(
      advertised(ep?.extHttp ?? none, req),
      o.extHostAdvertiseAs,
      o.extHttpPortAdvertiseAs,
    ),
    lastCommitPosition: commit,
    writerCheckpoint: commit,
    chaserCheckpoint: commit,
    epochNumber: epoch?.epochNumber ?? 0,
    epochPosition: String(epoch?.epochPosition ?? 0),
    epochId: epoch?.epochId ?? ZERO_UUID,
    nodePriority: ctx.options.nodePriority,
    isReadOnlyReplica: ctx.options.readOnlyReplica,
  };
}

/** The gossip document `GET /gossip` answers: the cluster's view, or this node alone. */
export function gossipDocument(ctx: NodeContext, req?: IncomingMessage): unknown {
  const cluster = ctx.cluster();
  return cluster ? cluster.gossip.document() : { members: [memberInfo(ctx, req)] };
}

/** Request handler of the external HTTP port. */
export function createExternalHttpHandler(
  ctx: NodeContext,
  admin: AdminDependencies = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const turns = new ConnectionTurns();
  const unsent = new UnsentAnswers(ctx.sendBudget);
  return (req, res) => {
    turns
      .next(req, res)
      .then(() => serve(ctx, req, res, true, admin))
      .catch((err: unknown) => fail(ctx, req, res, err))
      .finally(() => unsent.answered(req.socket));
  };
}

/** Request handler of the internal HTTP port: gossip and health only. */
export function createInternalHttpHandler(
  ctx: NodeContext,
): (req: IncomingMessage, res: ServerResponse) => void {
  const turns = new ConnectionTurns();
  return (req, res) => {
    turns
      .next(req, res)
      .then(() => serve(ctx, req, res, false))
      .catch((err: unknown) => fail(ctx, req, res, err));
  };
}

/**
 * The requests of one connection are served one at a time. Node.js hands over every request a
 * client pipelines at once, and HTTP/1.1 answers go out in order anyway: a client that sent
 * many reads (a page of events is up to megabytes of JSON) and read none of the answers had
 * the node build all of them at once (64 pages: more than a GiB). A request waits until the
 * answer before it is finished and the connection's output has drained.
 */
class ConnectionTurns {
  readonly #last = new WeakMap<Socket, Promise<void>>();

  /** Resolves when `req` may be served (at once, unless its connection is busy). */
  async next(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const socket = req.socket;
    const previous = this.#last.get(socket);
    // 'close' follows the end of the answer, and the end of the connection.
    this.#last.set(socket, new Promise<void>((resolve) => res.once("close", () => resolve())));
    if (previous !== undefined) await previous;
    if (socket.writableNeedDrain && !socket.destroyed) await drainedOrClosed(socket);
  }
}

/**
 * What each connection of the external port has not taken off its socket, counted against the
 * node's send budget (byte-budget.ts) as the native API's output is. A connection holds at most
 * one answer (ConnectionTurns), but an answer is up to a page of events, about 4 MiB of JSON:
 * thousands of connections that read none of their answers held gigabytes. When the budget is
 * spent, the connection holding the most is closed (an HTTP client has no message to be told
 * why; the node logs it and counts it in chorus_send_budget_evictions_total).
 */
class UnsentAnswers {
  readonly #holders = new WeakMap<Socket, BudgetHolder>();

  constructor(private readonly budget: ByteBudget) {}

  /** The connection's latest answer has ended: counts what its socket still holds. */
  answered(socket: Socket): void {
    if (socket.destroyed) return;
    let holder = this.#holders.get(socket);
    if (holder === undefined) {
      const h = this.budget.holder(() => socket.destroy());
      socket.on("drain", () => h.holds(socket.writableLength));
      socket.once("close", () => h.release());
      this.#holders.set(socket, h);
      holder = h;
    }
    // The answer reaches the socket when the response uncorks it (the next tick); what the
    // socket has not handed to the system a turn later is what the node holds.
    const counted = holder;
    setImmediate(() => {
      if (!socket.destroyed) counted.holds(socket.writableLength);
    });
  }
}

function drainedOrClosed(socket: Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.on("drain", done);
    socket.on("close", done);
  });
}

function fail(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  let status: number;
  let code: string;
  let message: string;
  let headers: Readonly<Record<string, string>>;
  let owner: string | undefined;
  if (err instanceof ReaderGone) {
    res.destroy();
    return;
  }
  if (err instanceof HttpError) {
    ({ status, code, message, headers } = err);
  } else {
    const wire = toWireError(err);
    ({ httpStatus: status, code, message, httpHeaders: headers, owner } = wire);
    if (wire.internal)
      ctx.logger.error(
        { err, method: req.method, path: req.url?.split("?")[0] },
        "HTTP request failed",
      );
  }
  ctx.metrics.requestErrors.inc({ interface: "http", code });
  ctx.metrics.httpRequests.inc({ method: req.method ?? "?", status: String(status) });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { error: code, message, ...(owner !== undefined && { owner }) }, headers);
}

async function serve(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  external: boolean,
  admin: AdminDependencies = {},
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://node");
  const path = url.pathname;
  const method = req.method ?? "GET";
  // Over the client-connection limit: refused, but health checks and metrics still answer
  // (a supervisor must not restart a node for it, and monitoring must see it).
  if (external && !path.startsWith("/health/") && path !== "/metrics") {
    const crowded = ctx.clientConnectionRefusal();
    if (crowded !== undefined)
      throw new HttpError(503, "TOO_MANY_CONNECTIONS", crowded, { Connection: "close" });
  }
  const ok = (status: number, body: unknown, headers?: Record<string, string>): void => {
    ctx.metrics.httpRequests.inc({ method, status: String(status) });
    sendJson(res, status, body, headers);
  };
  // Aborts when the connection closes before the answer went out: a read still waiting for
  // its turn is then dropped (read-gate.ts). After the answer it aborts nothing.
  const left = new AbortController();
  const gone = (): void => left.abort(new ReaderGone("the HTTP connection closed"));
  res.once("close", gone);
  // A request the client pipelined behind others is served after its connection closed.
  if (req.socket.destroyed) gone();

  if (path === "/gossip") {
    const cluster = ctx.cluster();
    if (cluster) {
      createGossipHandler(cluster.gossip, { allowPost: !external })(req, res);
      return;
    }
    requireMethod(method, ["GET"]);
    ok(200, { members: [memberInfo(ctx, req)] });
    return;
  }
  if (path === "/health/live") {
    requireMethod(method, ["GET", "HEAD"]);
    const restart = ctx.restartNeeded();
    if (restart === undefined) ok(200, { status: "live" });
    else ok(503, { error: "RESTART_NEEDED", message: `${restart}; restart the node` });
    return;
  }
  if (path === "/health/ready") {
    requireMethod(method, ["GET", "HEAD"]);
    const stalledMs = ctx.stalledSyncMs();
    if (stalledMs !== undefined)
      ok(503, {
        error: "NOT_READY",
        message: `the disk stalls: a log sync has been running for ${Math.round(stalledMs)} ms`,
      });
    else if (ctx.isReady()) ok(200, { status: "ready" });
    else ok(503, { error: "NOT_READY", message: `the node is ${ctx.state()}` });
    return;
  }
  if (!external)
    throw new HttpError(
      404,
      "NOT_FOUND",
      `no such endpoint ${path}: the internal HTTP port serves /gossip and /health only`,
    );

  // The admin UI's files need no credentials: the page asks for them in its own form.
  if (isUiPath(path)) {
    serveUi(ctx, req, res, path);
    return;
  }
  if (!OPEN_PATHS.has(path) && ctx.auth.enabled) {
    const result = ctx.auth.checkHeader(req.headers.authorization);
    if (!result.ok) {
      throw new HttpError(
        401,
        "NOT_AUTHENTICATED",
        result.reason === "missing"
          ? "authentication required (HTTP Basic)"
          : "wrong username or password",
        // A page's own requests (the admin UI sends X-Requested-With) get no challenge, so the
        // browser shows no Basic-auth popup over the page's login form.
        req.headers["x-requested-with"] === undefined
          ? { "WWW-Authenticate": 'Basic realm="chorus"' }
          : {},
      );
    }
  }
  if (isAdminPath(path)) {
    await serveAdmin(
      ctx,
      req,
      res,
      url,
      admin,
      (refusal) => forwardToLeader(ctx, req, res, refusal),
      left.signal,
    );
    return;
  }

  if (path === "/info") {
    requireMethod(method, ["GET"]);
    ok(200, {
      version: ctx.version,
      instanceId: ctx.instanceId,
      state: ctx.state(),
      clusterSize: ctx.options.clusterSize,
    });
    return;
  }
  if (path === "/metrics") {
    requireMethod(method, ["GET"]);
    const text = await ctx.metrics.registry.metrics();
    ctx.metrics.httpRequests.inc({ method, status: "200" });
    res.writeHead(200, {
      "Content-Type": ctx.metrics.registry.contentType,
      "Content-Length": String(Buffer.byteLength(text)),
    });
    res.end(text);
    return;
  }
  if (path.startsWith("/streams/")) {
    let raw: string;
    try {
      raw = decodeURIComponent(path.slice("/streams/".length));
    } catch {
      throw invalidArgument("the stream name in the path is not valid percent-encoding");
    }
    const streamId = checkStreamName(raw);
    checkStreamOwnership(ctx.options, streamId);
    if (method === "POST" || method === "DELETE") {
      checkClientWrite(streamId);
      const refusal = ctx.cluster()?.writeRefusal();
      if (refusal) {
        await forwardToLeader(ctx, req, res, refusal);
        return;
      }
    }
    switch (method) {
      case "POST":
        await append(ctx, req, streamId, ok);
        return;
      case "GET":
        await read(ctx, url, streamId, ok, left.signal);
        return;
      case "DELETE":
        await remove(ctx, req, streamId, ok);
        return;
      default:
        throw new HttpError(
          405,
          "METHOD_NOT_ALLOWED",
          `${method} is not allowed on /streams/{stream}`,
          { Allow: "GET, POST, DELETE" },
        );
    }
  }
  throw new HttpError(404, "NOT_FOUND", `no such endpoint ${path}`);
}

function requireMethod(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) {
    throw new HttpError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed here`, {
      Allow: allowed.join(", "),
    });
  }
}

type Reply = (status: number, body: unknown) => void;

async function readBody(req: IncomingMessage, limit: number, budget: ByteBudget): Promise<Buffer> {
  const tooLarge = (): HttpError =>
    new HttpError(413, "PAYLOAD_TOO_LARGE", `request body exceeds the limit of ${limit} bytes`, {
      Connection: "close",
    });
  const declared = Number(req.headers["content-length"] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume(); // discard what the client still sends; the connection closes after the reply
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  // What the body holds until its end counts against the node's receive budget; past it, the
  // connection holding the most goes (byte-budget.ts), this one perhaps.
  const holder = budget.holder((reason) =>
    req.destroy(new HttpError(503, "RECEIVE_BUDGET_SPENT", reason, { Connection: "close" })),
  );
  try {
    for await (const chunk of req) {
      const buf = chunk as Buffer;
      holder.received(buf.byteLength);
      size += buf.byteLength;
      if (size > limit) {
        req.resume();
        throw tooLarge();
      }
      chunks.push(buf);
    }
  } finally {
    holder.release();
  }
  return Buffer.concat(chunks);
}

/** The UTF-8 bytes of a value's text in the request body. */
function sentText(text: string, span: Span | undefined): Uint8Array {
  if (span === undefined)
    throw new Error("internal: a value JSON.parse found, the scanner did not");
  return Buffer.from(text.slice(span[0], span[1]), "utf8");
}

async function append(
  ctx: NodeContext,
  req: IncomingMessage,
  streamId: string,
  ok: Reply,
): Promise<void> {
  const endTimer = ctx.metrics.appendDuration.startTimer({ interface: "http" });
  try {
    await appendBody(ctx, req, streamId, ok);
  } finally {
    endTimer();
  }
}

async function appendBody(
  ctx: NodeContext,
  req: IncomingMessage,
  streamId: string,
  ok: Reply,
): Promise<void> {
  const expected = expectedFromText(header(req, "chorus-expected-version"), streamId);
  const body = await readBody(req, ctx.options.maxFrameBytes, ctx.receiveBudget);
  const text = body.toString("utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new HttpError(
      400,
      "BAD_REQUEST",
      `the body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (!Array.isArray(parsed)) {
    throw new HttpError(
      400,
      "BAD_REQUEST",
      "the body must be a JSON array of events [{eventId, eventType, data, metadata?}]",
    );
  }
  // Each event's data and metadata are stored as the text the client sent (eventValueSpans).
  const spans = eventValueSpans(text);
  const inputs = parsed.map((item: unknown, i) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new HttpError(
        400,
        "BAD_REQUEST",
        `event ${i} is not an object {eventId, eventType, data, metadata?}`,
      );
    }
    const e = item as Record<string, unknown>;
    if (!("data" in e)) throw invalidArgument(`event ${i} has no data`, streamId);
    return {
      id: e["eventId"],
      type: e["eventType"],
      isJson: true,
      data: sentText(text, spans[i]?.data),
      metadata:
        e["metadata"] === undefined ? new Uint8Array(0) : sentText(text, spans[i]?.metadata),
    };
  });
  const events = checkEvents(inputs, streamId);
  checkAppendSize(events, streamId, ctx.options.maxAppendBytes);
  const result = await ctx.track(ctx.store.append(streamId, expected, events));
  if (result.ok) {
    ctx.metrics.appends.inc({ interface: "http", result: "success" });
    ctx.metrics.eventsWritten.inc({ interface: "http" }, events.length);
    ok(201, {
      nextExpectedVersion: String(result.nextExpectedVersion),
      position: String(result.position),
    });
  } else {
    ctx.metrics.appends.inc({ interface: "http", result: "wrong_expected_version" });
    ok(409, wrongExpected(expected, result.wrongExpectedVersion));
  }
}

function wrongExpected(
  expected: ExpectedVersion,
  info: { streamExists: boolean; actualRevision: number },
): unknown {
  const actual = info.streamExists ? String(info.actualRevision) : "no_stream";
  return {
    error: "WRONG_EXPECTED_VERSION",
    message: `expected version ${expectedToText(expected)}, but the stream is at ${actual}`,
    expected: expectedToText(expected),
    actual,
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function read(
  ctx: NodeContext,
  url: URL,
  streamId: string,
  ok: Reply,
  signal: AbortSignal,
): Promise<void> {
  const q = url.searchParams;
  const directionText = q.get("direction") ?? "forwards";
  if (directionText !== "forwards" && directionText !== "backwards") {
    throw invalidArgument(
      `direction must be forwards or backwards, got ${JSON.stringify(directionText.slice(0, 32))}`,
      streamId,
    );
  }
  const fromText = q.get("from") ?? (directionText === "forwards" ? "0" : "end");
  let fromRevision: number | "end";
  if (fromText === "end") fromRevision = "end";
  else if (/^\d+$/.test(fromText) && Number.isSafeInteger(Number(fromText)))
    fromRevision = Number(fromText);
  else
    throw invalidArgument(
      `from must be a revision or "end", got ${JSON.stringify(fromText.slice(0, 32))}`,
      streamId,
    );
  const countText = q.get("count") ?? "20";
  const count = /^\d+$/.test(countText) ? Number(countText) : NaN;
  if (!Number.isInteger(count) || count < 1 || count > MAX_PAGE_EVENTS) {
    throw invalidArgument(
      `count must be between 1 and ${MAX_PAGE_EVENTS}, got ${JSON.stringify(countText.slice(0, 32))}`,
      streamId,
    );
  }
  const r = await ctx.store.readStream(streamId, {
    direction: directionText,
    fromRevision,
    maxCount: count,
    signal,
  });
  ctx.metrics.reads.inc({ interface: "http", kind: "stream" });
  ok(
    200,
    eventsPage(r.events, {
      endOfStream: r.endOfStream,
      nextRevision: String(r.nextRevision),
      lastRevision: String(r.lastRevision),
    }),
  );
}

async function remove(
  ctx: NodeContext,
  req: IncomingMessage,
  streamId: string,
  ok: Reply,
): Promise<void> {
  const expected = expectedFromText(header(req, "chorus-expected-version"), streamId);
  const hardText = (header(req, "chorus-hard-delete") ?? "false").trim().toLowerCase();
  if (hardText !== "true" && hardText !== "false") {
    throw invalidArgument(
      `Chorus-Hard-Delete must be true or false, got ${JSON.stringify(hardText.slice(0, 32))}`,
      streamId,
    );
  }
  const result = await ctx.track(ctx.store.delete(streamId, expected, hardText === "true"));
  ctx.metrics.deletes.inc({
    interface: "http",
    result: result.ok ? "success" : "wrong_expected_version",
  });
  if (result.ok) ok(200, { position: String(result.position) });
  else ok(409, wrongExpected(expected, result.wrongExpectedVersion));
}

/** Set on a write a follower forwards, so it is forwarded at most once. */
const FORWARDED_HEADER = "chorus-forwarded-by";
/** A forwarded write gets this long to be answered by the leader. */
const FORWARD_TIMEOUT_MS = 30_000;
/** What a forward that got no answer says of the request it carried. */
const UNKNOWN_OUTCOME =
  "its outcome is unknown (an append retried with the same event ids is written once)";
/** How often a forwarded write checks that the node it went to still leads. */
const FORWARD_LEADER_CHECK_MS = 100;

/**
 * A write that reached a follower goes to the leader over HTTP, with its method, path,
 * headers and body, and the leader's answer comes back as it is, so a load balancer in
 * front of every node just works. A write already forwarded once, or with no leader known,
 * is answered 503 NOT_LEADER (with the leader's address in Chorus-Leader when known).
 *
 * A leader that stops answering (paused, cut off) keeps its connections open, so the forward
 * would wait for its idle timeout. Once this node sees another epoch or another leader, the
 * forward is given up and answered 503 NOT_LEADER as an unknown outcome: the old leader may
 * have written the events, and the next one may hold them. The client retries with the same
 * event ids, which is safe.
 */
async function forwardToLeader(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  refusal: WriteRefusal,
): Promise<void> {
  const leader = refusal.leaderHttp;
  if (!leader || req.headers[FORWARDED_HEADER] !== undefined) throw new NotLeaderError(refusal);
  const headers = {
    ...req.headers,
    [FORWARDED_HEADER]: ctx.instanceId,
    host: `${leader.host}:${leader.port}`,
  };
  // With TLS the leader's certificate must chain to the trusted roots.
  const tls = ctx.peerTls;
  const request = tls ? httpsRequest : httpRequest;
  const epoch = ctx.cluster()?.epoch;
  let watch: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const upstream = request(
        {
          host: leader.host,
          port: leader.port,
          method: req.method,
          path: req.url,
          headers,
          timeout: FORWARD_TIMEOUT_MS,
          ...(tls && { ca: [...tls.ca], cert: tls.cert, key: tls.key }),
        },
        (answer) => {
          // The leader answered: the outcome is its answer, whoever leads from now on.
          clearInterval(watch);
          ctx.metrics.httpRequests.inc({
            method: req.method ?? "?",
            status: String(answer.statusCode ?? 0),
          });
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          answer.on("end", () => resolve());
          answer.on("error", reject);
        },
      );
      upstream.on("timeout", () =>
        upstream.destroy(new Error(`the leader did not answer within ${FORWARD_TIMEOUT_MS} ms`)),
      );
      upstream.on("error", (err) =>
        reject(
          err instanceof HttpError
            ? err
            : new HttpError(
                502,
                "FORWARD_FAILED",
                `forwarding the request to the leader ${leader.host}:${leader.port} failed: ${err.message}; ${UNKNOWN_OUTCOME}`,
              ),
        ),
      );
      // The client went away: so does the forward (its outcome is the client's to find out).
      res.on("close", () => {
        if (!res.writableFinished) upstream.destroy(new Error("the client closed the request"));
      });
      watch = setInterval(() => {
        const now = ctx.cluster();
        const next = now?.writeRefusal()?.leaderHttp;
        if (
          now?.epoch === epoch &&
          next !== undefined &&
          next.host === leader.host &&
          next.port === leader.port
        )
          return;
        upstream.destroy(leaderChangedWhileForwarding(leader, now?.writeRefusal()));
      }, FORWARD_LEADER_CHECK_MS);
      req.pipe(upstream);
    });
  } finally {
    clearInterval(watch);
  }
}

function leaderChangedWhileForwarding(
  leader: Endpoint,
  refusal: WriteRefusal | undefined,
): HttpError {
  const next = refusal?.leaderHttp;
  return new HttpError(
    503,
    "NOT_LEADER",
    `the leadership changed while this request was forwarded to ${leader.host}:${leader.port}, which did not answer; ${UNKNOWN_OUTCOME}`,
    next === undefined ? {} : { "Chorus-Leader": `${next.host}:${next.port}` },
  );
}
