/** `chorus append`, `chorus read` and `chorus tail`. */
import { readFile } from "node:fs/promises";
import { isUtf8 } from "node:buffer";
import { randomUUID } from "node:crypto";
import {
  binaryEvent,
  type EventData,
  type ExpectedVersion,
  type ResolvedEvent,
  type Subscription,
} from "@chorus/client";
import type { Context } from "../context.js";
import { UsageError } from "../errors.js";
import { jsonLine, RawJson, toRecord, toTextLine } from "../records.js";

export interface AppendOptions {
  type: string;
  data?: RawJson;
  file?: string;
  metadata?: RawJson;
  expectedVersion?: ExpectedVersion;
  id?: string;
  json?: boolean;
}

/** The event `append` writes: JSON from --data, or a file's content (JSON when it parses). */
async function eventToAppend(options: AppendOptions, stdin: () => Promise<Buffer>) {
  if (options.data !== undefined && options.file !== undefined)
    throw new UsageError("append: give --data or --file, not both");
  const common = {
    type: options.type,
    ...(options.id !== undefined && { id: options.id }),
  };
  // A JSON event carries the text as it was given (checked by JSON.parse, not rewritten by it).
  const jsonData = (data: Uint8Array): EventData =>
    Object.freeze({
      id: options.id ?? randomUUID(),
      type: options.type,
      isJson: true,
      data,
      metadata:
        options.metadata === undefined ? undefined : Buffer.from(options.metadata.text, "utf8"),
    });
  if (options.file === undefined)
    return jsonData(Buffer.from((options.data ?? new RawJson("{}")).text, "utf8"));
  const bytes = options.file === "-" ? await stdin() : await readFile(options.file);
  if (isUtf8(bytes)) {
    try {
      JSON.parse(bytes.toString("utf8"));
      return jsonData(new Uint8Array(bytes));
    } catch {
      // not JSON: appended as bytes below
    }
  }
  if (options.metadata !== undefined)
    throw new UsageError("append: --metadata goes with JSON data only (the file is not JSON)");
  return binaryEvent({ ...common, data: new Uint8Array(bytes) });
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function append(ctx: Context, stream: string, options: AppendOptions): Promise<void> {
  const event = await eventToAppend(options, readStdin);
  const result = await ctx.withClient((client) =>
    client.appendToStream(stream, event, {
      expectedVersion: options.expectedVersion ?? "any",
      timeoutMs: ctx.timeoutMs,
    }),
  );
  if (options.json) {
    await ctx.out.line(
      jsonLine({
        streamId: stream,
        eventId: event.id,
        revision: result.nextExpectedVersion,
        position: result.position,
      }),
    );
  } else {
    await ctx.out.line(
      `appended ${event.id} to ${stream}@${result.nextExpectedVersion.toString()} (position ${result.position.toString()})`,
    );
  }
}

export interface ReadOptions {
  from?: "start" | "end" | bigint;
  count?: number;
  backwards?: boolean;
  json?: boolean;
}

/** Over partitions a position is one group's: `$all` takes --from start or end only. */
function checkAllFrom(ctx: Context, stream: string, from: ReadOptions["from"]): void {
  if (ctx.partitioned && stream === "$all" && typeof from === "bigint")
    throw new UsageError(
      `--from ${from}: over partitions '$all' takes --from start or end (a position is one partition's; read one partition with --connection to start at a position)`,
    );
}

export async function read(ctx: Context, stream: string, options: ReadOptions): Promise<void> {
  checkAllFrom(ctx, stream, options.from);
  await ctx.withClient(async (client) => {
    const common = {
      direction: options.backwards ? ("backwards" as const) : ("forwards" as const),
      ...(options.count !== undefined && { maxCount: options.count }),
      timeoutMs: ctx.timeoutMs,
    };
    const events =
      stream === "$all"
        ? client.readAll({
            ...common,
            filter: {}, // system streams left out, as in tail and export
            ...(options.from !== undefined && { fromPosition: options.from }),
          })
        : client.readStream(stream, {
            ...common,
            ...(options.from !== undefined && { fromRevision: options.from }),
          });
    for await (const e of events) await ctx.out.line(format(e, options.json));
  });
}

export interface TailOptions {
  from?: "start" | "end" | bigint;
  json?: boolean;
}

/** A subscription's start (exclusive) for an inclusive `--from`. */
export function subscriptionStart(
  from: "start" | "end" | bigint | undefined,
): "start" | "end" | bigint {
  if (from === undefined) return "end";
  if (from === "start" || from === "end") return from;
  return from === 0n ? "start" : from - 1n;
}

export async function tail(ctx: Context, stream: string, options: TailOptions): Promise<void> {
  checkAllFrom(ctx, stream, options.from);
  await ctx.withClient(async (client) => {
    const start = subscriptionStart(options.from);
    const sub: Subscription =
      stream === "$all"
        ? client.subscribeToAll({ fromPosition: start, filter: {}, timeoutMs: ctx.timeoutMs })
        : client.subscribeToStream(stream, { fromRevision: start, timeoutMs: ctx.timeoutMs });
    let stopping = false;
    const stop = () => {
      if (stopping) {
        // A second Ctrl-C: leave now.
        process.exit(130);
      }
      stopping = true;
      void sub.unsubscribe();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    sub.on("caughtUp", () => ctx.notice(`following ${stream} live (Ctrl-C to stop)`));
    try {
      for await (const e of sub) await ctx.out.line(format(e, options.json));
    } catch (err) {
      if (!stopping) throw err;
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  });
}

function format(e: ResolvedEvent, json: boolean | undefined): string {
  return json ? jsonLine(toRecord(e)) : toTextLine(e);
}
