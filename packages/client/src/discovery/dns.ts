import { promises as dns } from "node:dns";
import { formatEndpoint } from "../settings/endpoint.js";
import type { Endpoint } from "../types.js";

export interface DnsQuery {
  readonly name: string;
  readonly gossipPort: number;
  readonly dnsServers: readonly Endpoint[];
  readonly srv: boolean;
}

/** Turns a cluster DNS name into gossip seeds. The seam discovery is tested through. */
export interface SeedResolver {
  resolve(
    query: DnsQuery,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<Endpoint[]>;
}

/**
 * Resolves with Node's resolver (c-ares; UDP with TCP fallback): A and AAAA records, or SRV
 * records `_chorus._tcp.<name>`. Without DNS servers, A/AAAA go through the system
 * resolver (getaddrinfo, so /etc/hosts applies).
 */
export class NodeSeedResolver implements SeedResolver {
  async resolve(
    query: DnsQuery,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<Endpoint[]> {
    if (query.dnsServers.length === 0 && !query.srv) {
      const records = await dns.lookup(query.name, { all: true });
      return unique(records.map((r) => ({ host: r.address, port: query.gossipPort })));
    }
    const resolver = new dns.Resolver({ timeout: options.timeoutMs, tries: 2 });
    if (query.dnsServers.length > 0) resolver.setServers(query.dnsServers.map(formatEndpoint));
    const onAbort = () => resolver.cancel();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (query.srv) {
        const records = await resolver.resolveSrv(`_chorus._tcp.${query.name}`);
        return unique(
          records
            .sort((a, b) => a.priority - b.priority || b.weight - a.weight)
            .map((r) => ({ host: r.name.replace(/\.$/, ""), port: r.port })),
        );
      }
      const [v4, v6] = await Promise.allSettled([
        resolver.resolve4(query.name),
        resolver.resolve6(query.name),
      ]);
      const hosts = [
        ...(v4.status === "fulfilled" ? v4.value : []),
        ...(v6.status === "fulfilled" ? v6.value : []),
      ];
      if (hosts.length === 0) {
        throw v4.status === "rejected"
          ? v4.reason
          : new Error(`no A/AAAA records for ${query.name}`);
      }
      return unique(hosts.map((host) => ({ host, port: query.gossipPort })));
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}

function unique(endpoints: Endpoint[]): Endpoint[] {
  const seen = new Set<string>();
  return endpoints.filter((e) => {
    const key = formatEndpoint(e);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
