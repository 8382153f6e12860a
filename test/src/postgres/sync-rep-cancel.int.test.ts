// Shared-database mode on a PostgreSQL primary with a synchronous standby. A commit waits until
// the standby has flushed it. When that wait is cancelled (an operator's pg_cancel_backend on a
// "stuck" session while the standby is away, the usual first move), PostgreSQL answers the
// COMMIT with success and a WARNING: "The transaction has already committed locally, but
// might not have been replicated to the standby." An instance that took that success as an
// acknowledgement told its client the write was safe; a failover to the standby then lost it.
//
// The instance now counts any WARNING on its sessions while a write is in flight as an unknown
// outcome: the client retries with the same event ids, and the retry is answered only by a
// transaction whose own commit the standby confirmed (its head lock gives it a transaction id,
// so its commit waits too, and the WAL is in order).
//
// Two cases: an acknowledged event A; the standby shut down; an append B waits for it; the
// test cancels the wait; the primary is killed, the standby started again and promoted. Every
// acknowledged event must be there. B goes through the one-round-trip statement (its stream's
// row cached) in one case and through the read-then-write transaction (a new stream) in the
// other. A third: the standby stays away after the cancel; the client's retry of B finds it
// written and waits for the standby (the instance's reads go on meanwhile); once the standby
// is back, B is acknowledged, stored once.
import { ChorusClient, jsonEvent, StreamNotFoundError, type EventData } from "@chorus/client";
import {
  postgresSupport,
  startNode,
  startPostgres,
  waitFor,
  type TestNode,
  type TestPostgresPrimary,
  type TestPostgresStandby,
} from "@chorus/testing";
import { describe, expect, it } from "vitest";
import { FAILOVER_CLIENT_OPTIONS, primaryAndStandbyUrl } from "./helpers.js";

const support = postgresSupport();

describe.skipIf(!support.ok && !process.env.CI)(
  "a write whose wait for the synchronous standby is cancelled",
  () => {
    for (const path of ["one-round-trip", "read-then-write"] as const) {
      it(`is not acknowledged until a standby has it (${path})`, async () => {
        await withSetup((s) => cancelledWait(s, path));
      }, 180_000);
    }

    it("is retried, and the retry is answered once the standby is back; reads go on meanwhile", async () => {
      await withSetup(retryWaitsForStandby);
    }, 180_000);
  },
);

interface Setup {
  /** The instance's database. */
  readonly database: string;
  readonly primary: TestPostgresPrimary;
  readonly standby: TestPostgresStandby;
  readonly node: TestNode;
  readonly client: ChorusClient;
}

/** A primary, its synchronous standby, an instance on both (multi-host URL) and a client. */
async function withSetup(body: (setup: Setup) => Promise<void>): Promise<void> {
  const primary: TestPostgresPrimary = await startPostgres();
  let standby: TestPostgresStandby | undefined;
  let node: TestNode | undefined;
  let client: ChorusClient | undefined;
  try {
    const databaseUrl = await primary.createDatabase();
    standby = await primary.startStandby({ synchronous: true });
    const url = primaryAndStandbyUrl(databaseUrl, primary, standby);
    node = await startNode({ databaseUrl: url });
    client = new ChorusClient(`chorus+discover://${node.httpEndpoint}?${FAILOVER_CLIENT_OPTIONS}`);
    await body({
      database: new URL(databaseUrl).pathname.slice(1),
      primary,
      standby,
      node,
      client,
    });
  } finally {
    await client?.close();
    await node?.stop();
    await standby?.stop();
    await primary.stop();
  }
}

/** The standby is shut down, an append waits for it, and the test cancels the wait. */
async function cancelAWait(
  { primary, standby, node, client }: Setup,
  stream: string,
): Promise<{
  event: EventData;
  appended: Promise<void>;
  acknowledged: () => boolean;
  cancelledXids: Set<string>;
}> {
  await standby.shutdown();
  const event = jsonEvent({ type: "Placed", data: { n: 2 } });
  let acknowledged = false;
  const appended = client.appendToStream(stream, event, { expectedVersion: "any" }).then(() => {
    acknowledged = true;
  });
  appended.catch(() => undefined);
  const waiting = await waitFor(async () => waitingWrites(primary), {
    timeoutMs: 30_000,
    message: "the append to wait for the synchronous standby",
  });
  const cancelled = await primary.psql(
    `SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity WHERE pid IN (${waiting.map((w) => w.pid).join(",")})`,
  );
  expect(Number(cancelled.trim())).toBeGreaterThan(0);
  // Either the client was told the event is written (the old behaviour), or the instance
  // answered the cancelled commit as an unknown outcome and logged why.
  await waitFor(() => acknowledged || /answered as unknown outcomes/.test(node.output()), {
    timeoutMs: 30_000,
    message: "the instance to answer the cancelled commit",
  });
  return {
    event,
    appended,
    acknowledged: () => acknowledged,
    cancelledXids: new Set(waiting.map((w) => w.xid)),
  };
}

