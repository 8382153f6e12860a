/**
 * How the two ends of an in-process connection hand work to each other. A microtask is the
 * cheapest hop, but a loop of in-process calls that never waits for I/O (appends to an
 * in-memory node, each awaited) would then run as one chain of microtasks: no timer, socket or
 * setImmediate callback of the whole process would run until it ends, subscriptions included.
 * So work goes in a microtask while the current stretch of microtask-only work is younger than
 * SLICE_MS, and on the next turn of the event loop (setImmediate) after that: the process gets
 * a turn at least every SLICE_MS, and the fast path stays a microtask.
 */
import { performance } from "node:perf_hooks";

/** The longest stretch of in-process hand-overs before the event loop gets a turn. */
export const SLICE_MS = 2;

let sliceStart = 0;
/** A slice is open until the next check phase of the event loop ends it. */
let sliceOpen = false;

function endSlice(): void {
  sliceOpen = false;
}

/** Runs `fn` soon: in a microtask, or on the next turn once the slice has run SLICE_MS. */
export function handOver(fn: () => void): void {
  const now = performance.now();
  if (!sliceOpen) {
    sliceOpen = true;
    sliceStart = now;
    setImmediate(endSlice);
  }
  if (now - sliceStart < SLICE_MS) queueMicrotask(fn);
  else setImmediate(fn);
}
