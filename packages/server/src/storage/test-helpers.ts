/** Helpers shared by the storage tests (not part of the runtime). */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StoreError, type NewEvent, type StreamStore, type WriteResult } from "../streams/types.js";
import type { Logger } from "./index.js";

export function newEvent(
  data: unknown = { n: 1 },
  type = "Test",
  id: string = randomUUID(),
): NewEvent {
  return {
    id,
    type,
    isJson: true,
    data: Buffer.from(JSON.stringify(data), "utf8"),
    metadata: new Uint8Array(0),
  };
}

export function events(n: number, from = 0): NewEvent[] {
  return Array.from({ length: n }, (_, i) => newEvent({ n: from + i }));
}

export function dataOf(e: { data: Uint8Array }): unknown {
  return JSON.parse(Buffer.from(e.data).toString("utf8"));
}

export function okResult(r: WriteResult): { nextExpectedVersion: number; position: number } {
  if (!r.ok)
    throw new Error(
      `expected success, got wrong expected version ${JSON.stringify(r.wrongExpectedVersion)}`,
    );
  return r;
}

export async function tempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "chorus-storage-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Appends n single-event appends to a stream, sequentially. */
export async function appendN(store: StreamStore, stream: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++)
    okResult(await store.append(stream, { kind: "any" }, [newEvent({ n: i })]));
}

/** A logger that keeps its warnings' messages. */
export function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    debug: () => undefined,
    info: () => undefined,
    warn: (_obj, msg) => warnings.push(msg ?? ""),
    error: () => undefined,
  };
}

/** The StoreError a store's open() fails with (a store that opens is aborted, and it throws). */
export async function openError(
  store: StreamStore & { abort?: () => Promise<void> },
): Promise<StoreError> {
  try {
    await store.open();
  } catch (err) {
    if (err instanceof StoreError) return err;
    throw err;
  }
  await store.abort?.();
  throw new Error("open succeeded");
}

/** Deletes a disk store's index (derived data: the next open rebuilds it from the log). */
export async function removeIndex(dir: string): Promise<void> {
  await rm(join(dir, "index.mdb"), { force: true });
  await rm(join(dir, "index.mdb-lock"), { force: true });
  await rm(join(dir, "index-ids"), { recursive: true, force: true });
}

/** Polls `predicate` every few milliseconds until it holds, or fails after `timeoutMs`. */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
