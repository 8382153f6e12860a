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
import {
  ReaderGone,
  type ReadAllOptions,
  type ReadAllResult,
  type ReadStreamOptions,
  type ReadStreamResult,
  type StreamStore,
} from "../streams/types.js";

/** Page reads a node runs at once; the rest wait for their turn. */
export const READS_AT_ONCE = 16;

/** A read waiting for its turn. */
interface Waiter {
  readonly start: () => void;
  /** Its caller left while it waited: it is skipped when its turn comes. */
  gone: boolean;
}

/**
 * A counting gate: at most `limit` reads run at once, the others wait in order. A waiting read
 * whose caller leaves (its signal aborts) gives up its place: a connection that closes, or a
 * subscription that ends, leaves no read behind for the node to serve to nobody.
 */
export class ReadGate {
  #running = 0;
  /** Waiting reads, oldest first, from `#head` on; `#gone` of them were abandoned. */
  #waiting: Waiter[] = [];
  #head = 0;
  #gone = 0;

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
    return this.#waiting.length - this.#head - this.#gone;
  }

  /**
   * Runs `read` once fewer than `limit` reads run, after those that came before it. When
   * `signal` aborts before the read starts, it never starts: the promise rejects with the
   * signal's reason. A read that has started runs to its end.
   */
  async run<T>(read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    // Reads wait only while all turns are taken: one that ends hands its turn to the oldest
    // waiting read (#release), so #running stays counted and no newcomer overtakes it.
    if (this.#running < this.limit) this.#running++;
    else await this.#turn(signal);
    try {
      return await read();
    } finally {
      this.#release();
    }
  }

  #turn(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        waiter.gone = true;
        this.#gone++;
        const reason: unknown = signal!.reason;
        reject(reason instanceof Error ? reason : new ReaderGone("the reader left"));
      };
      const waiter: Waiter = {
        start: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        gone: false,
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #release(): void {
    while (this.#head < this.#waiting.length) {
      const next = this.#waiting[this.#head]!;
      this.#head++;
      if (this.#head >= 1024 && this.#head * 2 >= this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      if (next.gone) {
        this.#gone--;
        continue;
      }
      next.start();
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
    return this.gate.run(() => this.inner.readStream(streamId, options), options.signal);
  }

  override readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    return this.gate.run(() => this.inner.readAll(options), options.signal);
  }
}
