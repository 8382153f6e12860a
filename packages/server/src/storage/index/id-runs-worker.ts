/**
 * The thread that writes and merges id runs for one `IdRuns` (see there): sorting, encoding,
 * checksumming and merging are most of the index's CPU, and here they leave the event loop
 * that serves requests alone.
 *
 * The thread runs at a lower scheduling priority (nice +10, for this thread only): on a busy
 * machine its background work waits for the cores the request path does not need, instead of
 * adding to every request's wait for a core.
 */
import { setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import {
  IdRunsCorruptError,
  mergeRuns,
  RunBuffers,
  writeRun,
  type RunFile,
  type WrittenRun,
} from "./id-run-format.js";

/** The work the owner hands over: a run to write, or runs to merge. */
export type RunsJob =
  | { op: "write"; dir: string; id: number; count: number; entries: ArrayBuffer }
  | { op: "merge"; dir: string; id: number; inputs: RunFile[] };

/** What the owner sends: a job under its number, or a stop for the merge of that number. */
export type RunsRequest = (RunsJob & { seq: number }) | { op: "stop"; seq: number };

/** What the thread answers: the run written, or none (a stopped merge, or an error). */
export interface RunsReply {
  seq: number;
  run?: WrittenRun;
  /** A write hands its entries buffer back, for the next write. */
  entries?: ArrayBuffer;
  error?: { message: string; corrupt: boolean };
}

/** How much lower than the process this thread runs (a nice value). */
export const WORKER_NICE = 10;

const port = parentPort;
if (port === null) throw new Error("id-runs-worker.js runs as a worker thread");
try {
  setPriority(0, WORKER_NICE); // Linux: this thread only
} catch {
  // Not permitted or not supported here: the thread runs at the process's priority.
}

const writeBufs = new RunBuffers();
const mergeBufs = new RunBuffers();
/** One write and one merge at a time each; a write may run while a merge does. */
let writes: Promise<unknown> = Promise.resolve();
let merges: Promise<unknown> = Promise.resolve();
/** Merges queued or running, by their request's seq; and those of them asked to stop. */
const mergesOpen = new Set<number>();
const stops = new Set<number>();

function fail(seq: number, err: unknown): RunsReply {
  const message = err instanceof Error ? err.message : String(err);
  return { seq, error: { message, corrupt: err instanceof IdRunsCorruptError } };
}

/** The buffers of a reply's run, moved to the owner rather than copied (large for big runs). */
function tailOf(reply: RunsReply): ArrayBuffer[] {
  const run = reply.run;
  if (run === undefined) return [];
  return [run.filterBits.buffer as ArrayBuffer, run.fences, run.blockCrcs.buffer as ArrayBuffer];
}

port.on("message", (req: RunsRequest) => {
  if (req.op === "stop") {
    if (mergesOpen.has(req.seq)) stops.add(req.seq); // a stop for a finished merge is moot
    return;
  }
  if (req.op === "write") {
    writes = writes.then(async () => {
      const entries = Buffer.from(req.entries);
      let reply: RunsReply;
      try {
        reply = {
          seq: req.seq,
          run: await writeRun(req.dir, req.id, entries, req.count, writeBufs),
        };
      } catch (err) {
        reply = fail(req.seq, err);
      }
      port.postMessage({ ...reply, entries: req.entries }, [req.entries, ...tailOf(reply)]);
    });
    return;
  }
  mergesOpen.add(req.seq);
  merges = merges.then(async () => {
    let reply: RunsReply = { seq: req.seq };
    try {
      const run = stops.has(req.seq)
        ? undefined
        : await mergeRuns(req.dir, req.id, req.inputs, mergeBufs, () => stops.has(req.seq));
      if (run !== undefined) reply = { seq: req.seq, run };
    } catch (err) {
      reply = fail(req.seq, err);
    }
    mergesOpen.delete(req.seq);
    stops.delete(req.seq);
    port.postMessage(reply, tailOf(reply));
  });
});
