import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { isIP, connect as tcpConnect } from "node:net";
import dnsPacket from "dns-packet";
import { formatEndpoint } from "../settings/endpoint.js";
import type { Endpoint, Random } from "../types.js";
import { uniqueEndpoints, type DnsQuery, type SeedResolver } from "./dns.js";

/** Where the system's resolvers are listed. */
export const DEFAULT_RESOLV_CONF = "/etc/resolv.conf";

export type DnsErrorCode =
  | "UNKNOWN_NAME" // NXDOMAIN
  | "NO_RECORDS" // the name exists but has no record of the type asked
  | "TIMEOUT"
  | "REFUSED" // nothing listens (ICMP port unreachable / TCP RST) or the server refused
  | "SERVER_FAILURE"
  | "BAD_RESPONSE";

/** A DNS lookup that failed, with the cause named. */
export class DnsLookupError extends Error {
  override readonly name = "DnsLookupError";
  constructor(
    readonly code: DnsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface Answer {
  type: string;
  name: string;
  data: unknown;
}

interface Reply {
  rcode: string;
  truncated: boolean;
  answers: Answer[];
  additionals: Answer[];
}

export interface DnsPacketResolverOptions {
  /** Source of query ids; default Math.random. */
  random?: Random;
  /** Read for `nameserver` lines when a query names no servers. */
  resolvConfPath?: string;
}

/**
 * Resolves a cluster's DNS name into gossip seeds with dns-packet: A and AAAA records
 * (every record is a seed on the gossip port), or SRV records `_chorus._tcp.<name>`
 * (targets and ports; targets resolved through the same servers unless the reply carries
 * their addresses). UDP first; a truncated reply is asked again over TCP. Servers are
 * tried in order until one answers; NXDOMAIN is an answer ("unknown name"), a timeout or
 * a refusal moves on to the next server.
 */
export class DnsPacketResolver implements SeedResolver {
  readonly #random: Random;
  readonly #resolvConfPath: string;

  constructor(options: DnsPacketResolverOptions = {}) {
    this.#random = options.random ?? Math.random;
    this.#resolvConfPath = options.resolvConfPath ?? DEFAULT_RESOLV_CONF;
  }

  async resolve(
    query: DnsQuery,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<Endpoint[]> {
    const servers =
      query.dnsServers.length > 0 ? query.dnsServers : await systemServers(this.#resolvConfPath);
    const ask = (name: string, type: "A" | "AAAA" | "SRV") =>
      this.#ask(servers, name, type, options.timeoutMs, options.signal);
    if (query.srv) {
      const srvName = `_chorus._tcp.${query.name}`;
      const reply = await ask(srvName, "SRV");
      const records = reply.answers
        .filter((a) => a.type === "SRV")
        .map((a) => a.data as { target: string; port: number; priority?: number; weight?: number })
        .sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0) || (b.weight ?? 0) - (a.weight ?? 0));
      if (records.length === 0) {
        throw new DnsLookupError("NO_RECORDS", `no SRV records for ${srvName}`);
      }
      const endpoints: Endpoint[] = [];
      for (const r of records) {
        const target = r.target.replace(/\.$/, "");
        let hosts = addressesOf(reply.additionals, target);
        if (hosts.length === 0 && isIP(target) === 0) {
          hosts = await this.#addresses(ask, target).catch(() => [target]);
        }
        for (const host of hosts.length > 0 ? hosts : [target])
          endpoints.push({ host, port: r.port });
      }
      return uniqueEndpoints(endpoints);
    }
    return uniqueEndpoints(
      (await this.#addresses(ask, query.name)).map((host) => ({ host, port: query.gossipPort })),
    );
  }

  /** Every A and AAAA address of a name. */
  async #addresses(
    ask: (name: string, type: "A" | "AAAA") => Promise<Reply>,
    name: string,
  ): Promise<string[]> {
    const [v4, v6] = await Promise.allSettled([ask(name, "A"), ask(name, "AAAA")]);
    const hosts = [
      ...(v4.status === "fulfilled" ? addressesOf(v4.value.answers, name) : []),
      ...(v6.status === "fulfilled" ? addressesOf(v6.value.answers, name) : []),
    ];
    if (hosts.length > 0) return hosts;
    if (v4.status === "rejected") throw v4.reason;
    if (v6.status === "rejected") throw v6.reason;
    throw new DnsLookupError("NO_RECORDS", `no A or AAAA records for ${name}`);
  }

  async #ask(
    servers: readonly Endpoint[],
    name: string,
    type: "A" | "AAAA" | "SRV",
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Reply> {
    const failures: DnsLookupError[] = [];
    for (const server of servers) {
      signal?.throwIfAborted();
      try {
        let reply = await udpQuery(server, this.#packet(name, type), timeoutMs, signal);
        if (reply.truncated)
          reply = await tcpQuery(server, this.#packet(name, type), timeoutMs, signal);
        if (reply.rcode === "NXDOMAIN") {
          throw new DnsLookupError(
            "UNKNOWN_NAME",
            `unknown name ${name} (NXDOMAIN from ${formatEndpoint(server)})`,
          );
        }
        if (reply.rcode === "REFUSED") {
          throw new DnsLookupError(
            "REFUSED",
            `${formatEndpoint(server)} refused to answer for ${name}`,
          );
        }
        if (reply.rcode !== "NOERROR") {
          failures.push(
            new DnsLookupError(
              "SERVER_FAILURE",
              `${formatEndpoint(server)} answered ${reply.rcode} for ${name}`,
            ),
          );
          continue;
        }
        return reply;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof DnsLookupError && err.code === "UNKNOWN_NAME") throw err;
        failures.push(
          err instanceof DnsLookupError
            ? err
            : new DnsLookupError("BAD_RESPONSE", `${formatEndpoint(server)}: ${String(err)}`, {
                cause: err,
              }),
        );
      }
    }
    if (failures.length === 1) throw failures[0]!;
    throw new DnsLookupError(
      failures[0]?.code ?? "TIMEOUT",
      `no DNS server answered for ${name} ${type}: ${failures.map((f) => f.message).join("; ")}`,
      { cause: failures },
    );
  }

  #packet(
    name: string,
    type: "A" | "AAAA" | "SRV",
  ): { id: number; bytes: (tcp: boolean) => Buffer } {
    const id = Math.floor(this.#random() * 0x10000) & 0xffff;
    const packet = {
      type: "query" as const,
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type, name }],
    };
    return {
      id,
      bytes: (tcp) => (tcp ? dnsPacket.streamEncode(packet) : dnsPacket.encode(packet)),
    };
  }
}

function toReply(packet: dnsPacket.DecodedPacket): Reply {
  return {
    rcode: (packet as { rcode?: string }).rcode ?? "NOERROR",
    truncated: packet.flag_tc,
    answers: (packet.answers ?? []) as Answer[],
    additionals: (packet.additionals ?? []) as Answer[],
  };
}

function addressesOf(answers: readonly Answer[], name: string): string[] {
  const lower = name.toLowerCase();
  return answers
    .filter((a) => (a.type === "A" || a.type === "AAAA") && a.name.toLowerCase() === lower)
    .map((a) => a.data as string);
}

function udpQuery(
  server: Endpoint,
  query: { id: number; bytes: (tcp: boolean) => Buffer },
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIP(server.host) === 6 ? "udp6" : "udp4");
    const where = formatEndpoint(server);
    const finish = (err: Error | undefined, reply?: Reply) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.close();
      if (err) reject(err);
      else resolve(reply!);
    };
    const onAbort = () => finish(signal!.reason as Error);
    const timer = setTimeout(
      () => finish(new DnsLookupError("TIMEOUT", `${where} did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.on("error", (err: NodeJS.ErrnoException) =>
      finish(
        err.code === "ECONNREFUSED"
          ? new DnsLookupError("REFUSED", `nothing answers DNS at ${where} (connection refused)`, {
              cause: err,
            })
          : new DnsLookupError("BAD_RESPONSE", `${where}: ${err.message}`, { cause: err }),
      ),
    );
    socket.on("message", (msg) => {
      let packet: dnsPacket.DecodedPacket;
      try {
        packet = dnsPacket.decode(msg);
      } catch {
        return; // not a DNS reply: keep waiting for the real one
      }
      if (packet.id !== query.id) return;
      finish(undefined, toReply(packet));
    });
    // A connected UDP socket reports ICMP port unreachable as ECONNREFUSED.
    socket.connect(server.port, server.host, () => socket.send(query.bytes(false)));
  });
}

function tcpQuery(
  server: Endpoint,
  query: { id: number; bytes: (tcp: boolean) => Buffer },
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const where = formatEndpoint(server);
    const socket = tcpConnect({ host: server.host, port: server.port });
    let buffered = Buffer.alloc(0);
    const finish = (err: Error | undefined, reply?: Reply) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const onAbort = () => finish(signal!.reason as Error);
    const timer = setTimeout(
      () =>
        finish(
          new DnsLookupError("TIMEOUT", `${where} did not answer over TCP within ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.on("connect", () => socket.write(query.bytes(true)));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      finish(
        err.code === "ECONNREFUSED"
          ? new DnsLookupError("REFUSED", `nothing answers DNS over TCP at ${where}`, {
              cause: err,
            })
          : new DnsLookupError("BAD_RESPONSE", `${where} (TCP): ${err.message}`, { cause: err }),
      ),
    );
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2) return;
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) return;
      try {
        const packet = dnsPacket.decode(buffered.subarray(2, 2 + length));
        if (packet.id !== query.id) {
          finish(new DnsLookupError("BAD_RESPONSE", `${where} answered another query over TCP`));
          return;
        }
        finish(undefined, toReply(packet));
      } catch (err) {
        finish(
          new DnsLookupError("BAD_RESPONSE", `${where} sent an undecodable reply`, { cause: err }),
        );
      }
    });
    socket.on("end", () =>
      finish(
        new DnsLookupError(
          "BAD_RESPONSE",
          `${where} closed the TCP connection without a full reply`,
        ),
      ),
    );
  });
}

/** The `nameserver` entries of resolv.conf (port 53); 127.0.0.1:53 when there are none. */
export async function systemServers(path: string = DEFAULT_RESOLV_CONF): Promise<Endpoint[]> {
  let text = "";
  try {
    text = await readFile(path, "utf8");
  } catch {
    // no resolv.conf: fall back below
  }
  return parseResolvConf(text);
}

export function parseResolvConf(text: string): Endpoint[] {
  const servers: Endpoint[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const host = m?.[1]?.replace(/%.*$/, ""); // drop an IPv6 zone id
    if (host && isIP(host) !== 0) servers.push({ host, port: 53 });
  }
  return servers.length > 0 ? servers : [{ host: "127.0.0.1", port: 53 }];
}
