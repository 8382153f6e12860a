/**
 * Riding through a failover: a writer appends numbered events, each with the exact expected
 * version, while a catch-up subscription reads them back and a persistent subscription
 * consumer handles and acknowledges them. Kill the leader meanwhile; the client finds the
 * new one through its gossip seeds and carries on, and the persistent subscription joins its
 * group on the new leader. At the end it checks that every acknowledged event arrived
 * exactly once at both, and in order at the catch-up subscription.
 *
 *   npm start                           # in one terminal: a local three-node cluster
 *   node examples/dist/failover.js      # in another; then kill the leader's process
 *
 * CHORUS_URL overrides the connection string, FAILOVER_EVENTS the number of events (500)
 * and FAILOVER_INTERVAL_MS the pause between two appends (20). `npm run demo` does all of
 * it by itself: a cluster, this program, and a leader kill halfway.
 */
import { ChorusClient, jsonEvent, type MemberInfo } from "@chorus/client";
import { pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

export interface FailoverOptions {
  /** Events to write. Default 500. */
  events?: number;
  /** Pause between two appends, in ms. Default 20. */
  intervalMs?: number;
  /** Called once half of the events are written, with the leader the client writes to. */
  halfway?: (leader: MemberInfo | undefined) => Promise<void> | void;
  /** How long to wait for the subscription to receive everything written, in ms. Default 30,000. */
  drainTimeoutMs?: number;
}

export interface FailoverSummary {
  written: number;
  received: number;
  /** Acknowledged events the subscription never delivered. */
  lost: number;
  /** Events the subscription delivered more than once. */
  duplicates: number;
  /** Events delivered out of order. */
  outOfOrder: number;
  /** Events the persistent subscription consumer handled (and acknowledged). */
  handled: number;
  /** Events handed to the persistent subscription consumer more than once. */
  handledTwice: number;
  /** The longest time between two acknowledged appends, in ms. */
  maxWriteGapMs: number;
  leaderChanges: number;
}

function where(node: MemberInfo): string {
  const tcp = node.externalTcp;
  return `${node.state} ${tcp ? `${tcp.host}:${tcp.port}` : "?"}`;
}

export async function run(
  connectionString: string,
  log: (line: string) => void,
  options: FailoverOptions = {},
): Promise<FailoverSummary> {
  const total = options.events ?? 500;
  const intervalMs = options.intervalMs ?? 20;
  const started = performance.now();
  const say = (line: string) =>
    log(`${String(Math.round(performance.now() - started)).padStart(6)} ms  ${line}`);

  const client = new ChorusClient(connectionString);
  let leaderChanges = 0;
  client.on("connected", (node) => say(`connected to ${where(node)}`));
  client.on("disconnected", (reason) => say(`disconnected: ${reason.message}`));
  client.on("reconnecting", (attempt) => say(`reconnecting (attempt ${attempt})`));
  client.on("leaderChanged", ({ previous, current }) => {
    if (previous) leaderChanges++;
    say(`leader ${previous ? `changed from ${where(previous)} to` : "is"} ${where(current)}`);
  });

  const stream = `failover-${Date.now()}`;
  const received = new Set<number>();
  let last = -1;
  let duplicates = 0;
  let outOfOrder = 0;
  const sub = client.subscribeToStream(stream, { fromRevision: "start" });
  sub.on("caughtUp", () => say("subscription caught up, now live"));
  const subscriber = (async () => {
    for await (const { event } of sub) {
      const i = (event.data as { i: number }).i;
      if (received.has(i)) duplicates++;
      else if (i < last) outOfOrder++;
      received.add(i);
      last = Math.max(last, i);
    }
  })();
  subscriber.catch(() => undefined);

  // A persistent subscription group on the same stream: the server keeps its position.
  await client.persistentSubscriptions.create(stream, "demo", { startFrom: "start" });
  const handled = new Set<number>();
  let handledTwice = 0;
  const consumer = client.persistentSubscriptions.subscribe(stream, "demo", {
    consumerName: "demo-worker",
  });
  consumer.on("confirmed", () => say("persistent subscription joined its group"));
  consumer.on("reconnecting", (reason) =>
    say(`persistent subscription rejoining: ${reason.message}`),
  );
  consumer.on("resubscribed", () => say("persistent subscription rejoined its group"));
  const worker = (async () => {
    for await (const e of consumer) {
      const i = (e.event.data as { i: number }).i;
      if (handled.has(i)) handledTwice++;
      handled.add(i);
      void consumer.ack(e); // resolves once durable; not awaited, so the worker keeps going
    }
  })();
  worker.catch(() => undefined);

  let written = 0;
  let maxWriteGapMs = 0;
  try {
    let lastAck = performance.now();
    for (let i = 0; i < total; i++) {
      if (i === Math.floor(total / 2) && options.halfway) await options.halfway(client.node);
      // The exact expected version: a retry that had in fact succeeded must come back as
      // the original result, never as a conflict, and never write the event twice.
      await client.appendToStream(stream, jsonEvent({ type: "Tick", data: { i } }), {
        expectedVersion: i === 0 ? "no_stream" : BigInt(i - 1),
      });
      written++;
      const now = performance.now();
      maxWriteGapMs = Math.max(maxWriteGapMs, now - lastAck);
      lastAck = now;
      if (written % Math.max(1, Math.floor(total / 10)) === 0)
        say(`progress: written ${written}, received ${received.size}`);
      if (intervalMs > 0) await sleep(intervalMs);
    }
    const deadline = performance.now() + (options.drainTimeoutMs ?? 30_000);
    while ((received.size < written || handled.size < written) && performance.now() < deadline)
      await sleep(20);
  } finally {
    await sub.unsubscribe();
    await subscriber;
    await consumer.unsubscribe();
    await worker;
    await client.persistentSubscriptions.delete(stream, "demo").catch(() => undefined);
    await client.close();
  }
  const summary: FailoverSummary = {
    written,
    received: received.size,
    lost: Array.from({ length: written }, (_, i) => i).filter((i) => !received.has(i)).length,
    duplicates,
    outOfOrder,
    handled: handled.size,
    handledTwice,
    maxWriteGapMs: Math.round(maxWriteGapMs),
    leaderChanges,
  };
  say(
    `done: written ${summary.written}, received ${summary.received}, lost ${summary.lost}, ` +
      `duplicates ${summary.duplicates}, out of order ${summary.outOfOrder}, ` +
      `handled by the persistent consumer ${summary.handled} (twice: ${summary.handledTwice}), ` +
      `longest write gap ${summary.maxWriteGapMs} ms, leader changes ${summary.leaderChanges}`,
  );
  return summary;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const url =
    process.env.CHORUS_URL ??
    "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false";
  const summary = await run(url, (line) => console.log(line), {
    events: Number(process.env.FAILOVER_EVENTS ?? 500),
    intervalMs: Number(process.env.FAILOVER_INTERVAL_MS ?? 20),
    halfway: (leader) =>
      console.log(
        `halfway: writing to ${leader ? where(leader) : "?"}; kill the leader now to see a failover`,
      ),
  });
  process.exitCode =
    summary.lost === 0 && summary.duplicates === 0 && summary.handledTwice === 0 ? 0 : 1;
}
