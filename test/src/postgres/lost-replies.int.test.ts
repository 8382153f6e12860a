// Shared-database mode: an instance whose link to the database loses the database's answers
// for a while (what it sends still runs: commits whose outcome it never learns), then breaks,
// as TCP gives up on such a link. Found by the soak's `db-link-lost-replies` fault: the
// instance's writes to streams it had written before never went through again. Its writer
// connection had been replaced when the cut was noticed, the new one's first query failed
// with the broken link, and every later write awaited that failed query and answered
// NOT_READY at once, forever; the instance stayed healthy, so its clients stayed with it.
// - Its lock queries run too: a try of the persistent subscription lock that goes unanswered
//   may have taken it. Before, the instance went on using that session, which kept the lock
//   unknown to it for as long as its link lost answers (with TCP, until the database's side
//   gives up on retransmitting: many minutes), and no instance served the groups.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { sharedPostgres, startCutOffInstance } from "./helpers.js";

const pg = sharedPostgres();

/** Concurrent writers, each on streams of its own that the instance has written before. */
const WRITERS = 4;
const STREAMS_PER_WRITER = 5;
/**
 * How soon after the link is back the instance's writes go through again: its next
 * heartbeat (500 ms), a new connection (1.1-1.4 s in three runs). Before, they did not
 * within any time.
 */
const RESUME_BOUND_MS = 5_000;

const SERVING = "serving the persistent subscription groups";
const LOST = "lost the persistent subscription lock";
/** The instances' heartbeat interval (--gossip-interval-ms default). */
const HEARTBEAT_MS = 500;

async function instanceIdOf(httpEndpoint: string): Promise<string> {
  const res = await fetch(`http://${httpEndpoint}/info`);
  return ((await res.json()) as { instanceId: string }).instanceId;
}

async function ready(httpEndpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${httpEndpoint}/health/ready`, {
      signal: AbortSignal.timeout(1_000),
    });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

describe.skipIf(!pg.runs)("an instance whose database answers are lost for a while", () => {
  it("writes again soon after the link is back, every acknowledged append stored once", async () => {
    const cut = await startCutOffInstance(pg());
    const { proxy, node } = cut;
    const client = new ChorusClient(`${node.connectionString}&operationTimeout=60000`);
    let stop = false;
    let acked = 0;
    const ackedIds = new Map<string, string[]>();
    const loops: Promise<void>[] = [];
    try {
      for (let w = 0; w < WRITERS; w++) {
        loops.push(
          (async () => {
            for (let i = 0; !stop && i < 1_000_000; i++) {
              const stream = `s-${w}-${i % STREAMS_PER_WRITER}`;
              const event = jsonEvent({ type: "T", data: { w, i } });
              try {
                await client.appendToStream(stream, event);
              } catch {
                continue; // an unknown outcome: checked below only for what was acknowledged
              }
              acked++;
              ackedIds.set(stream, [...(ackedIds.get(stream) ?? []), event.id]);
            }
          })(),
        );
      }
      // Every stream written once: the instance knows their rows (its one-round-trip path).
      await waitFor(() => acked >= WRITERS * STREAMS_PER_WRITER * 4, {
        timeoutMs: 20_000,
        message: "the first appends",
      });

      proxy.dropRepliesAfterForwarding();
      // The instance notices (its heartbeat goes unanswered) and stops serving.
      await waitFor(async () => !(await ready(node.httpEndpoint)), {
        timeoutMs: 10_000,
        message: "the instance noticing it gets no answers",
      });
      proxy.heal();
      proxy.resetAll();
      const healedAt = Date.now();
      const ackedAtHeal = acked;
      await waitFor(() => acked >= ackedAtHeal + 50, {
        timeoutMs: 20_000,
        message: "appends through the instance going through again",
      });
      expect(Date.now() - healedAt).toBeLessThan(RESUME_BOUND_MS);
    } finally {
      stop = true;
      proxy.heal();
      await Promise.all(loops);
    }
    try {
      // Every acknowledged append is stored, once, in the order acknowledged per stream.
      for (const [stream, ids] of ackedIds) {
        const stored: string[] = [];
        for await (const e of client.readStream(stream)) stored.push(e.event.id);
        expect(new Set(stored).size, `${stream}: no event twice`).toBe(stored.length);
        expect(
          stored.filter((id) => ids.includes(id)),
          `${stream}: every acknowledged append, in order`,
        ).toEqual(ids);
      }
    } finally {
      await client.close();
      await cut.stop();
    }
  }, 120_000);

  it("does not keep the persistent subscription lock unknown to it: another instance takes the groups over", async () => {
    const cut = await startCutOffInstance(pg());
    const { proxy, node: cutNode } = cut;
    const watcher = postgres(cut.url, { max: 1, onnotice: () => undefined });
    let other: TestNode | undefined;
    try {
      await waitFor(() => cutNode.output().includes(SERVING), {
        timeoutMs: 10_000,
        message: "the instance on the lossy link serving the groups",
      });
      const started = await startNode({ databaseUrl: cut.url });
      other = started;
      const otherId = await instanceIdOf(started.httpEndpoint);
      // The other instance stands still, so that the first one is the only one to try the
      // lock while its answers are lost.
      started.pause();
      proxy.dropRepliesAfterForwarding();
      await waitFor(async () => !(await ready(cutNode.httpEndpoint)), {
        timeoutMs: 10_000,
        message: "the instance noticing it gets no answers",
      });
      await waitFor(() => cutNode.output().includes(LOST), {
        timeoutMs: 10_000,
        message: "the instance giving the lock up",
      });
      // The scenario: the other instance stays paused for two more heartbeats, in which the
      // first one tries the lock again (each try runs on the database, its answer lost).
      const pausedAt = Date.now();
      await waitFor(() => Date.now() - pausedAt >= 2 * HEARTBEAT_MS, { timeoutMs: 10_000 });
      started.resume();
      // While the link still loses the answers, the other instance takes the lock.
      await waitFor(
        async () =>
          (
            await watcher<{ n: number }[]>`
              SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted
                AND a.application_name = ${`chorus-server ${otherId}`}`
          )[0]!.n > 0,
        { timeoutMs: 10_000, message: "the other instance holding the persistent lock" },
      );
      await waitFor(() => started.output().includes(SERVING), {
        timeoutMs: 5_000,
        message: "the other instance serving the groups",
      });
    } finally {
      other?.resume();
      proxy.heal();
      await watcher.end();
      await other?.stop();
      await cut.stop();
    }
  }, 120_000);
});
