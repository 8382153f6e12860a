/**
 * A bound on the page reads a node runs at once for its clients, all connections together.
 *
 * A page is up to READ_PAGE_BYTES (4 MiB) of events, held while it is read and while its
 * answer is built. Each connection alone is bounded (four native reads at a time, one HTTP
 * request at a time), but nothing bounded them together: 300 HTTP clients that each asked
 * for a page at once had a disk node hold 2.7 GB, and every page took longer for it.
 *
 * Reads past READS_AT_ONCE wait for their turn, in the order they came: clients, catch-up
 * subscriptions and persistent groups alike. A waiting read holds nothing but its place.
 * On two cores sixteen reads at a time keep the processors and the disk busy; more add
 * memory, not speed (300 such readers: a peak of about 400 MiB and 29 s to answer all,
 * against 2.8 GB and 48 s without the bound). Live subscribers' reads take their turn too:
 * with 40 subscriptions catching up at once, a live one's delivery took as long with the
 * bound as without (the node's processors are what they all wait for).
 */
import { ForwardingStore } from "../streams/forwarding-store.js";
import type {
  ReadAllOptions,
  ReadAllResult,
  ReadStreamOptions,
  ReadStreamResult,
  StreamStore,
} from "../streams/types.js";

/** Page reads a node runs at once; the rest wait for their turn. */
export const READS_AT_ONCE = 16;

/** A counting gate: at most `limit` reads run at once, the others wait in order. */
export class ReadGate {
  #running = 0;
  /** Waiting reads, oldest first, from `#head` on. */
  #waiting: Array<() => void> = [];
  #head = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`a read gate needs a limit of at least 1, got ${limit}`);
  }

  /** Reads running now. */
  get running(): number {
    return this.#running;
  }

  /** Reads waiting for their turn now. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  /** Runs `read` once fewer than `limit` reads run, after those that came before it. */
  async run<T>(read: () => Promise<T>): Promise<T> {
    // Reads wait only while all turns are taken: one that ends hands its turn to the oldest
    // waiting read (#release), so #running stays counted and no newcomer overtakes it.
    if (this.#running < this.limit) this.#running++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await read();
    } finally {
      this.#release();
    }
  }

  #release(): void {
    if (this.#head < this.#waiting.length) {
      const next = this.#waiting[this.#head]!;
      this.#head++;
      if (this.#head >= 1024 && this.#head * 2 >= this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      next();
      return;
    }
    this.#running--;
  }
}

/** `inner`, with its stream and `$all` reads taken through `gate`; all else goes straight on. */
export class GatedReadsStore extends ForwardingStore {
  constructor(
    inner: StreamStore,
    private readonly gate: ReadGate,
  ) {
    super(inner);
  }

  override readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult> {
    return this.gate.run(() => this.inner.readStream(streamId, options));
  }

  override readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    return this.gate.run(() => this.inner.readAll(options));
  }
}
