/**
 * A multi-tenant order service over a partitioned deployment: several replication groups,
 * one client. Every stream of a tenant is named `tenant{<id>}-...`: the text in braces is
 * the partition key, so all of a tenant's streams live in one group, and a tenant's
 * streams can be written together with optimistic concurrency and read back consistently
 * from one group's leader. Tenants spread over the groups; a leader change in one group
 * stalls only the tenants of that group.
 *
 * Per tenant:
 *   tenant{<id>}-order-<n>   one stream per order (OrderPlaced)
 *   tenant{<id>}-ledger      the tenant's running total (OrderBooked), appended with the
 *                            revision read, so two writers of one tenant never lose an update
 * An overview reads `$all` of every group, merged, and tells which group holds each tenant.
 *
 *   npm start -- --partitions 2                 # in one terminal: two local groups p1, p2
 *   node examples/dist/multi-tenant.js          # in another
 *
 * CHORUS_PARTITIONS overrides the groups as JSON ({"p1": "chorus+discover://...", ...}),
 * TENANTS the number of tenants (6) and ORDERS the orders per tenant (3).
 */
import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import {
  ChorusClient,
  ConnectionSettings,
  StreamNotFoundError,
  WrongExpectedVersionError,
  jsonEvent,
} from "@chorus/client";

export interface MultiTenantOptions {
  /** Group name -> connection string, as the servers' `--partitions` name them. */
  partitions: Readonly<Record<string, string>>;
  /** Default 6. */
  tenants?: number;
  /** Default 3. */
  ordersPerTenant?: number;
  /** Names this run's tenants `<runId>-<k>`. Default: random. */
  runId?: string;
  log?: (line: string) => void;
}

export interface TenantSummary {
  /** The group the tenant's orders came from (one: all of a tenant's streams live together). */
  partition: string;
  /** The tenant's ledger total, read back. */
  total: number;
  /** The orders of the tenant found in the merged `$all`, and the groups they came from. */
  ordersSeen: number;
  seenIn: string[];
}

export interface MultiTenantSummary {
  tenants: Record<string, TenantSummary>;
  /** Tenants per group. */
  perPartition: Record<string, number>;
}

/** The streams of one tenant: the braces make `id` the partition key of every one of them. */
export const tenantStreams = {
  order: (tenant: string, n: number) => `tenant{${tenant}}-order-${n}`,
  ledger: (tenant: string) => `tenant{${tenant}}-ledger`,
};

/** The ledger's total and revision ("no_stream" before the first order). */
async function readLedger(
  client: ChorusClient,
  tenant: string,
): Promise<{ total: number; revision: bigint | "no_stream" }> {
  try {
    for await (const { event } of client.readStream(tenantStreams.ledger(tenant), {
      direction: "backwards",
      fromRevision: "end",
      maxCount: 1,
    })) {
      return { total: (event.data as { total: number }).total, revision: event.revision };
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return { total: 0, revision: "no_stream" };
}

/** Places an order: its own stream, then the tenant's ledger, retried on a concurrent write. */
export async function placeOrder(
  client: ChorusClient,
  tenant: string,
  n: number,
  amount: number,
): Promise<void> {
  const orderId = randomUUID();
  await client.appendToStream(
    tenantStreams.order(tenant, n),
    jsonEvent({ type: "OrderPlaced", id: orderId, data: { tenant, n, amount } }),
    { expectedVersion: "no_stream" },
  );
  for (let attempt = 1; ; attempt++) {
    const ledger = await readLedger(client, tenant);
    try {
      await client.appendToStream(
        tenantStreams.ledger(tenant),
        jsonEvent({ type: "OrderBooked", data: { orderId, total: ledger.total + amount } }),
        { expectedVersion: ledger.revision },
      );
      return;
    } catch (err) {
      if (!(err instanceof WrongExpectedVersionError) || attempt >= 5) throw err;
    }
  }
}

export async function main(options: MultiTenantOptions): Promise<MultiTenantSummary> {
  const log = options.log ?? (() => {});
  const runId = options.runId ?? randomUUID().slice(0, 8);
  const tenantIds = Array.from({ length: options.tenants ?? 6 }, (_, k) => `${runId}-${k}`);
  const orders = options.ordersPerTenant ?? 3;
  const groups = Object.keys(options.partitions);

  const client = new ChorusClient(
    ConnectionSettings.create().withPartitions(options.partitions).build(),
  );
  client.on("leaderChanged", ({ current, partition }) =>
    log(`group ${partition}: leader is now ${current.externalHttp?.port ?? "?"}`),
  );
  const summary: MultiTenantSummary = { tenants: {}, perPartition: {} };
  try {
    // Every tenant's orders, tenants in parallel (each on its own group's leader).
    await Promise.all(
      tenantIds.map(async (tenant, k) => {
        for (let n = 0; n < orders; n++) await placeOrder(client, tenant, n, 10 * (k + 1) + n);
      }),
    );
    log(`placed ${orders} orders for each of ${tenantIds.length} tenants`);

    // The overview: $all of every group, merged; each event says which group it came from.
    const seen = new Map<string, { count: number; groups: Set<string> }>();
    for await (const { event } of client.readAll()) {
      if (event.type !== "OrderPlaced" || !event.isJson) continue;
      const { tenant } = event.data as { tenant: string };
      if (!tenantIds.includes(tenant)) continue;
      const entry = seen.get(tenant) ?? { count: 0, groups: new Set<string>() };
      entry.count++;
      entry.groups.add(event.partition ?? "?");
      seen.set(tenant, entry);
    }

    for (const group of groups) summary.perPartition[group] = 0;
    for (const tenant of tenantIds) {
      const seenIn = [...(seen.get(tenant)?.groups ?? [])];
      const partition = seenIn[0] ?? "?";
      summary.perPartition[partition] = (summary.perPartition[partition] ?? 0) + 1;
      summary.tenants[tenant] = {
        partition,
        total: (await readLedger(client, tenant)).total,
        ordersSeen: seen.get(tenant)?.count ?? 0,
        seenIn,
      };
      const t = summary.tenants[tenant];
      log(
        `tenant ${tenant}: group ${partition}, ${t.ordersSeen} orders (from ${t.seenIn.join(", ")}), total ${t.total}`,
      );
    }
    log(`tenants per group: ${groups.map((g) => `${g} ${summary.perPartition[g]}`).join(", ")}`);
  } finally {
    await client.close();
  }
  return summary;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const partitions = process.env.CHORUS_PARTITIONS
    ? (JSON.parse(process.env.CHORUS_PARTITIONS) as Record<string, string>)
    : {
        p1: "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false",
        p2: "chorus+discover://127.0.0.1:21213,127.0.0.1:22213,127.0.0.1:23213?tls=false",
      };
  await main({
    partitions,
    tenants: Number(process.env.TENANTS ?? 6),
    ordersPerTenant: Number(process.env.ORDERS ?? 3),
    log: (line) => console.log(line),
  });
}
