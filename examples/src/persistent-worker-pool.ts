/**
 * A worker pool on a persistent subscription: jobs are events in one stream, and a group of
 * competing consumers shares them out. The server keeps the group's position (durably,
 * through restarts and leader changes), hands each job to one worker at a time within the
 * worker's buffer, and delivers again the jobs a worker gives back.
 *
 * Each worker acknowledges a job once it is done, without waiting for the server to confirm
 * the ack (`void sub.ack(e)`: acks are batched, sent again after a reconnect, and never
 * leave an unhandled rejection). A failed job is given back with nack "retry" and comes
 * again with a higher retryCount; once retryCount reaches the limit it is parked (kept in
 * the group's parked stream, where `replayParked` can offer it again). `startWorkerPool`
 * runs the workers and stops them cleanly; aggregate-pinned.ts uses it too.
 *
 *   npm start                                      # in one terminal: a local cluster
 *   node examples/dist/persistent-worker-pool.js   # in another; Ctrl-C stops it early
 *
 * CHORUS_URL overrides the connection string, WORKERS the number of workers (3), JOBS the
 * number of jobs appended first (100) and STOP_AFTER the number of jobs to finish (acked or
 * parked) before exiting (default JOBS; 0: until Ctrl-C).
 */
import {
  ChorusClient,
  PersistentSubscriptionExistsError,
  jsonEvent,
  type PersistentEvent,
  type PersistentSubscription,
} from "@chorus/client";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";

/** A job: the default handler fails it on its first `failures` attempts. */
export interface Job {
  n: number;
  failures: number;
}

export interface WorkerPoolOptions {
  connectionString: string;
  /** The stream of jobs. Default "jobs". */
  stream?: string;
  /** The group's name. Default "workers". */
  group?: string;
  /** Default 3. */
  workers?: number;
  /** Jobs a worker may hold (delivered, not yet acknowledged). Default 10. */
  bufferSize?: number;
  /** Jobs appended to the stream before the workers start. Default 100. */
  jobs?: number;
  /** Exit after this many jobs are finished (acked or parked); 0: only on `signal`. Default `jobs`. */
  stopAfter?: number;
  /** Park a job that fails when its retryCount has reached this. Default 3. */
  retryLimit?: number;
  /** The work; throw to fail the job. Default: a few ms of "work", failing as the job says. */
  handle?: (job: Job, event: PersistentEvent, worker: string) => Promise<void>;
  /** Stops the pool (SIGINT when run from the command line). */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** One attempt at a job. */
export interface Attempt {
  worker: string;
  /** The job event's revision in the stream. */
  revision: number;
  n: number;
  retryCount: number;
  outcome: "acked" | "retry" | "parked";
}

export interface WorkerPoolSummary {
  attempts: Attempt[];
  /** Jobs acknowledged, per worker. */
  acked: Record<string, number>;
  retried: number;
  parked: number;
}

/** The jobs appended: every 10th fails once, every 40th (from 17) always fails. */
function makeJob(n: number): Job {
  return { n, failures: n % 40 === 17 ? 1_000 : n % 10 === 3 ? 1 : 0 };
}

async function defaultHandle(job: Job, event: PersistentEvent): Promise<void> {
  await sleep(1 + (job.n % 5));
  if (event.retryCount < job.failures)
    throw new Error(`job ${job.n} failed on attempt ${event.retryCount + 1}`);
}

export interface PoolWorker {
  /** Its consumer name, `worker-<i>`. */
  readonly name: string;
  readonly sub: PersistentSubscription;
}

export interface WorkerPool {
  readonly workers: readonly PoolWorker[];
  /**
   * Stops taking events. A worker in the middle of one finishes it (and sends its ack or
   * nack), then leaves the group; an idle worker leaves now. Leaving waits for the acks
   * sent to be confirmed; events a worker had not started go back to the group.
   */
  stop(): void;
  readonly stopping: boolean;
  /** Resolves once every worker has joined the group; rejects when one is dropped first or the time is up. */
  joined(timeoutMs: number): Promise<void>;
  /** Resolves once every worker has left; rejects with the first error a worker ended with. */
  readonly finished: Promise<void>;
}

export interface StartWorkerPoolOptions {
  /** The group's source: a stream, or "$all". */
  stream: string;
  group: string;
  workers: number;
  bufferSize: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** Resolves when the consumer has joined its group; rejects when it is dropped or the deadline passes. */
function joined(sub: PersistentSubscription, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      sub.off("confirmed", onConfirmed);
      sub.off("dropped", done);
      if (err) reject(err);
      else resolve();
    };
    const onConfirmed = () => done();
    const timer = setTimeout(
      () => done(new Error(`not joined group "${sub.group}" within ${timeoutMs} ms`)),
      timeoutMs,
    );
    sub.once("confirmed", onConfirmed);
    sub.once("dropped", done);
  });
}

/**
 * Joins `workers` consumers to a group and hands each event to `handle`, one at a time per
 * worker. `handle` acks or nacks the event (through `worker.sub`); an error it throws stops
 * the pool.
 */
