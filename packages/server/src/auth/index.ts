import { createHash, timingSafeEqual } from "node:crypto";

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export type AuthResult =
  | { readonly ok: true; readonly user: string | null }
  | { readonly ok: false; readonly reason: "missing" | "wrong" | "malformed" };

/** The user that exists when authentication is on. */
export const ADMIN_USER = "admin";

/**
 * Checks credentials against the admin password. With no password configured, everything is
 * allowed (user null). Comparison is constant-time over SHA-256 digests, so neither the
 * content nor the length of the password leaks through timing. Passwords are never stored
 * anywhere but here and never logged.
 */
export class Authenticator {
  readonly #passwordDigest: Buffer | null;
  readonly #userDigest = digest(ADMIN_USER);

  constructor(adminPassword: string | null) {
    this.#passwordDigest = adminPassword === null ? null : digest(adminPassword);
  }

  get enabled(): boolean {
    return this.#passwordDigest !== null;
  }

  check(credentials: Credentials | null | undefined): AuthResult {
    if (this.#passwordDigest === null) return { ok: true, user: null };
    if (!credentials || (credentials.username === "" && credentials.password === "")) {
      return { ok: false, reason: "missing" };
    }
    const userOk = timingSafeEqual(digest(credentials.username), this.#userDigest);
    const passwordOk = timingSafeEqual(digest(credentials.password), this.#passwordDigest);
    return userOk && passwordOk ? { ok: true, user: ADMIN_USER } : { ok: false, reason: "wrong" };
  }

  /** Checks an HTTP `Authorization` header value (Basic only). */
  checkHeader(header: string | undefined): AuthResult {
    if (this.#passwordDigest === null) return { ok: true, user: null };
    if (header === undefined || header === "") return { ok: false, reason: "missing" };
    const parsed = parseBasicAuth(header);
    if (!parsed) return { ok: false, reason: "malformed" };
    return this.check(parsed);
  }
}

/** Parses `Basic base64(user:password)`; null when the header is not Basic auth. */
export function parseBasicAuth(header: string): Credentials | null {
  const m = /^\s*Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!m || m[1] === undefined) return null;
  const decoded = Buffer.from(m[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
