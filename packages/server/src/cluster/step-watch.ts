/**
 * Watches a node's chain of cluster steps (node-role.ts, enqueueStep) from its tick timer.
 * Every input waits behind the step at the head of the chain, ticks included, so a step that
 * never ended would leave the node deaf (no replies, no elections) with nothing in its log to
 * say why. The timer asks `check` on every tick; it answers "slow" once when the same step
 * has been at the head for `warnMs`, and "finished" when that step ends.
 */
export type StepWatchReport = { readonly kind: "slow" | "finished"; readonly runningMs: number };

export class StepWatch {
  #done = 0;
  #sinceMs = 0;
  #warned = false;

  constructor(private readonly warnMs: number) {}

  /** `pending`: steps queued or running; `done`: steps finished so far (it only grows). */
  check(nowMs: number, pending: number, done: number): StepWatchReport | undefined {
    if (pending === 0 || done !== this.#done) {
      const finished = this.#warned
        ? ({ kind: "finished", runningMs: nowMs - this.#sinceMs } as const)
        : undefined;
      this.#done = done;
      this.#sinceMs = nowMs;
      this.#warned = false;
      return finished;
    }
    if (this.#warned || nowMs - this.#sinceMs < this.warnMs) return undefined;
    this.#warned = true;
    return { kind: "slow", runningMs: nowMs - this.#sinceMs };
  }
}
