/**
 * The gossip HTTP client: `POST http://host:port/gossip` over node:http (or https with TLS)
 * with a per-request deadline and a response size limit. Keep-alive sockets are pooled per
 * peer; `close()` destroys every socket, so a stopped service leaves nothing open.
 */
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { sourceAddressFor } from "../transport/peer-network.js";
import type { Endpoint } from "../../node-types.js";

export interface GossipTransport {
  /** POSTs the JSON `body` to the endpoint's `/gossip`; resolves with the 2xx reply's text. */
  post(endpoint: Endpoint, body: string, timeoutMs: number): Promise<string>;
  /** Aborts requests in flight and closes pooled sockets. */
  close(): void;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

export interface HttpGossipTransportOptions {
  /** Default 1 MiB. */
  readonly maxResponseBytes?: number;
  /**
   * https towards the peers' internal HTTP port: the roots their certificates must chain to,
   * and this node's certificate and key, which that port demands.
   */
  readonly tls?: {
    readonly ca: readonly (string | Buffer)[];
    readonly cert: string | Buffer;
    readonly key: string | Buffer;
  };
  /** Requests leave from this address (the node's internal IP), for peers of its family. */
  readonly localAddress?: string;
}

export class GossipRequestError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "GossipRequestError";
  }
}

export class HttpGossipTransport implements GossipTransport {
  private readonly agent: HttpAgent;
  private readonly request: typeof httpRequest;
  private readonly maxResponseBytes: number;
  private closed = false;

  constructor(private readonly options: HttpGossipTransportOptions = {}) {
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const pool = { keepAlive: true, maxSockets: 2, maxFreeSockets: 1 };
    const tls = options.tls;
    if (tls) {
      this.agent = new HttpsAgent({ ...pool, ca: [...tls.ca], cert: tls.cert, key: tls.key });
      this.request = httpsRequest;
    } else {
      this.agent = new HttpAgent(pool);
      this.request = httpRequest;
    }
  }

  post(endpoint: Endpoint, body: string, timeoutMs: number): Promise<string> {
    if (this.closed) return Promise.reject(new GossipRequestError("the transport is closed"));
    return new Promise<string>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, text?: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(text ?? "");
      };
      const localAddress = sourceAddressFor(this.options.localAddress, endpoint.host);
      const req = this.request(
        {
          host: endpoint.host,
          port: endpoint.port,
          ...(localAddress !== undefined && { localAddress }),
          path: "/gossip",
          method: "POST",
          agent: this.agent,
          headers: {
            "Content-Type": "application/json",
            "Content-Length": String(Buffer.byteLength(body)),
            Accept: "application/json",
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > this.maxResponseBytes)
              finish(new GossipRequestError(`reply larger than ${this.maxResponseBytes} bytes`));
            else chunks.push(chunk);
          });
          res.on("error", (err) => finish(err));
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString("utf8");
            if (status < 200 || status >= 300)
              finish(new GossipRequestError(`HTTP ${status}: ${text.slice(0, 200)}`, status));
            else finish(undefined, text);
          });
        },
      );
      const timer = setTimeout(
        () => finish(new GossipRequestError(`no reply within ${timeoutMs} ms`)),
        timeoutMs,
      );
      req.on("error", (err) => finish(err));
      req.end(body);
    });
  }

  close(): void {
    this.closed = true;
    this.agent.destroy();
  }
}
