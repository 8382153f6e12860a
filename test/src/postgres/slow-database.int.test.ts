// Shared-database mode: the database ends an instance's write transaction because it idled
// too long between two round trips (`idle_in_transaction_session_timeout`, 2 s: a slow link,
// or an instance stalled for that long). The database answers FATAL 25P03 and rolls the
// transaction back: the write was not made, and a retry may go through. Found by the soak's
// `db-link-slow` fault, as one "ServerError(INTERNAL)" unknown outcome: the instance answered
// such a write "internal error" (HTTP 500), which clients do not retry. It is now NOT_READY
// (HTTP 503), which they do.
//
// The test stalls the instance (SIGSTOP) for longer than 2 s while it sees, in
// `pg_stat_activity`, the instance's session idle in a write transaction and none of its
// heartbeats running. (A heartbeat in flight would time out first when the instance resumes,
// and the instance would answer "cannot reach the database" instead: such a pause is tried
// again.)
import { delay, waitFor, type TestNode } from "@chorus/testing";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { sharedPostgres, startCutOffInstance } from "./helpers.js";

const pg = sharedPostgres();

/** Each way: gives the test time to see a transaction between its round trips. */
const LINK_DELAY_MS = 20;
/** Longer than the database's 2 s. */
const PAUSE_MS = 2_600;
/** Pauses at most (one whose write was answered otherwise is tried again). */
const MAX_PAUSES = 8;

interface Answer {
  readonly status: number;
  readonly error?: string;
  readonly message?: string;
}

async function append(node: TestNode, stream: string): Promise<Answer> {
  const res = await fetch(`http://${node.httpEndpoint}/streams/${stream}`, {
    method: "POST",
    headers: { "content-type": "application/json", "chorus-expected-version": "any" },
    body: JSON.stringify([{ eventId: crypto.randomUUID(), eventType: "T", data: { n: 1 } }]),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as { error?: string; message?: string };
  return { status: res.status, error: body.error, message: body.message };
}

describe.skipIf(!pg.runs)("an instance whose write transaction the database ends", () => {
  it("answers the write NOT_READY (retried by clients), not internal error", async () => {
    const cut = await startCutOffInstance(pg());
    const watcher = postgres(cut.url, { max: 1, onnotice: () => undefined });
    let stop = false;
    const answers: Answer[] = [];
    const loops: Promise<void>[] = [];
    try {
      const { instanceId } = (await (
        await fetch(`http://${cut.node.httpEndpoint}/info`)
      ).json()) as { instanceId: string };
      cut.proxy.latency({ delayMs: LINK_DELAY_MS });
      // A new stream each time: a transaction that locks and reads, then writes what it
      // decided in another round trip.
      for (let w = 0; w < 2; w++) {
        loops.push(
          (async () => {
            for (let i = 0; !stop && i < 100_000; i++) {
              answers.push(await append(cut.node, `new-${w}-${i}`).catch(() => ({ status: 0 })));
            }
          })(),
        );
      }
      // The instance's sessions: one idle in a write transaction, none running a statement.
      const betweenRoundTrips = async () => {
        const sessions = await watcher<{ state: string; xid: string | null }[]>`
          SELECT state, backend_xid::text AS xid FROM pg_stat_activity
          WHERE application_name = ${`chorus-server ${instanceId}`}`;
        return (
          sessions.some((s) => s.state === "idle in transaction" && s.xid !== null) &&
          sessions.every((s) => s.state !== "active")
        );
      };
      let ended: Answer | undefined;
      for (let pauses = 0; ended === undefined && pauses < MAX_PAUSES; pauses++) {
        await waitFor(betweenRoundTrips, {
          timeoutMs: 20_000,
          intervalMs: 1,
          message: "a write transaction of the instance between its round trips",
        });
        const before = answers.length;
        // The stall itself is what is tested: the database's timeout runs out meanwhile.
        cut.node.pause();
        await delay(PAUSE_MS);
        cut.node.resume();
        // The writes that were waiting are answered; one of them had its transaction ended.
        await waitFor(() => answers.length >= before + 2, {
          timeoutMs: 20_000,
          message: "the waiting writes answered",
        });
        const after = answers.slice(before);
        expect(after.filter((a) => a.status === 500)).toEqual([]);
        ended = after.find((a) => /idle-in-transaction timeout/.test(a.message ?? ""));
      }
      expect(ended).toMatchObject({ status: 503, error: "NOT_READY" });
      expect(cut.node.output()).not.toMatch(/a write transaction failed/);
    } finally {
      stop = true;
      await Promise.all(loops);
      await watcher.end();
      await cut.stop();
    }
  });
});