export function startWorkerPool(
  client: ChorusClient,
  options: StartWorkerPoolOptions,
  handle: (worker: PoolWorker, event: PersistentEvent) => Promise<void>,
): WorkerPool {
  const log = options.log ?? (() => undefined);
  const { signal } = options;
  let stopping = false;
  let failure: Error | undefined;
  const workers = Array.from({ length: options.workers }, (_, i) => {
    const name = `worker-${i + 1}`;
    const sub = client.persistentSubscriptions.subscribe(options.stream, options.group, {
      bufferSize: options.bufferSize,
      consumerName: name,
    });
    sub.on("confirmed", () => log(`${name}: joined the group`));
    sub.on("reconnecting", (reason) => log(`${name}: reconnecting (${reason.message})`));
    sub.on("resubscribed", () => log(`${name}: joined again`));
    sub.on("dropped", (err) => log(`${name}: dropped: ${err.message}`));
    /** busy: between taking an event and giving its ack or nack. */
    return { name, sub, busy: false };
  });

  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const w of workers) if (!w.busy) void w.sub.unsubscribe();
  };

  const work = async (w: (typeof workers)[number]): Promise<void> => {
    for await (const e of w.sub) {
      if (stopping) break; // leaving gives this event back to the group
      w.busy = true;
      try {
        await handle(w, e);
      } finally {
        w.busy = false;
      }
      if (stopping) break; // leaving the loop leaves the group
    }
  };

  signal?.addEventListener("abort", stop, { once: true });
  if (signal?.aborted) stop();
  const finished = Promise.all(
    workers.map((w) =>
      work(w).catch((err: unknown) => {
        failure ??= err instanceof Error ? err : new Error(String(err));
        stop();
      }),
    ),
  ).then(() => {
    signal?.removeEventListener("abort", stop);
    if (failure) throw failure;
  });
  finished.catch(() => undefined); // the caller may not get to await it
  return {
    workers,
    stop,
    get stopping() {
      return stopping;
    },
    joined: (timeoutMs) =>
      Promise.all(workers.map((w) => joined(w.sub, timeoutMs))).then(() => undefined),
    finished,
  };
}

export async function main(options: WorkerPoolOptions): Promise<WorkerPoolSummary> {
  const stream = options.stream ?? "jobs";
  const group = options.group ?? "workers";
  const jobs = options.jobs ?? 100;
  const stopAfter = options.stopAfter ?? jobs;
  const retryLimit = options.retryLimit ?? 3;
  const handle = options.handle ?? defaultHandle;
  const log = options.log ?? (() => undefined);

  const client = new ChorusClient(options.connectionString);
  const summary: WorkerPoolSummary = { attempts: [], acked: {}, retried: 0, parked: 0 };
  let finished = 0;
  let pool: WorkerPool | undefined;

  const onJob = async (w: PoolWorker, e: PersistentEvent): Promise<void> => {
    const job = e.event.data as Job;
    const attempt = (outcome: Attempt["outcome"]) =>
      summary.attempts.push({
        worker: w.name,
        revision: Number(e.event.revision),
        n: job.n,
        retryCount: e.retryCount,
        outcome,
      });
    try {
      await handle(job, e, w.name);
      void w.sub.ack(e); // not awaited: the next job starts while the ack is made durable
      attempt("acked");
      summary.acked[w.name] = (summary.acked[w.name] ?? 0) + 1;
      finished++;
    } catch (err) {
      if (e.retryCount >= retryLimit) {
        void w.sub.nack("park", String(err), e);
        attempt("parked");
        summary.parked++;
        finished++;
        log(`${w.name}: parked job ${job.n} after ${e.retryCount + 1} attempts: ${String(err)}`);
      } else {
        void w.sub.nack("retry", String(err), e); // comes again, retryCount + 1
        attempt("retry");
        summary.retried++;
      }
    }
    if (stopAfter > 0 && finished >= stopAfter) pool?.stop();
  };

  try {
    try {
      await client.persistentSubscriptions.create(stream, group, {
        consumerStrategy: "RoundRobin",
      });
      log(`created group "${group}" on "${stream}"`);
    } catch (err) {
      if (!(err instanceof PersistentSubscriptionExistsError)) throw err;
      log(`group "${group}" on "${stream}" exists already`);
    }
    pool = startWorkerPool(
      client,
      {
        stream,
        group,
        workers: options.workers ?? 3,
        bufferSize: options.bufferSize ?? 10,
        ...(options.signal && { signal: options.signal }),
        log,
      },
      onJob,
    );
    if (jobs > 0 && !pool.stopping) {
      await client.appendToStream(
        stream,
        Array.from({ length: jobs }, (_, n) => jsonEvent({ type: "Job", data: makeJob(n) })),
      );
      log(`appended ${jobs} jobs to "${stream}"`);
    }
    await pool.finished;
  } finally {
    await client.close(); // leaves the group (after the acks are confirmed) if still in it
  }
  const perWorker = Object.entries(summary.acked)
    .map(([name, count]) => `${name} ${count}`)
    .join(", ");
  log(
    `done: finished ${finished} jobs (acked: ${perWorker || "none"}), retried ${summary.retried}, parked ${summary.parked}`,
  );
  return summary;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const controller = new AbortController();
  process.once("SIGINT", () => {
    console.log("SIGINT: finishing the jobs in hand, then leaving the group");
    controller.abort();
  });
  const jobs = Number(process.env.JOBS ?? 100);
  await main({
    connectionString:
      process.env.CHORUS_URL ??
      "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false",
    workers: Number(process.env.WORKERS ?? 3),
    jobs,
    stopAfter: Number(process.env.STOP_AFTER ?? jobs),
    signal: controller.signal,
    log: (line) => console.log(line),
  });
}
