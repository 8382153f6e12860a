import { InvalidArgumentError } from "../errors.js";
import type { Endpoint } from "../types.js";

/**
 * Parses "host:port", "[v6]:port" or an {host, port} object. `what` names the value in
 * errors. Without a port, `defaultPort` applies when given, else it is an error.
 */
export function parseEndpoint(
  value: string | Endpoint,
  what: string,
  defaultPort?: number,
): Endpoint {
  if (typeof value === "object" && value !== null) {
    checkHost(value.host, what);
    checkPort(value.port, what);
    return Object.freeze({ host: value.host, port: value.port });
  }
  if (typeof value !== "string" || value.trim() === "") {
    throw new InvalidArgumentError(`${what}: expected "host:port", got ${JSON.stringify(value)}`);
  }
  const text = value.trim();
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0)
      throw new InvalidArgumentError(`${what}: unterminated IPv6 address in "${text}"`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":"))
      throw new InvalidArgumentError(`${what}: unexpected "${rest}" in "${text}"`);
    portText = rest === "" ? undefined : rest.slice(1);
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) {
      throw new InvalidArgumentError(
        `${what}: write an IPv6 address in brackets, e.g. "[::1]:2113", got "${text}"`,
      );
    }
    const i = text.lastIndexOf(":");
    host = i < 0 ? text : text.slice(0, i);
    portText = i < 0 ? undefined : text.slice(i + 1);
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw new InvalidArgumentError(`${what}: "${text}" has no port`);
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText))
      throw new InvalidArgumentError(`${what}: invalid port "${portText}" in "${text}"`);
    port = Number(portText);
  }
  checkHost(host, what);
  checkPort(port, what);
  return Object.freeze({ host, port });
}

function checkHost(host: unknown, what: string): void {
  if (typeof host !== "string" || host === "" || /[\s/?#@]/.test(host)) {
    throw new InvalidArgumentError(`${what}: invalid host ${JSON.stringify(host)}`);
  }
}

function checkPort(port: unknown, what: string): void {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(
      `${what}: port must be an integer in 1..65535, got ${String(port)}`,
    );
  }
}

export function formatEndpoint(e: Endpoint): string {
  return e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export function sameEndpoint(a: Endpoint | undefined, b: Endpoint | undefined): boolean {
  return a !== undefined && b !== undefined && a.host === b.host && a.port === b.port;
}
