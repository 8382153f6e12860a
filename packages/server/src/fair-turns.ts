/**
 * Turns of the event loop for work that may never wait for I/O. A microtask is the cheapest
 * hop, but a chain of them never lets the event loop run: no timer, socket or setImmediate
 * callback of the whole process runs until it ends. Two kinds of work make such chains:
 * - the two ends of an in-process connection handing work to each other (a loop of appends
 *   to an in-memory node, each awaited);
 * - a scan of the log served from memory (an in-memory log, or the disk log's tail kept in
 *   memory): a filtered read or a subscription's catch-up that matches nothing reads block
 *   after block, each an already-resolved promise.
 * Both share one slice: work goes on in microtasks while the current stretch of
 * microtask-only work is younger than SLICE_MS, and on the next turn of the event loop
 * (setImmediate) after that. The process gets a turn at least every SLICE_MS (heartbeats,
 * elections' timers, other clients' requests), and the fast path stays a microtask.
 */
import { performance } from "node:perf_hooks";

/** The longest stretch of microtask-only work before the event loop gets a turn. */
export const SLICE_MS = 2;

let sliceStart = 0;
/** A slice is open until the next check phase of the event loop ends it. */
let sliceOpen = false;

function endSlice(): void {
  sliceOpen = false;
}

/** How long the current slice has run (opening one if none is open). */
function sliceAgeMs(): number {
  const now = performance.now();
  if (!sliceOpen) {
    sliceOpen = true;
    sliceStart = now;
    setImmediate(endSlice);
  }
  return now - sliceStart;
}

/** Runs `fn` soon: in a microtask, or on the next turn once the slice has run SLICE_MS. */
export function handOver(fn: () => void): void {
  if (sliceAgeMs() < SLICE_MS) queueMicrotask(fn);
  else setImmediate(fn);
}

/**
 * For a loop that may not wait for I/O: undefined while the slice is young (go on), else a
 * promise of the next turn of the event loop, to await before going on.
 */
export function turnIfDue(): Promise<void> | undefined {
  if (sliceAgeMs() < SLICE_MS) return undefined;
  return new Promise<void>((resolve) => setImmediate(resolve));
}
