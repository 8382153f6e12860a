/**
 * The gossip HTTP client: `POST http://host:port/gossip` over node:http with a per-request
 * deadline and a response size limit. Keep-alive sockets are pooled per peer; `close()`
 * destroys every socket, so a stopped service leaves nothing open.
 */
import { Agent, request } from "node:http";
import type { Endpoint } from "./wire.js";

export interface GossipTransport {
  /** POSTs the JSON `body` to the endpoint's `/gossip`; resolves with the 2xx reply's text. */
  post(endpoint: Endpoint, body: string, timeoutMs: number): Promise<string>;
  /** Aborts requests in flight and closes pooled sockets. */
  close(): void;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

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
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 2, maxFreeSockets: 1 });
  private closed = false;

  constructor(private readonly maxResponseBytes = DEFAULT_MAX_RESPONSE_BYTES) {}

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
      const req = request(
        {
          host: endpoint.host,
          port: endpoint.port,
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
