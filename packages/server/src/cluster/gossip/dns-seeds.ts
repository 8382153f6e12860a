/**
 * Gossip seeds from DNS (`--discover-via-dns --cluster-dns NAME`): every gossip round the
 * name's A and AAAA records are asked for and each address becomes a seed on the cluster's
 * internal HTTP gossip port. Uses Node's c-ares resolver (UDP, retried over TCP when a reply
 * is truncated), pointed at `--dns-server` when given, else at the system's resolvers.
 */
import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import type { Endpoint } from "../../node-types.js";
import type { GossipLogger } from "./service.js";
import { endpointKey, parseEndpoint } from "./wire.js";

export interface DnsSeedSourceOptions {
  /** The name whose A/AAAA records are the cluster's nodes. */
  readonly name: string;
  /** The internal HTTP (gossip) port every node listens on. */
  readonly gossipPort: number;
  /** "ip:port" of the DNS server to ask; undefined: the system's resolvers. */
  readonly dnsServer?: string | undefined;
  /** Deadline of one query attempt. Default 2,000 ms. */
  readonly queryTimeoutMs?: number;
  readonly logger: GossipLogger;
}

export const DEFAULT_DNS_QUERY_TIMEOUT_MS = 2_000;

/** DNS error codes that mean "no records of this type", not a failed lookup. */
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND"]);

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * A `seedSource` for GossipService. Throws (so the round uses the static seeds only, and
 * the service logs it) when both lookups fail or the name has no address at all.
 */
export function dnsSeedSource(options: DnsSeedSourceOptions): () => Promise<readonly Endpoint[]> {
  const resolver = new Resolver({
    timeout: options.queryTimeoutMs ?? DEFAULT_DNS_QUERY_TIMEOUT_MS,
    tries: 2,
  });
  if (options.dnsServer !== undefined) {
    const server = parseEndpoint(options.dnsServer);
    if (!server || isIP(server.host) === 0)
      throw new Error(`--dns-server must be ip:port, got ${JSON.stringify(options.dnsServer)}`);
    resolver.setServers([endpointKey(server)]);
  }
  const where = options.dnsServer ?? "the system's resolvers";
  let lastAnswer = "";

  return async () => {
    const lookups = await Promise.allSettled([
      resolver.resolve4(options.name),
      resolver.resolve6(options.name),
    ]);
    const addresses: string[] = [];
    const failures: string[] = [];
    for (const [i, r] of lookups.entries()) {
      if (r.status === "fulfilled") addresses.push(...r.value);
      else if (!NO_RECORDS.has(errorCode(r.reason) ?? ""))
        failures.push(`${i === 0 ? "A" : "AAAA"}: ${(r.reason as Error).message}`);
    }
    if (addresses.length === 0) {
      throw new Error(
        failures.length > 0
          ? `DNS lookup of ${options.name} via ${where} failed (${failures.join("; ")})`
          : `DNS name ${options.name} has no A or AAAA records (asked ${where})`,
      );
    }
    if (failures.length > 0)
      options.logger.warn(
        { name: options.name, failures },
        "DNS discovery: one lookup failed; using the other's addresses",
      );
    const seeds = [...new Set(addresses)]
      .sort()
      .map((host) => ({ host, port: options.gossipPort }));
    const answer = seeds.map(endpointKey).join(",");
    if (answer !== lastAnswer) {
      lastAnswer = answer;
      options.logger.info({ name: options.name, seeds: answer }, "DNS discovery: gossip seeds");
    }
    return seeds;
  };
}
