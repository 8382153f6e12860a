/**
 * The admin UI's static files (package @chorus/ui, bundled at build time) at `/ui/` on the
 * external HTTP port. The files are served without authentication: the page has its own login
 * form and the JSON endpoints it reads require credentials. Only files found in the bundle at
 * first use are served (by exact name), so no path can reach outside it.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import type { NodeContext } from "./context.js";
import { sendJson } from "./json.js";

/** The UI's mount point. */
export const UI_PATH = "/ui/";

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json; charset=utf-8",
};

/** `/ui/auth.json`: whether the node requires credentials (the page's first request). */
export const AUTH_FILE = "auth.json";

/** Files whose names carry a content hash never change: cached for a year. */
const HASHED_NAME = /-[A-Z0-9]{8,}\.[a-z]+$/;

/** Applies to every file: no framing, no sniffing, scripts and styles from this origin only. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

interface Asset {
  readonly body: Buffer;
  readonly contentType: string;
  readonly cacheControl: string;
}

/** The bundle's files by URL path below `/ui/`; empty when the UI is not built. */
type Bundle = ReadonlyMap<string, Asset>;

let cached: { dir: string; bundle: Bundle } | undefined;

/** Where @chorus/ui's built files are (its `dist/`). */
export function uiAssetsDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve("@chorus/ui/package.json");
    return path.join(path.dirname(pkg), "dist");
  } catch {
    return undefined;
  }
}

/** Reads every file of the bundle (a few hundred kB) once. */
export function loadBundle(dir: string | undefined): Bundle {
  const files = new Map<string, Asset>();
  if (dir === undefined) return files;
  const walk = (sub: string): void => {
    let names: string[];
    try {
      names = readdirSync(path.join(dir, sub));
    } catch {
      return;
    }
    for (const name of names) {
      const rel = sub === "" ? name : `${sub}/${name}`;
      const full = path.join(dir, rel);
      const st = statSync(full);
      if (st.isDirectory()) {
        walk(rel);
        continue;
      }
      const contentType = CONTENT_TYPES[path.extname(name).toLowerCase()];
      if (!st.isFile() || contentType === undefined) continue;
      files.set(rel, {
        body: readFileSync(full),
        contentType,
        cacheControl: HASHED_NAME.test(name) ? "public, max-age=31536000, immutable" : "no-cache",
      });
    }
  };
  walk("");
  return files;
}

function bundle(): Bundle {
  const dir = uiAssetsDir() ?? "";
  if (cached === undefined || cached.dir !== dir) {
    cached = { dir, bundle: loadBundle(dir === "" ? undefined : dir) };
  }
  return cached.bundle;
}

/** Paths the UI owns: `/` (a redirect), `/ui` and everything below `/ui/`. */
export function isUiPath(path: string): boolean {
  return path === "/" || path === "/ui" || path.startsWith(UI_PATH);
}

/**
 * Serves `GET`/`HEAD` of a UI path: `/` and `/ui` redirect to `/ui/`, `/ui/` is index.html,
 * `/ui/NAME` a file of the bundle, anything else 404.
 */
export function serveUi(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  urlPath: string,
  files: Bundle = bundle(),
): void {
  const method = req.method ?? "GET";
  const answer = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
    ctx.metrics.httpRequests.inc({ method, status: String(status) });
    sendJson(res, status, body, headers);
  };
  if (method !== "GET" && method !== "HEAD") {
    answer(
      405,
      { error: "METHOD_NOT_ALLOWED", message: `${method} is not allowed on ${UI_PATH}` },
      { Allow: "GET, HEAD" },
    );
    return;
  }
  if (urlPath === "/" || urlPath === "/ui") {
    ctx.metrics.httpRequests.inc({ method, status: "308" });
    res.writeHead(308, { Location: UI_PATH, "Content-Length": "0", "Cache-Control": "no-cache" });
    res.end();
    return;
  }
  let name: string;
  try {
    name = decodeURIComponent(urlPath.slice(UI_PATH.length));
  } catch {
    answer(400, { error: "BAD_REQUEST", message: "the path is not valid percent-encoding" });
    return;
  }
  if (name === "") name = "index.html";
  if (name === AUTH_FILE) {
    // Whether the page must ask for credentials before it reads anything (no data in it).
    answer(200, { authenticationRequired: ctx.auth.enabled });
    return;
  }
  const asset = files.get(name);
  if (asset === undefined) {
    answer(404, {
      error: "NOT_FOUND",
      message:
        files.size === 0
          ? "the admin UI is not built on this node (package @chorus/ui has no dist/)"
          : `no such file ${UI_PATH}${name.slice(0, 200)}`,
    });
    return;
  }
  ctx.metrics.httpRequests.inc({ method, status: "200" });
  res.writeHead(200, {
    "Content-Type": asset.contentType,
    "Content-Length": String(asset.body.byteLength),
    "Cache-Control": asset.cacheControl,
    ...SECURITY_HEADERS,
  });
  res.end(method === "HEAD" ? undefined : asset.body);
}
