import { Agent, request, type Dispatcher } from "undici";
import { formatEndpoint } from "../settings/endpoint.js";
import { errorCode, explainTlsFailure } from "../util/tls-failure.js";
import type { Endpoint, MemberInfo, Timers } from "../types.js";
import { linkedSignal } from "../util/timers.js";

/** Why one gossip request failed; `kind` says what kind of failure it was. */
export class GossipRequestError extends Error {
  override readonly name = "GossipRequestError";
  constructor(
    readonly kind: "refused" | "timeout" | "tls" | "http" | "invalid" | "network" | "aborted",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface GossipReadOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Reads a node's gossip. The seam discovery is tested through. */
export interface GossipReader {
  read(endpoint: Endpoint, options: GossipReadOptions): Promise<MemberInfo[]>;
  close(): Promise<void>;
}

export interface HttpGossipReaderOptions {
  /** https:// with these trust options; undefined: http:// */
  tls?:
    | { ca?: string | Buffer | ReadonlyArray<string | Buffer>; rejectUnauthorized: boolean }
    | undefined;
  timers: Timers;
  /** Overall cap of a gossip response body, in bytes. */
  maxBodyBytes?: number;
}

const DEFAULT_MAX_GOSSIP_BODY_BYTES = 4 * 1024 * 1024;

/** GET /gossip over undici, one Agent (connection pool) per reader. */
export class HttpGossipReader implements GossipReader {
  readonly #agent: Agent;
  readonly #options: HttpGossipReaderOptions;

  constructor(options: HttpGossipReaderOptions) {
    this.#options = options;
    this.#agent = new Agent({
      connect: options.tls
        ? {
            ca: options.tls.ca as string | Buffer | Array<string | Buffer> | undefined,
            rejectUnauthorized: options.tls.rejectUnauthorized,
          }
        : {},
      keepAliveTimeout: 4_000,
    });
  }

  async read(endpoint: Endpoint, options: GossipReadOptions): Promise<MemberInfo[]> {
    const scheme = this.#options.tls ? "https" : "http";
    const url = `${scheme}://${formatEndpoint(endpoint)}/gossip`;
    const target = { host: endpoint.host, tls: this.#options.tls !== undefined };
    const timeout = linkedSignal(
      this.#options.timers,
      [options.signal],
      options.timeoutMs,
      () => new GossipRequestError("timeout", `timed out after ${options.timeoutMs} ms`),
    );
    try {
      const response = await request(url, {
        method: "GET",
        dispatcher: this.#agent,
        signal: timeout.signal,
        headers: { accept: "application/json" },
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
      });
      const text = await readBody(
        response,
        this.#options.maxBodyBytes ?? DEFAULT_MAX_GOSSIP_BODY_BYTES,
      );
      if (response.statusCode !== 200) {
        const why = errorBodyOf(text);
        throw new GossipRequestError(
          "http",
          `HTTP ${response.statusCode} from ${url}${why === undefined ? "" : `: ${why}`}`,
        );
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new GossipRequestError("invalid", `gossip from ${url} is not JSON`, { cause: err });
      }
      return parseGossip(json);
    } catch (err) {
      if (timeout.signal.aborted && !options.signal?.aborted) {
        throw timeout.signal.reason instanceof GossipRequestError
          ? timeout.signal.reason
          : classify(err, options.timeoutMs, target);
      }
      throw classify(err, options.timeoutMs, target);
    } finally {
      timeout.dispose();
    }
  }

  async close(): Promise<void> {
    await this.#agent.destroy();
  }
}

/** The most a node's error body adds to a message, in characters. */
const MAX_ERROR_DETAIL_CHARS = 300;

/**
 * What a node's error answer says (`{"error": CODE, "message": ...}`, as its HTTP API
 * answers), e.g. `TOO_MANY_CONNECTIONS: this node holds its limit of 10000 client
 * connections`; undefined for any other body.
 */
export function errorBodyOf(text: string): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  const { error, message } = (body ?? {}) as { error?: unknown; message?: unknown };
  if (typeof message !== "string" || message === "") return undefined;
  const detail = typeof error === "string" && error !== "" ? `${error}: ${message}` : message;
  return detail.length > MAX_ERROR_DETAIL_CHARS
    ? `${detail.slice(0, MAX_ERROR_DETAIL_CHARS)}...`
    : detail;
}

