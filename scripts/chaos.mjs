// `npm run chaos -- --minutes N`: the deterministic cluster simulation over as many seeds
// as fit in N minutes (default 5), for 3 and 5 voters with a learner, longer chaos phases
// than `npm test` runs. Prints progress and stops at the first failure with its seed.
// `npm run chaos -- --real --minutes N [--seed S]`: the real-process nemesis soak instead
// (test/src/chaos/main.ts, built to test/dist/chaos/).
const args = process.argv.slice(2);
if (args.includes("--real")) {
  const { main } = await import("../test/dist/chaos/main.js");
  process.exit(await main(args.filter((a) => a !== "--real")));
}
const { simulate, SimulationFailure } =
  await import("../packages/server/dist/cluster/sim/simulation.js");

let minutes = 5;
let replaySeed;
let replayVoters = 3;
for (let i = 0; i < args.length; i++) {
  const [name, inline] = args[i].split("=", 2);
  if (name === "--minutes") minutes = Number(inline ?? args[++i]);
  else if (name === "--seed") replaySeed = Number(inline ?? args[++i]);
  else if (name === "--voters") replayVoters = Number(inline ?? args[++i]);
  else {
    process.stderr.write(
      `chaos: unknown option ${args[i]} (known: --minutes N, --seed N --voters 3|5 to replay, --real for the real-process soak)\n`,
    );
    process.exit(2);
  }
}
const CHAOS_MS = 20_000;
if (replaySeed !== undefined) {
  const r = simulate({ seed: replaySeed, voters: replayVoters, learners: 1, chaosMs: CHAOS_MS });
  process.stdout.write(
    `chaos: seed ${replaySeed} with ${replayVoters} voters passed: ${JSON.stringify(r)}\n`,
  );
  process.exit(0);
}
if (!(minutes > 0)) {
  process.stderr.write("chaos: --minutes takes a positive number\n");
  process.exit(2);
}

const deadline = Date.now() + minutes * 60_000;
// Start where `npm test` stops (seeds 1-200), at a point that differs from run to run.
let seed = 1_000 + Math.floor(Math.random() * 1_000_000);
let runs = 0;
let acknowledged = 0;
let lastReport = Date.now();
process.stdout.write(`chaos: ${minutes} min, seeds from ${seed}\n`);
while (Date.now() < deadline) {
  for (const voters of [3, 5]) {
    try {
      const r = simulate({ seed, voters, learners: 1, chaosMs: CHAOS_MS });
      acknowledged += r.acknowledged;
      runs++;
    } catch (err) {
      if (err instanceof SimulationFailure) {
        process.stdout.write(
          `chaos: FAILED with ${voters} voters\n${err.message}\n` +
            `replay exactly: npm run chaos -- --seed ${seed} --voters ${voters}\n`,
        );
        process.exit(1);
      }
      throw err;
    }
  }
  seed++;
  if (Date.now() - lastReport > 10_000) {
    lastReport = Date.now();
    process.stdout.write(
      `chaos: ${runs} runs, ${acknowledged} acknowledged writes checked, seed ${seed}\n`,
    );
  }
}
process.stdout.write(`chaos: ${runs} runs passed, ${acknowledged} acknowledged writes checked\n`);
