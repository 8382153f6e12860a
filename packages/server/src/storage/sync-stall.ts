/**
 * Test hook: an injected fdatasync stall, for tests of what a slow disk does to a node.
 *
 * Off unless the process runs with CHORUS_TEST_SYNC_STALL=1 (tests set it; nothing else
 * should). Then, while the file `sync-stall-ms` in a disk log's directory holds a number N,
 * each sync of that log takes N ms longer: an inline sync blocks the thread for N ms first,
 * as a stalled fdatasync would; a thread-pool sync waits N ms before it starts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

export const SYNC_STALL_ENABLED = process.env["CHORUS_TEST_SYNC_STALL"] === "1";
export const SYNC_STALL_FILE = "sync-stall-ms";

/** The stall the test asks for in `dir`, in ms (0: none). */
export function injectedSyncStallMs(dir: string): number {
  if (!SYNC_STALL_ENABLED) return 0;
  try {
    const ms = Number(readFileSync(join(dir, SYNC_STALL_FILE), "utf8").trim());
    return Number.isFinite(ms) && ms > 0 ? ms : 0;
  } catch {
    return 0;
  }
}

/** Stalls one sync of the log in `dir` as asked: blocking the thread when `inline`. */
export async function injectSyncStall(dir: string, inline: boolean): Promise<void> {
  const ms = injectedSyncStallMs(dir);
  if (ms === 0) return;
  if (inline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  else await delay(ms);
}
