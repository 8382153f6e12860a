/** `chorus export` and `chorus import`: events to and from a JSON-lines file. */
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { once } from "node:events";
import { createInterface } from "node:readline";
import {
  StreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  type ChorusClient,
  type EventData,
  type ResolvedEvent,
  type StreamFilter,
} from "@chorus/client";
import { METADATA_EVENT_TYPE, isMetadataStream } from "@chorus/protocol";
import type { Context } from "../context.js";
import { CommandError, UsageError } from "../errors.js";
import { Progress } from "../progress.js";
import { RawJson, fromRecord, jsonLine, metadataForCopy, toRecord } from "../records.js";

/** Most events in one append of `import`. */
export const IMPORT_BATCH_EVENTS = 500;
/** Most data and metadata bytes in one append of `import` (the server's default limit is 1 MiB). */
export const IMPORT_BATCH_BYTES = 512 * 1024;

/**
 * What `export --all` reads of `$all`: every stream that is not a system stream, and the
 * metadata streams (`$$name`) of those, so that a stream's metadata (maxCount, maxAgeSec, keys of
 * the user's) comes along.
 */
export const EXPORT_ALL_FILTER: StreamFilter = Object.freeze({
  includeSystem: true,
  streamNameRegex: "^(?:[^$]|\\$\\$[^$])",
});

export interface ExportOptions {
  stream?: string;
  all?: boolean;
  out: string;
  json?: boolean;
}

/** Where the read ends now: the last revision (a stream) or position ($all), or undefined when empty. */
async function lastOf(
  ctx: Context,
  client: ChorusClient,
  stream: string | undefined,
): Promise<bigint | undefined> {
  const options = { direction: "backwards" as const, maxCount: 1, timeoutMs: ctx.timeoutMs };
  const events =
    stream === undefined
      ? client.readAll({ ...options, filter: EXPORT_ALL_FILTER })
      : client.readStream(stream, options);
  for await (const e of events) return stream === undefined ? e.event.position : e.event.revision;
  return undefined;
}

/** The latest `$metadata` event of `stream`'s metadata stream; undefined when it has none. */
async function metadataEventOf(
  ctx: Context,
  client: ChorusClient,
  stream: string,
): Promise<ResolvedEvent | undefined> {
  try {
    const events = client.readStream(`$$${stream}`, {
      direction: "backwards",
      timeoutMs: ctx.timeoutMs,
      decodeJson: false,
    });
    for await (const e of events) if (e.event.type === METADATA_EVENT_TYPE) return e;
  } catch (err) {
    if (err instanceof StreamNotFoundError || err instanceof StreamDeletedError) return undefined;
    throw err;
  }
  return undefined;
}

/** An event's export line: stream metadata without the keys that name revisions (records.ts). */
function exportLine(e: ResolvedEvent): string {
  const record = toRecord(e);
  if (
    isMetadataStream(e.event.streamId) &&
    e.event.type === METADATA_EVENT_TYPE &&
    record.data instanceof RawJson
  )
    record.data = new RawJson(metadataForCopy(record.data.text));
  return `${jsonLine(record)}\n`;
}

async function write(stream: WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream, "drain");
}

export async function exportEvents(ctx: Context, options: ExportOptions): Promise<void> {
  if ((options.stream === undefined) === (options.all !== true))
    throw new UsageError("export: give exactly one of --stream STREAM or --all");
  const stream = options.stream;
  const what = stream === undefined ? "$all" : stream;
  const toStdout = options.out === "-";
  const count = await ctx.withClient(async (client) => {
    // Before the file is touched: a stream that does not exist fails here.
    const last = await lastOf(ctx, client, stream);
    const progress = new Progress(ctx.io.stderr, `export ${what}`);
    // A stream's export starts with its metadata; `$all`'s holds the metadata streams.
    const metadata = stream === undefined ? undefined : await metadataEventOf(ctx, client, stream);
    const events: AsyncIterable<ResolvedEvent> | Iterable<ResolvedEvent> =
      last === undefined
        ? []
        : stream === undefined
          ? client.readAll({
              filter: EXPORT_ALL_FILTER,
              timeoutMs: ctx.timeoutMs,
              decodeJson: false,
            })
          : client.readStream(stream, { timeoutMs: ctx.timeoutMs, decodeJson: false });
    const temp = `${options.out}.${process.pid}.partial`;
    const file = toStdout ? undefined : createWriteStream(temp, { flags: "wx" });
    if (file) {
      try {
        await once(file, "open");
      } catch (err) {
        throw new CommandError(`cannot write ${options.out}: ${(err as Error).message}`);
      }
    }
    let n = 0;
    const emit = async (e: ResolvedEvent): Promise<void> => {
      const line = exportLine(e);
      if (file) await write(file, line);
      else await ctx.out.line(line.slice(0, -1));
      n++;
    };
    try {
      if (metadata !== undefined) await emit(metadata);
      for await (const e of events) {
        await emit(e);
        const done = stream === undefined ? e.event.position : e.event.revision;
        // With partitions a position is one group's: no share of the whole (count and rate).
        const share =
          stream === undefined && ctx.partitioned
            ? undefined
            : last
              ? Number(done) / Number(last)
              : 1;
        progress.update(share, n);
      }
      if (file) {
        file.end();
        await once(file, "finish");
        await rename(temp, options.out);
      }
      progress.finish(true);
      return n;
    } catch (err) {
      progress.finish(false);
      if (file) {
        file.destroy();
        await rm(temp, { force: true });
      }
      throw err;
    }
  });
  if (toStdout) return;
  if (options.json) await ctx.out.line(jsonLine({ exported: count, from: what, out: options.out }));
  else
    await ctx.out.line(
      `exported ${count} event${count === 1 ? "" : "s"} from ${what} to ${options.out}`,
    );
}