async function cancelledWait(
  setup: Setup,
  path: "one-round-trip" | "read-then-write",
): Promise<void> {
  const { primary, standby, client } = setup;
  const stream = `orders-${crypto.randomUUID().slice(0, 8)}`;
  const a = jsonEvent({ type: "Placed", data: { n: 1 } });
  await client.appendToStream(stream, a, { expectedVersion: "any" });
  const acknowledged = [a.id];

  const bStream = path === "one-round-trip" ? stream : `${stream}-new`;
  const b = await cancelAWait(setup, bStream);
  const bBeforeFailover = b.acknowledged();

  await primary.kill();
  await standby.restart();
  await standby.promote();
  // B's retries reach the promoted standby: B is written there (or, if a standby had it, found).
  await b.appended;
  acknowledged.push(b.event.id);

  const stored = [
    ...(await idsIn(client, stream)),
    ...(bStream === stream ? [] : await idsIn(client, bStream)),
  ];
  const lost = acknowledged.filter((id) => !stored.includes(id));
  expect(lost, `acknowledged before the failover: ${bBeforeFailover ? "A and B" : "A"}`).toEqual(
    [],
  );
  expect(stored.filter((id) => id === b.event.id)).toHaveLength(1);
}

async function retryWaitsForStandby(setup: Setup): Promise<void> {
  const { primary, standby, client } = setup;
  const stream = `orders-${crypto.randomUUID().slice(0, 8)}`;
  const a = jsonEvent({ type: "Placed", data: { n: 1 } });
  await client.appendToStream(stream, a, { expectedVersion: "any" });

  const b = await cancelAWait(setup, stream);
  // The client retries B; the instance finds it written, and its answer waits for a commit of
  // its own, which waits for the standby.
  await waitFor(
    async () =>
      (await waitingWrites(primary))?.some((w) => w.xid !== "" && !b.cancelledXids.has(w.xid)),
    { timeoutMs: 30_000, message: "the retry to wait for the synchronous standby" },
  );
  expect(b.acknowledged()).toBe(false);
  // The instance's heartbeats do not wait for the standby: they go on, and so do its reads
  // (an instance whose heartbeat fails, 2 s after it starts, refuses them).
  const { database } = setup;
  const since = (await primary.psql("SELECT now()", database)).trim();
  await waitFor(
    async () =>
      Number(
        await primary.psql(
          `SELECT count(*) FROM chorus.members WHERE heartbeat_at > '${since}'::timestamptz + interval '3 seconds'`,
          database,
        ),
      ) > 0,
    { timeoutMs: 20_000, message: "a heartbeat 3 s after the standby went away" },
  );
  const read = await fetch(`http://${setup.node.httpEndpoint}/streams/${stream}`, {
    signal: AbortSignal.timeout(10_000),
  });
  expect(read.status).toBe(200);
  expect(((await read.json()) as { events: unknown[] }).events.length).toBeGreaterThan(0);

  await standby.restart();
  await b.appended;
  expect((await idsIn(client, stream)).filter((id) => id === b.event.id)).toHaveLength(1);
}

/** The instance's write statements waiting for the synchronous standby (not its heartbeats). */
async function waitingWrites(
  primary: TestPostgresPrimary,
): Promise<Array<{ pid: number; xid: string }> | undefined> {
  const out = await primary.psql(`
    SELECT pid || ',' || coalesce(backend_xid::text, '') FROM pg_stat_activity
    WHERE wait_event = 'SyncRep' AND application_name LIKE 'chorus%'
      AND (query ILIKE '%chorus.write_appends%' OR query ILIKE 'commit%')`);
  const list = out
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^\d+,/.test(l))
    .map((l) => {
      const [pid, xid] = l.split(",");
      return { pid: Number(pid), xid: xid ?? "" };
    });
  return list.length > 0 ? list : undefined;
}

async function idsIn(client: ChorusClient, stream: string): Promise<string[]> {
  const ids: string[] = [];
  try {
    for await (const e of client.readStream(stream, { maxCount: 1_000 })) ids.push(e.event.id);
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return ids;
}
