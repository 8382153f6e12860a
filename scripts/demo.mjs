// `npm run demo`: a local three-node cluster (temp data directories, free ports), a writer,
// a catch-up subscriber and a persistent subscription consumer (examples/src/failover.ts),
// and a SIGKILL of the leader halfway
// through. Prints the client's events and the progress as they happen, then a summary, and
// cleans up. Exits 0 when nothing was lost or delivered twice.
// `npm run demo -- --events 1000 --interval 5` changes the workload.
import { run } from "../examples/dist/failover.js";
import { startCluster } from "../packages/testing/dist/index.js";

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 0) {
    console.error(`--${name} needs a non-negative integer`);
    process.exit(2);
  }
  return value;
}
const events = option("events", 400);
const intervalMs = option("interval", 10);

console.log("Starting a local three-node cluster...");
const cluster = await startCluster({ size: 3 });
let stopping;
const stop = () => (stopping ??= cluster.stop());
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    console.log(`\n${signal}: stopping the cluster`);
    void stop().then(() => process.exit(130));
  });
}

try {
  const leader = await cluster.leader({ timeoutMs: 30_000 });
  cluster.nodes.forEach((node, i) =>
    console.log(
      `  node ${i + 1}: native ${node.extTcp.host}:${node.extTcp.port}, HTTP ${node.httpEndpoint}` +
        (i === leader ? "  (leader)" : ""),
    ),
  );
  console.log(`  connection string: ${cluster.connectionString}\n`);
  console.log(
    `Writing ${events} events (one at a time, ${intervalMs} ms apart) while a catch-up ` +
      `subscription reads them and a persistent subscription consumer handles them; ` +
      `the leader is killed halfway.\n`,
  );
  const summary = await run(cluster.connectionString, (line) => console.log(line), {
    events,
    intervalMs,
    halfway: async (node) => {
      const index = cluster.nodes.findIndex((n) => n.extTcp.port === node?.externalTcp?.port);
      if (index < 0) {
        console.log("         halfway: the client is not connected to a known node; no kill");
        return;
      }
      console.log(
        `         halfway: SIGKILL of the leader, node ${index + 1} (pid ${cluster.nodes[index].pid})`,
      );
      await cluster.kill(index);
    },
  });
  console.log(
    `\nSummary: written ${summary.written}, received ${summary.received}, lost ${summary.lost}, ` +
      `duplicates ${summary.duplicates}; persistent consumer handled ${summary.handled}, ` +
      `twice ${summary.handledTwice}; longest write gap ${summary.maxWriteGapMs} ms.`,
  );
  process.exitCode =
    summary.lost === 0 &&
    summary.duplicates === 0 &&
    summary.outOfOrder === 0 &&
    summary.handled === summary.written &&
    summary.handledTwice === 0
      ? 0
      : 1;
} catch (err) {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await stop();
}