export interface ImportOptions {
  json?: boolean;
}

interface Batch {
  streamId: string;
  events: EventData[];
  bytes: number;
}

/**
 * Appends a batch keeping its event ids, with expected version "any": an append whose ids are
 * already the stream's (a re-run) returns the original result instead of writing again. When
 * only some of them are (the file's batches differ from an earlier run's), the events go one by
 * one, each again idempotent.
 */
async function appendBatch(ctx: Context, client: ChorusClient, batch: Batch): Promise<void> {
  const options = { expectedVersion: "any" as const, timeoutMs: ctx.timeoutMs };
  try {
    await client.appendToStream(batch.streamId, batch.events, options);
  } catch (err) {
    if (!(err instanceof WrongExpectedVersionError) || batch.events.length === 1) throw err;
    for (const e of batch.events) await client.appendToStream(batch.streamId, e, options);
  }
}

export async function importEvents(
  ctx: Context,
  file: string,
  options: ImportOptions,
): Promise<void> {
  const size = (await stat(file)).size;
  const streams = new Set<string>();
  /** Metadata streams (`$$name`) written: the streams whose metadata came along. */
  const metadataOf = new Set<string>();
  const count = await ctx.withClient(async (client) => {
    const input = createReadStream(file, { encoding: "utf8" });
    const lines = createInterface({ input, crlfDelay: Infinity });
    const progress = new Progress(ctx.io.stderr, `import ${file}`);
    let n = 0;
    let lineNo = 0;
    let batch: Batch | undefined;
    const flush = async () => {
      if (!batch) return;
      const b = batch;
      batch = undefined;
      await appendBatch(ctx, client, b);
      n += b.events.length;
      if (isMetadataStream(b.streamId)) metadataOf.add(b.streamId);
      else streams.add(b.streamId);
      progress.update(size > 0 ? input.bytesRead / size : 1, n);
    };
    try {
      for await (const line of lines) {
        lineNo++;
        if (line.trim() === "") continue;
        let imported;
        try {
          imported = fromRecord(JSON.parse(line) as unknown, line);
        } catch (err) {
          throw new CommandError(`${file} line ${lineNo}: ${(err as Error).message}`);
        }
        if (
          batch &&
          (batch.streamId !== imported.streamId ||
            batch.events.length >= IMPORT_BATCH_EVENTS ||
            batch.bytes + imported.size > IMPORT_BATCH_BYTES)
        )
          await flush();
        batch ??= { streamId: imported.streamId, events: [], bytes: 0 };
        batch.events.push(imported.event);
        batch.bytes += imported.size;
      }
      await flush();
      progress.finish(true);
      return n;
    } catch (err) {
      progress.finish(false);
      throw err;
    } finally {
      lines.close();
      input.destroy();
    }
  });
  if (options.json)
    await ctx.out.line(
      jsonLine({ imported: count, streams: streams.size, metadata: metadataOf.size, file }),
    );
  else {
    const plural = (k: number, word: string) => `${k} ${word}${k === 1 ? "" : "s"}`;
    const withMetadata =
      metadataOf.size === 0 ? "" : ` and the metadata of ${plural(metadataOf.size, "stream")}`;
    await ctx.out.line(
      `imported ${plural(count, "event")} into ${plural(streams.size, "stream")}${withMetadata} from ${file} (events already there are kept once)`,
    );
  }
}
