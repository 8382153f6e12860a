import { describe, expect, it } from "vitest";
import { SimulationFailure, simulate, type SimOptions, type SimResult } from "./simulation.js";

/** CHORUS_SIM_SEED=n replays one seed; CHORUS_SIM_SEEDS=N sets how many run (default 200). */
function seeds(): number[] {
  const one = process.env.CHORUS_SIM_SEED;
  if (one !== undefined && one !== "") return [Number(one)];
  const count = Number(process.env.CHORUS_SIM_SEEDS ?? 200);
  return Array.from({ length: count }, (_, i) => i + 1);
}

function runSeeds(base: Omit<SimOptions, "seed">): SimResult[] {
  return seeds().map((seed) => simulate({ ...base, seed }));
}

/** The first failure over `count` seeds, if any. */
function firstFailure(
  base: Omit<SimOptions, "seed">,
  count: number,
): SimulationFailure | undefined {
  for (let seed = 1; seed <= count; seed++) {
    try {
      simulate({ ...base, seed });
    } catch (err) {
      if (err instanceof SimulationFailure) return err;
      throw err;
    }
  }
  return undefined;
}

describe("cluster simulation", () => {
  it.for([3, 5])(
    "%i voters + 1 learner under loss, reordering, partitions, crashes",
    async (voters, { annotate }) => {
      const results = runSeeds({ voters, learners: 1 });
      const acked = results.reduce((n, r) => n + r.acknowledged, 0);
      const crashes = results.reduce((n, r) => n + r.crashes, 0);
      const epochs = results.reduce((n, r) => n + r.epochs, 0);
      expect(acked).toBeGreaterThan(results.length * 10);
      expect(crashes).toBeGreaterThan(results.length); // faults really happen
      await annotate(
        `${results.length} seeds: ${acked} acknowledged writes, ${crashes} crashes, ${epochs} epochs`,
      );
    },
  );

  it.for([3, 5])(
    "%i voters + 1 learner, some restarts losing the node's whole memory (in-memory nodes)",
    async (voters, { annotate }) => {
      const results = runSeeds({ voters, learners: 1, memoryLoss: true });
      const acked = results.reduce((n, r) => n + r.acknowledged, 0);
      expect(acked).toBeGreaterThan(results.length * 10);
      await annotate(`${results.length} seeds: ${acked} acknowledged writes`);
    },
  );

  it("is deterministic per seed", () => {
    const a = simulate({ seed: 42, voters: 5, learners: 1 });
    const b = simulate({ seed: 42, voters: 5, learners: 1 });
    expect(a).toEqual(b);
  });

  it("fails over within the election timeout after a leader crash (500-1000 ms, heartbeat 50 ms)", async ({
    annotate,
  }) => {
    const gaps = Array.from({ length: 60 }, (_, i) =>
      simulate({ seed: i + 1, voters: 3, scenario: "failover" }),
    ).map((r) => r.failoverMs ?? Number.POSITIVE_INFINITY);
    gaps.sort((a, b) => a - b);
    const median = gaps[gaps.length >> 1] ?? 0;
    expect(median).toBeGreaterThanOrEqual(450); // followers must wait out the lease
    expect(median).toBeLessThan(1_000);
    expect(gaps.at(-1)).toBeLessThan(2_000);
    await annotate(`failover median ${median} ms, min ${gaps[0]} ms, max ${gaps.at(-1)} ms`);
  });
});

describe("the simulation's checkers can fail", () => {
  it("catches two leaders in one epoch when voters may vote twice", () => {
    const failure = firstFailure(
      { voters: 3, learners: 1, testingBrokenVoteRule: "vote-twice" },
      200,
    );
    expect(failure?.message).toMatch(/two leaders in epoch/);
    expect(failure?.message).toMatch(/^simulation failed for seed \d+/);
    expect(failure?.message).toContain(`CHORUS_SIM_SEED=${failure?.seed} npx vitest run`);
    // The failing seed replays to the same failure.
    expect(() =>
      simulate({
        seed: failure!.seed,
        voters: 3,
        learners: 1,
        testingBrokenVoteRule: "vote-twice",
      }),
    ).toThrow(failure!.reason);
  });

  it("catches lost committed writes when a node that lost its memory votes at once", () => {
    const failure = firstFailure(
      { voters: 3, learners: 1, memoryLoss: true, testingIgnoreAmnesia: true },
      200,
    );
    expect(failure).toBeInstanceOf(SimulationFailure);
    expect(failure?.reason).toMatch(/committed|truncate|two leaders/);
  });

  it("catches lost committed writes when votes ignore the election restriction", () => {
    const failure = firstFailure(
      { voters: 3, learners: 1, testingBrokenVoteRule: "ignore-log" },
      200,
    );
    expect(failure).toBeInstanceOf(SimulationFailure);
    expect(failure?.reason).toMatch(/committed|truncate/);
  });
});