async function readBody(response: Dispatcher.ResponseData, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > maxBytes) {
      response.body.destroy();
      throw new GossipRequestError("invalid", `gossip response larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Turns whatever undici threw into a GossipRequestError saying what happened. `target`: the
 * host asked and whether over TLS (for a TLS failure's explanation, and a hint when a plain
 * request was cut off, as a node serving TLS does).
 */
export function classify(
  err: unknown,
  timeoutMs: number,
  target: { readonly host: string; readonly tls: boolean },
): GossipRequestError {
  if (err instanceof GossipRequestError) return err;
  const e = err as { name?: string; message?: string };
  const code = errorCode(err);
  const message = e?.message ?? String(err);
  if (code === "ECONNREFUSED")
    return new GossipRequestError("refused", `connection refused (ECONNREFUSED)`, { cause: err });
  if (
    code === "UND_ERR_CONNECT_TIMEOUT" ||
    code === "UND_ERR_HEADERS_TIMEOUT" ||
    code === "UND_ERR_BODY_TIMEOUT" ||
    code === "ETIMEDOUT"
  ) {
    return new GossipRequestError("timeout", `timed out after ${timeoutMs} ms (${code})`, {
      cause: err,
    });
  }
  const tls = explainTlsFailure(err, target.host);
  if (tls !== undefined)
    return new GossipRequestError("tls", `TLS: ${tls.text} (${tls.code})`, { cause: err });
  if (e?.name === "AbortError") return new GossipRequestError("aborted", "aborted", { cause: err });
  if (!target.tls && (code === "UND_ERR_SOCKET" || code === "ECONNRESET")) {
    return new GossipRequestError(
      "network",
      `${message} (${code}); a node that serves TLS closes plain connections like this: if it does, connect with tls=true`,
      { cause: err },
    );
  }
  return new GossipRequestError("network", code ? `${message} (${code})` : message, { cause: err });
}

// ------------------------------------------------------------------ parsing

function invalid(message: string): never {
  throw new GossipRequestError("invalid", `invalid gossip document: ${message}`);
}

function bigintOf(value: unknown, field: string): bigint {
  if (value === undefined || value === null) return 0n;
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value);
  return invalid(`${field} must be a decimal string, got ${JSON.stringify(value)}`);
}

function endpointOf(value: unknown, field: string): Endpoint | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value as { host?: unknown; port?: unknown };
  if (typeof v.host !== "string" || typeof v.port !== "number" || !Number.isInteger(v.port)) {
    return invalid(`${field} must be {host, port}`);
  }
  if (v.port === 0 || v.host === "") return undefined;
  return Object.freeze({ host: v.host, port: v.port });
}

/** Parses `{ members: MemberInfo[] }` (positions as decimal strings) into MemberInfo with bigints. */
export function parseGossip(json: unknown): MemberInfo[] {
  const members = (json as { members?: unknown })?.members;
  if (!Array.isArray(members)) invalid("expected { members: [...] }");
  return members.map((m: unknown, i) => parseMember(m, i));
}

function parseMember(value: unknown, i: number): MemberInfo {
  if (typeof value !== "object" || value === null) invalid(`member #${i} is not an object`);
  const m = value as Record<string, unknown>;
  if (typeof m.instanceId !== "string") invalid(`member #${i}: instanceId must be a string`);
  if (typeof m.state !== "string") invalid(`member #${i}: state must be a string`);
  if (typeof m.isAlive !== "boolean") invalid(`member #${i}: isAlive must be a boolean`);
  const optional = (field: string) => endpointOf(m[field], `member #${i}.${field}`);
  const internalTcp = optional("internalTcp");
  const externalTcp = optional("externalTcp");
  const internalHttp = optional("internalHttp");
  const externalHttp = optional("externalHttp");
  return Object.freeze({
    instanceId: m.instanceId,
    state: m.state,
    isAlive: m.isAlive,
    timestamp:
      typeof m.timestamp === "string"
        ? m.timestamp
        : typeof m.timestamp === "number"
          ? String(m.timestamp)
          : "",
    ...(internalTcp && { internalTcp }),
    ...(externalTcp && { externalTcp }),
    ...(internalHttp && { internalHttp }),
    ...(externalHttp && { externalHttp }),
    lastCommitPosition: bigintOf(m.lastCommitPosition, "lastCommitPosition"),
    writerCheckpoint: bigintOf(m.writerCheckpoint, "writerCheckpoint"),
    chaserCheckpoint: bigintOf(m.chaserCheckpoint, "chaserCheckpoint"),
    epochNumber: Number(bigintOf(m.epochNumber, "epochNumber")),
    epochPosition: bigintOf(m.epochPosition, "epochPosition"),
    epochId: typeof m.epochId === "string" ? m.epochId : "",
    nodePriority: typeof m.nodePriority === "number" ? m.nodePriority : 0,
    isReadOnlyReplica: m.isReadOnlyReplica === true,
  });
}
