/** Where the cluster is: --connection, else CHORUS_CONNECTION, else the local default. */

export const DEFAULT_CONNECTION = "chorus://127.0.0.1:2113?tls=false";
export const CONNECTION_ENV = "CHORUS_CONNECTION";
const MASK = "***";

/** The connection string to use. An empty value counts as not given. */
export function resolveConnection(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  if (flag !== undefined && flag.trim() !== "") return flag.trim();
  const fromEnv = env[CONNECTION_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== "") return fromEnv.trim();
  return DEFAULT_CONNECTION;
}

/**
 * The connection string safe to print: the user info (`user:pass@`) and the `username` and
 * `password` query values are masked.
 */
export function redactConnection(connection: string): string {
  let text = connection;
  const schemeEnd = text.indexOf("://");
  if (schemeEnd >= 0) {
    const start = schemeEnd + 3;
    const hostEnd = firstOf(text, ["/", "?", "#"], start);
    const at = text.lastIndexOf("@", hostEnd - 1);
    if (at >= start) text = `${text.slice(0, start)}${MASK}@${text.slice(at + 1)}`;
  }
  return text.replace(/([?&](?:password|username)=)[^&#]*/gi, `$1${MASK}`);
}

/**
 * The passwords a connection string carries (the user info's, the query's; raw and decoded),
 * longest first: text that must never be printed.
 */
export function secretsOf(connection: string): string[] {
  const secrets = new Set<string>();
  const add = (value: string) => {
    if (value === "") return;
    secrets.add(value);
    try {
      secrets.add(decodeURIComponent(value));
    } catch {
      // not percent-encoded: the raw text is enough
    }
  };
  const schemeEnd = connection.indexOf("://");
  if (schemeEnd >= 0) {
    const start = schemeEnd + 3;
    const hostEnd = firstOf(connection, ["/", "?", "#"], start);
    const at = connection.lastIndexOf("@", hostEnd - 1);
    if (at >= start) {
      const userinfo = connection.slice(start, at);
      const colon = userinfo.indexOf(":");
      if (colon >= 0) add(userinfo.slice(colon + 1));
    }
  }
  for (const m of connection.matchAll(/[?&]password=([^&#]*)/gi)) add(m[1] ?? "");
  return [...secrets].sort((a, b) => b.length - a.length);
}

/** `text` with every secret replaced by a mask. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join(MASK);
  return out;
}

function firstOf(text: string, chars: readonly string[], from: number): number {
  let end = text.length;
  for (const c of chars) {
    const i = text.indexOf(c, from);
    if (i >= 0 && i < end) end = i;
  }
  return end;
}
