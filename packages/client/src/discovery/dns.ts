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

/** Drops repeated endpoints, keeping the first of each. */
export function uniqueEndpoints(endpoints: Endpoint[]): Endpoint[] {
  const seen = new Set<string>();
  return endpoints.filter((e) => {
    const key = formatEndpoint(e);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
