/**
 * A client process that is frozen (SIGSTOP: a laptop that sleeps, a container that is paused,
 * a VM that is migrated) for longer than its heartbeat timeout while the cluster moves on:
 * other clients write, the leader is killed and another takes over, the persistent group's
 * message timeout hands its unacknowledged events out again. When it wakes (SIGCONT), every
 * timer it had fires at once and its connection is gone. Its catch-up subscription must go on
 * with no gap and no repeat; its persistent consumer must get every event, and no event twice
 * but as a redelivery the server made (retryCount > 0); its own appends, retried across the
 * freeze, must each be in the stream once.
 *
 * The client runs in a real `node` process of its own (the built client, packages/client/dist)
 * and prints what it gets as JSON lines.
 */
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startCluster, waitFor, type TestCluster } from "@chorus/testing";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const CLIENT_DIST = fileURLToPath(
  new URL("../../../packages/client/dist/index.js", import.meta.url),
);

/**
 * How long the client stays frozen at least: twice its heartbeat timeout (1.5 s by default),
 * so on waking its heartbeat deadlines have all passed. The length of the fault, not a wait.
 */
const FROZEN_MS = 4_000;
const DEADLINE_MS = 30_000;

/** The client's script: subscribes, consumes, appends, and says what happens. */
const SCRIPT = `import { ChorusClient, jsonEvent } from ${JSON.stringify(pathToFileURL(CLIENT_DIST).href)};
const print = (fields) => process.stdout.write(JSON.stringify(fields) + "\\n");
const client = new ChorusClient(process.argv[2]);
let stopping = false;
const sub = client.subscribeToStream("catch-up", { fromRevision: "start" });
const consumer = client.persistentSubscriptions.subscribe("work", "group", { bufferSize: 10 });
process.on("message", (m) => {
  if (m !== "stop") return;
  stopping = true;
  void sub.unsubscribe();
  void consumer.unsubscribe();
});
const subscribed = (async () => {
  for await (const e of sub) print({ caughtUp: Number(e.event.revision) });
})();
const consumed = (async () => {
  for await (const e of consumer) {
    print({ consumed: Number(e.event.revision), retryCount: e.retryCount });
    await consumer.ack(e);
  }
})();
const appended = (async () => {
  for (let i = 0; !stopping; i++) {
    try {
      await client.appendToStream("own", jsonEvent({ type: "Own", data: { i } }));
      print({ acked: i });
    } catch (err) {
      print({ failed: i, name: err.name });
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
})();
print({ started: true });
await Promise.all([subscribed, consumed, appended]);
await client.close();
print({ closed: true });
`;

interface Seen {
  caughtUp: number[];
  consumed: Array<{ revision: number; retryCount: number }>;
  acked: number[];
  failed: Array<{ i: number; name: string }>;
  started: boolean;
  closed: boolean;
}

let cluster: TestCluster | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  }
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  cluster = child = dir = undefined;
});

describe("a client frozen through a failover", () => {
  it("resumes its subscriptions with no gap and no repeat, and its appends land once", async () => {
    cluster = await startCluster({ size: 3, memDb: true });
    const c = cluster;
    const writer = new ChorusClient(c.connectionString);
    try {
      await writer.persistentSubscriptions.create("work", "group", {
        startFrom: "start",
        messageTimeoutMs: 1_000,
      });
      dir = await mkdtemp(join(tmpdir(), "chorus-frozen-client-"));
      const file = join(dir, "client.mjs");
      await writeFile(file, SCRIPT);
      const seen: Seen = {
        caughtUp: [],
        consumed: [],
        acked: [],
        failed: [],
        started: false,
        closed: false,
      };
      let stderr = "";
      const proc = spawn(process.execPath, [file, c.connectionString], {
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      });
      child = proc;
      let buffered = "";
      proc.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        buffered += chunk;
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          const line = JSON.parse(buffered.slice(0, nl)) as Record<string, number | string>;
          buffered = buffered.slice(nl + 1);
          if ("caughtUp" in line) seen.caughtUp.push(line.caughtUp as number);
          else if ("consumed" in line)
            seen.consumed.push({
              revision: line.consumed as number,
              retryCount: line.retryCount as number,
            });
          else if ("acked" in line) seen.acked.push(line.acked as number);
          else if ("failed" in line)
            seen.failed.push({ i: line.failed as number, name: line.name as string });
          else if ("started" in line) seen.started = true;
          else if ("closed" in line) seen.closed = true;
        }
      });
      proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      const why = () => `client stderr: ${stderr}`;

      let written = 0;
      const write = async (count: number) => {
        for (let k = 0; k < count; k++, written++) {
          await writer.appendToStream("catch-up", jsonEvent({ type: "E", data: { n: written } }));
          await writer.appendToStream("work", jsonEvent({ type: "W", data: { n: written } }));
        }
      };
      const consumedRevisions = () => new Set(seen.consumed.map((e) => e.revision));

      await write(30);
      await waitFor(
        () =>
          seen.caughtUp.length >= 30 && consumedRevisions().size >= 30 && seen.acked.length >= 5,
        { timeoutMs: DEADLINE_MS, message: `the client to be under way (${why()})` },
      );

      // Frozen: the cluster moves on without it.
      proc.kill("SIGSTOP");
      const frozenAt = performance.now();
      await write(30);
      const leader = await c.leader();
      await c.kill(leader);
      await write(20); // through the new leader
      await waitFor(() => performance.now() - frozenAt >= FROZEN_MS, {
        timeoutMs: FROZEN_MS + 1_000,
        message: "the freeze to last",
      });
      proc.kill("SIGCONT");
      const ackedBeforeWake = seen.acked.length;

      await write(30);
      const total = written;
      await waitFor(
        () =>
          seen.caughtUp.length >= total &&
          consumedRevisions().size >= total &&
          seen.acked.length >= ackedBeforeWake + 5,
        {
          timeoutMs: DEADLINE_MS,
          message: `the client to catch up after waking (${why()})`,
        },
      );
      proc.send("stop");
      await waitFor(() => seen.closed, { timeoutMs: DEADLINE_MS, message: `close (${why()})` });

      // Catch-up: every event, in order, once.
      expect(seen.caughtUp.slice(0, total)).toEqual([...Array(total).keys()]);
      expect(new Set(seen.caughtUp).size).toBe(seen.caughtUp.length);
      // Persistent: every event; a second delivery only as the server's redelivery.
      expect([...consumedRevisions()].sort((a, b) => a - b).slice(0, total)).toEqual([
        ...Array(total).keys(),
      ]);
      const firstDeliveries = seen.consumed
        .filter((e) => e.retryCount === 0)
        .map((e) => e.revision);
      expect(new Set(firstDeliveries).size).toBe(firstDeliveries.length);
      // Its own appends: every acknowledged one in the stream, none twice, in order.
      const own: number[] = [];
      for await (const e of writer.readStream("own")) own.push((e.event.data as { i: number }).i);
      expect(new Set(own).size).toBe(own.length);
      expect(own).toEqual([...own].sort((a, b) => a - b));
      for (const i of seen.acked) expect(own).toContain(i);
      // An append may fail only as one the client could not get answered (its deadline, or no
      // leader reached), never with a wrong answer such as a version conflict.
      const unanswered = ["TimeoutError", "NotLeaderError", "ConnectionError", "DiscoveryError"];
      for (const f of seen.failed) expect(unanswered, why()).toContain(f.name);
      expect(stderr).toBe("");
    } finally {
      await writer.close();
    }
  });
});
