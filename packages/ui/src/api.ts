/**
 * The JSON endpoints of the node that serves the page (documented in docs/http-api.md). The
 * credentials live in memory only: a reload asks for them again.
 */

/** A refusal or failure of an endpoint, with the node's error code and message. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let authorization: string | null = null;
const unauthorizedListeners = new Set<() => void>();

function basic(username: string, password: string): string {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

export function setCredentials(username: string, password: string): void {
  authorization = basic(username, password);
}

export function clearCredentials(): void {
  authorization = null;
}

/** Called when a request with credentials is refused with 401 (the password changed). */
export function onUnauthorized(listener: () => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

/** The endpoints are siblings of `/ui/`: paths resolve against the page (a proxy prefix works). */
export function endpoint(path: string): string {
  return new URL(`../${path.replace(/^\//, "")}`, document.baseURI).toString();
}

/** Whether the node requires credentials (`/ui/auth.json`, open, no data). */
export async function authenticationRequired(signal?: AbortSignal): Promise<boolean> {
  const res = await fetch(new URL("auth.json", document.baseURI), {
    cache: "no-store",
    credentials: "omit",
    signal: signal ?? AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, "auth.json cannot be read");
  const body = (await res.json()) as { authenticationRequired?: unknown };
  return body.authenticationRequired === true;
}

export interface RequestOptions {
  readonly method?: "GET" | "POST";
  readonly signal?: AbortSignal;
  /** Default 10,000 ms. */
  readonly timeoutMs?: number;
}

/** Calls an endpoint and parses its JSON answer; throws ApiError for a non-2xx answer. */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = {
    Accept: "application/json",
    // Tells the node not to answer 401 with a Basic-auth challenge (no browser popup).
    "X-Requested-With": "chorus-ui",
  };
  if (authorization !== null) headers["Authorization"] = authorization;
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 10_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let res: Response;
  try {
    res = await fetch(endpoint(path), {
      method: options.method ?? "GET",
      headers,
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (timeout.aborted)
      throw new ApiError(0, "TIMEOUT", `the node did not answer ${path} in time`);
    throw new ApiError(0, "UNREACHABLE", `the node cannot be reached (${String(err)})`);
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok) {
    const e = (body ?? {}) as { error?: string; message?: string };
    if (res.status === 401 && authorization !== null) for (const l of unauthorizedListeners) l();
    throw new ApiError(
      res.status,
      e.error ?? `HTTP_${res.status}`,
      e.message ?? `${path} answered ${res.status}`,
    );
  }
  return body as T;
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

// The shapes of the answers (docs/http-api.md).

export interface Endpoint {
  host: string;
  port: number;
}

export interface MemberInfo {
  instanceId: string;
  state: string;
  isAlive: boolean;
  timestamp: string;
  externalHttp: Endpoint;
  externalTcp: Endpoint;
  lastCommitPosition: string;
  writerCheckpoint: string;
  chaserCheckpoint: string;
  epochNumber: number;
  epochPosition: string;
  epochId: string;
  nodePriority: number;
  isReadOnlyReplica: boolean;
}

export interface NodeInfo {
  version: string;
  instanceId: string;
  state: string;
  clusterSize: number;
}

export interface EventJson {
  streamId: string;
  revision: string;
  position: string;
  eventId: string;
  eventType: string;
  isJson: boolean;
  data: unknown;
  metadata: unknown;
  created: string;
}

export interface StreamPage {
  events: EventJson[];
  endOfStream: boolean;
  nextRevision: string;
  lastRevision: string;
}

export interface AllPage {
  events: EventJson[];
  nextPosition: string;
  endOfStream: boolean;
}

export interface StreamSummary {
  streamId: string;
  lastRevision: string;
  lastPosition: string;
  lastEventType: string;
  lastCreated: string;
}

export interface StreamList {
  streams: StreamSummary[];
  next: string | null;
  complete: boolean;
}

export interface ConsumerInfo {
  name: string;
  connection: string;
  inFlight: number;
  bufferSize: number;
  delivered: number;
  acked: number;
}

export interface GroupInfo {
  streamId: string;
  group: string;
  status: string;
  settings: Record<string, unknown>;
  consumers: ConsumerInfo[];
  inFlight: number;
  parkedCount: number;
  lastCheckpoint: string | null;
  deliveryRate: number;
  ackRate: number;
  totalDelivered: number;
  totalAcked: number;
  totalParked: number;
}

export interface NodeStats {
  instanceId: string;
  state: string;
  time: string;
  uptimeMs: number;
  store: { events: number; streams: number; logBytes: number; commitPosition: string };
  totals: {
    appends: number;
    appendsSucceeded: number;
    eventsWritten: number;
    reads: number;
    deletes: number;
    requestErrors: number;
    httpRequests: number;
    connectionsActive: number;
    subscriptionsActive: number;
  };
  appendLatency: {
    count: number;
    sumMs: number;
    bucketsMs: { le: number; count: number }[];
    p50Ms: number | null;
    p90Ms: number | null;
    p99Ms: number | null;
  };
}
