/**
 * One of the group's own streams (acks, checkpoint, parked), which only the server serving the
 * group writes. Each append expects the revision this group last read or wrote there, so a
 * write by anyone else is seen instead of built upon: in the shared-database mode, a lock
 * holder that has not yet noticed losing its lock may still be running the group on another
 * instance. Appends are made one at a time, in call order, so the group's own writes never
 * race each other for a revision.
 */
import type { NewEvent, StreamStore } from "../streams/types.js";
import { GroupFencedError } from "./errors.js";

export class OwnStream {
  /** The last revision this group knows of; -1: the stream has no readable event (absent or deleted). */
  #last = -1;
  #turn: Promise<unknown> = Promise.resolve();

  constructor(readonly streamId: string) {}

  get last(): number {
    return this.#last;
  }

  /** Resolves once every append called so far has finished (succeeded or not). */
  idle(): Promise<void> {
    return this.#turn.then(() => undefined);
  }

  /** What loading read: the stream's last revision (-1: none). */
  loaded(last: number): void {
    this.#last = last;
  }

  /**
   * Appends `events` after every append called before; `written` runs with the revision of
   * the last one before any later append starts. Throws GroupFencedError when the stream has
   * moved past what this group knows: someone else wrote it.
   */
  append(
    store: StreamStore,
    events: NewEvent[],
    written?: (revision: number) => void,
  ): Promise<number> {
    const run = async (): Promise<number> => {
      const expected =
        this.#last < 0
          ? { kind: "no_stream" as const }
          : { kind: "exact" as const, revision: this.#last };
      const result = await store.append(this.streamId, expected, events);
      if (!result.ok) {
        const { streamExists, actualRevision } = result.wrongExpectedVersion;
        throw new GroupFencedError(this.streamId, this.#last, streamExists ? actualRevision : -1);
      }
      this.#last = result.nextExpectedVersion;
      written?.(result.nextExpectedVersion);
      return result.nextExpectedVersion;
    };
    const next = this.#turn.then(run, run);
    this.#turn = next.catch(() => undefined);
    return next;
  }
}
