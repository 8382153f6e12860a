/**
 * What the differential tests (differential.int.test.ts, persistent-differential.int.test.ts)
 * share: which seeds and how many operations a run takes, and answers that hold errors.
 */

/**
 * The seeds and operations of a run: two fixed seeds of `defaultOps` operations, or one seed
 * CHORUS_DIFF_SEED of CHORUS_DIFF_OPS operations (to run one longer, or again).
 */
export function differentialRun(defaultOps: number): { seeds: number[]; ops: number } {
  const seed = process.env.CHORUS_DIFF_SEED;
  return {
    seeds: seed ? [Number(seed)] : [20261206, 99],
    ops: Number(process.env.CHORUS_DIFF_OPS ?? defaultOps),
  };
}

/** `run`'s answer, or the error it threw as `errorOutcome` describes it (which throws the rest). */
export async function outcomeOf(
  run: () => Promise<unknown>,
  errorOutcome: (err: unknown) => unknown,
): Promise<unknown> {
  try {
    return await run();
  } catch (err) {
    return errorOutcome(err);
  }
}
