/**
 * node:http adapter of gossip: `GET /gossip` (both HTTP ports) and `POST /gossip` (internal
 * port only). The router (http.ts) decides the path; this handler answers whatever request it
 * is given, with the node's gossip service (cluster/gossip's GossipService, passed in by the
 * node as a GossipEndpoint).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { GossipEndpoint } from "../node-types.js";
import { sendJson } from "./json.js";

export interface GossipHandlerOptions {
  /** True on the internal HTTP port (nodes push views there); false on the external one. */
  readonly allowPost: boolean;
}

export function createGossipHandler(
  service: GossipEndpoint,
  options: GossipHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const allow = options.allowPost ? "GET, POST" : "GET";
  return (req, res) => {
    try {
      const method = req.method ?? "GET";
      if (method === "GET") {
        sendJson(res, 200, service.document());
        return;
      }
      if (method !== "POST" || !options.allowPost) {
        req.resume();
        sendJson(
          res,
          405,
          { error: "METHOD_NOT_ALLOWED", message: `${method} /gossip: use ${allow}` },
          { Allow: allow },
        );
        return;
      }
      readBody(req, res, service);
    } catch (err) {
      fail(service, res, err);
    }
  };
}

function fail(service: GossipEndpoint, res: ServerResponse, err: unknown): void {
  service.logError(err);
  if (res.headersSent) res.destroy();
  else sendJson(res, 500, { error: "INTERNAL", message: "gossip failed" });
}

function readBody(req: IncomingMessage, res: ServerResponse, service: GossipEndpoint): void {
  const limit = service.maxBodyBytes;
  const tooLarge = (): void =>
    sendJson(
      res,
      413,
      { error: "PAYLOAD_TOO_LARGE", message: `the body exceeds ${limit} bytes` },
      { Connection: "close" },
    );
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    tooLarge();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  req.on("data", (chunk: Buffer) => {
    if (done) return;
    size += chunk.length;
    if (size > limit) {
      done = true;
      tooLarge();
    } else chunks.push(chunk);
  });
  req.on("error", () => {
    done = true;
  });
  req.on("end", () => {
    if (done) return;
    done = true;
    try {
      const result = service.handlePost(Buffer.concat(chunks).toString("utf8"));
      sendJson(res, result.status, result.body);
    } catch (err) {
      fail(service, res, err);
    }
  });
}
