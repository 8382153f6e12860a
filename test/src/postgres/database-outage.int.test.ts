// Shared-database mode: an instance whose database connections break (the link reset under a
// live subscription, the database server crashing and recovering) keeps its clients' catch-up
// subscriptions going. The instance answers them NOT_READY and they subscribe again from where
// they were: no drop handed to the application, no gap, no repeat (found by the soak's
// `--phases pg`, where they used to end with "internal error").
import { ChorusClient, jsonEvent, type Subscription } from "@chorus/client";
import {
  postgresSupport,
  startFaultProxy,
  startNode,
  startPostgres,
  waitFor,
  type FaultProxy,
  type TestNode,
  type TestPostgresPrimary,
} from "@chorus/testing";
import { afterEach, describe, expect, it } from "vitest";

const support = postgresSupport();
const CLIENT_OPTIONS =
  "operationTimeout=20000&reconnectionDelay=20&maxReconnections=1000&maxRetries=1000";
/** Appends acknowledged before each outage, and after the last. */
const BATCH = 50;
const OUTAGES = 3;
/** A bound on the writer's appends. */
const MAX_WRITES = 20_000;

let pg: TestPostgresPrimary | undefined;
let proxy: FaultProxy | undefined;
let node: TestNode | undefined;
let client: ChorusClient | undefined;

afterEach(async () => {
  await client?.close();
  await node?.stop();
  await proxy?.close();
  await pg?.stop();
  client = node = proxy = pg = undefined;
});

interface Watched {
  readonly sub: Subscription;
  readonly seen: string[];
  readonly dropped: unknown[];
  readonly loop: Promise<void>;
}

function watch(sub: Subscription, prefix: string): Watched {
  const seen: string[] = [];
  const dropped: unknown[] = [];
  sub.on("dropped", (err) => dropped.push(err));
  const loop = (async () => {
    for await (const e of sub) if (e.event.streamId.startsWith(prefix)) seen.push(e.event.id);
  })().catch((err: unknown) => {
    dropped.push(err);
  });
  return { sub, seen, dropped, loop };
}

describe.skipIf(!support.ok && !process.env.CI)(
  "a database outage under live subscriptions",
  () => {
    it.each(["link reset", "database crash"] as const)(
      "%s: $all and stream subscriptions go on with no gap, no repeat and no drop",
      async (outage) => {
        const db = (pg = await startPostgres());
        const url = new URL(await db.createDatabase());
        proxy = await startFaultProxy({ target: { host: db.host, port: db.port } });
        url.host = `${proxy.endpoint.host}:${proxy.endpoint.port}`;
        node = await startNode({ databaseUrl: url.toString() });
        client = new ChorusClient(`${node.connectionString}&${CLIENT_OPTIONS}`);
        const c = client;
        const all = watch(c.subscribeToAll({ fromPosition: "start" }), "outage-");
        const one = watch(c.subscribeToStream("outage-0", { fromRevision: "start" }), "outage-0");
        // Writes go on through the outages, so that the subscriptions are reading when the
        // connections break; the client retries what the instance refuses meanwhile.
        let stop = false;
        let acknowledged = 0;
        const writer = (async () => {
          for (let i = 0; !stop && i < MAX_WRITES; i++) {
            try {
              await c.appendToStream(
                `outage-${i % 2}`,
                jsonEvent({ type: "Written", data: { i } }),
              );
              acknowledged++;
            } catch {
              // Outcome unknown: the log read at the end decides.
            }
          }
        })();
        try {
          for (let round = 0; round < OUTAGES; round++) {
            const before = acknowledged;
            await waitFor(() => acknowledged >= before + BATCH && all.seen.length > 0, {
              timeoutMs: 30_000,
              message: `round ${round}: writes and the subscription going on`,
            });
            if (outage === "link reset") proxy.resetAll();
            else {
              await db.kill();
              await db.restart();
            }
          }
          const before = acknowledged;
          await waitFor(() => acknowledged >= before + BATCH, {
            timeoutMs: 30_000,
            message: "writes going on after the outages",
          });
        } finally {
          stop = true;
          await writer;
        }
        const log: { id: string; streamId: string }[] = [];
        for await (const e of c.readAll())
          if (e.event.streamId.startsWith("outage-"))
            log.push({ id: e.event.id, streamId: e.event.streamId });
        await waitFor(
          () =>
            all.dropped.length + one.dropped.length > 0 ||
            (all.seen.length >= log.length &&
              one.seen.length >= log.filter((e) => e.streamId === "outage-0").length),
          { timeoutMs: 30_000, message: "both subscriptions handed every event (or dropped)" },
        );
        expect(all.dropped).toEqual([]);
        expect(one.dropped).toEqual([]);
        expect(all.seen).toEqual(log.map((e) => e.id));
        expect(one.seen).toEqual(log.filter((e) => e.streamId === "outage-0").map((e) => e.id));
        await all.sub.unsubscribe();
        await one.sub.unsubscribe();
        await Promise.all([all.loop, one.loop]);
      },
      120_000,
    );
  },
);
