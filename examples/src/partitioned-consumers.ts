/**
 * Consumers of a persistent subscription group on `$all` over a partitioned deployment:
 * one `subscribe("$all", group)` consumes the group in every replication group at once.
 * Each event names its group (`event.partition`), and `ack` sends each event's
 * acknowledgement to its own group, so one call may acknowledge events of several groups.
 * A group's failover or restart pauses only that group's part; it joins again by itself.
 *
 * Here an invoicing worker handles the orders of a few tenants (spread over the groups) and
 * acknowledges them in batches; `getInfo("$all", group)` then shows the group in every
 * partition.
 *
 *   npm start -- --partitions 2                       # in one terminal: two local groups p1, p2
 *   node examples/dist/partitioned-consumers.js       # in another
 *
 * CHORUS_PARTITIONS overrides the groups as JSON ({"p1": "chorus+discover://...", ...}).
 */
import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import {
  ChorusClient,
  ConnectionSettings,
  PersistentSubscriptionExistsError,
  jsonEvent,
  type PartitionedPersistentSubscriptionInfo,
  type PersistentEvent,
} from "@chorus/client";

export interface InvoicingOptions {
  /** Group name -> connection string, as the servers' `--partitions` name them. */
  partitions: Readonly<Record<string, string>>;
  /** Tenants to place one order each for. Default 8. */
  tenants?: number;
  /** The persistent subscription group. Default "invoicing". */
  group?: string;
  /** How long to wait for this run's orders. Default 30,000 ms. */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface InvoicingSummary {
  /** This run's orders handled, per replication group. */
  handled: Record<string, number>;
  /** Events acknowledged in each partition's group, as getInfo("$all", group) reports them. */
  ackedPerPartition: Record<string, number>;
}

export async function main(options: InvoicingOptions): Promise<InvoicingSummary> {
  const log = options.log ?? (() => undefined);
  const group = options.group ?? "invoicing";
  const run = randomUUID().slice(0, 8);
  const client = new ChorusClient(
    ConnectionSettings.create().withPartitions(options.partitions).build(),
  );
  const signal = AbortSignal.timeout(options.timeoutMs ?? 30_000);
  try {
    try {
      // Creates the group on every partition; from the end: only orders from now on.
      await client.persistentSubscriptions.create("$all", group, { startFrom: "end" });
    } catch (err) {
      if (!(err instanceof PersistentSubscriptionExistsError)) throw err;
    }
    const sub = client.persistentSubscriptions.subscribe("$all", group, { signal });
    await new Promise<void>((resolve) => sub.once("confirmed", resolve));

    const tenants = options.tenants ?? 8;
    for (let k = 0; k < tenants; k++) {
      await client.appendToStream(
        `tenant{${run}-${k}}-order-1`,
        jsonEvent({ type: "OrderPlaced", data: { run, tenant: k, amount: 10 * (k + 1) } }),
      );
    }

    const handled: Record<string, number> = {};
    let mine = 0;
    let batch: PersistentEvent[] = [];
    for await (const e of sub) {
      const data = e.event.data as { run?: string; amount?: number };
      if (data.run === run) {
        handled[e.event.partition!] = (handled[e.event.partition!] ?? 0) + 1;
        log(`invoice ${data.amount} for ${e.event.streamId} (group ${e.event.partition})`);
        mine++;
      }
      // Acknowledge in batches: each event goes to its own group's subscription.
      batch.push(e);
      if (batch.length >= 4 || mine === tenants) {
        await sub.ack(batch);
        batch = [];
      }
      if (mine === tenants) break; // leaves the group in every partition
    }

    const info = (await client.persistentSubscriptions.getInfo(
      "$all",
      group,
    )) as PartitionedPersistentSubscriptionInfo;
    const ackedPerPartition = Object.fromEntries(
      Object.entries(info.partitions).map(([name, i]) => [name, i.totalAcked]),
    );
    log(
      `handled per group: ${Object.entries(handled)
        .map(([name, n]) => `${name} ${n}`)
        .join(", ")}`,
    );
    return { handled, ackedPerPartition };
  } finally {
    await client.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const partitions = process.env.CHORUS_PARTITIONS
    ? (JSON.parse(process.env.CHORUS_PARTITIONS) as Record<string, string>)
    : {
        p1: "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false",
        p2: "chorus+discover://127.0.0.1:21213,127.0.0.1:22213,127.0.0.1:23213?tls=false",
      };
  await main({ partitions, log: (line) => console.log(line) });
}
