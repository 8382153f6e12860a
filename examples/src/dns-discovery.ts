/**
 * Finding the cluster from one DNS name: every A/AAAA record of the name is a gossip
 * seed (or, with chorus+srv://, every SRV record of _chorus._tcp.NAME). The name is
 * resolved again on every discovery round, so DNS changes need no restart.
 *
 *   CHORUS_URL="chorus+discover://cluster.example.com:2113?dnsServer=10.0.0.53" \
 *     node examples/dist/dns-discovery.js
 */
import { ChorusClient, DiscoveryError, jsonEvent } from "@chorus/client";
import { pathToFileURL } from "node:url";

export async function run(connectionString: string, log: (line: string) => void): Promise<void> {
  const client = new ChorusClient(connectionString);
  client.on("connected", (node) => {
    log(`connected to ${node.state} ${node.externalTcp?.host}:${node.externalTcp?.port}`);
  });
  try {
    const members = await client.clusterMembers();
    log(
      `cluster members: ${members.map((m) => `${m.state}@${m.externalHttp?.host}:${m.externalHttp?.port}`).join(", ")}`,
    );
    const result = await client.appendToStream(
      "dns-example",
      jsonEvent({ type: "Hello", data: { at: Date.now() } }),
    );
    log(`appended at revision ${result.nextExpectedVersion}`);
  } catch (err) {
    if (err instanceof DiscoveryError) {
      // Every seed's failure, with its real cause (unknown name, refused, TLS, timeout).
      for (const cause of err.causes) log(`  ${cause.seed}: ${cause.error.message}`);
    }
    throw err;
  } finally {
    await client.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const url = process.env.CHORUS_URL ?? "chorus+discover://localhost:2113";
  await run(url, (line) => console.log(line));
}
