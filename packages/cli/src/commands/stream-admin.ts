/** `chorus delete` and `chorus metadata`: the operations on a stream besides its events. */
import type { ExpectedVersion, StreamMetadata } from "@chorus/client";
import type { Context } from "../context.js";
import { UsageError } from "../errors.js";
import { jsonLine, type RawJson } from "../records.js";

export interface DeleteOptions {
  hard?: boolean;
  expectedVersion?: ExpectedVersion;
  json?: boolean;
}

export async function deleteStream(
  ctx: Context,
  stream: string,
  options: DeleteOptions,
): Promise<void> {
  if (stream === "$all") throw new UsageError("delete: $all is not a stream");
  const hard = options.hard === true;
  const result = await ctx.withClient((client) =>
    client.deleteStream(stream, {
      hard,
      expectedVersion: options.expectedVersion ?? "any",
      timeoutMs: ctx.timeoutMs,
    }),
  );
  if (options.json) {
    await ctx.out.line(jsonLine({ streamId: stream, hard, position: result.position }));
  } else if (hard) {
    await ctx.out.line(
      `deleted ${stream} for good (position ${result.position.toString()}): it can never be written again`,
    );
  } else {
    await ctx.out.line(
      `deleted ${stream} (position ${result.position.toString()}): it reads as not found until it is written again`,
    );
  }
}

export interface MetadataOptions {
  set?: RawJson;
  expectedVersion?: ExpectedVersion;
  json?: boolean;
}

/** Prints a stream's metadata, or with `--set` replaces it. */
export async function metadata(
  ctx: Context,
  stream: string,
  options: MetadataOptions,
): Promise<void> {
  if (stream === "$all") throw new UsageError("metadata: $all is not a stream");
  if (options.set === undefined) {
    if (options.expectedVersion !== undefined)
      throw new UsageError("metadata: --expected-version goes with --set");
    const result = await ctx.withClient((client) =>
      client.getStreamMetadata(stream, { timeoutMs: ctx.timeoutMs }),
    );
    if (options.json) {
      await ctx.out.line(
        jsonLine({
          streamId: stream,
          metadata: result.metadata,
          // The revision of the metadata event in $$stream; null when there is none.
          metaRevision: result.metaRevision ?? null,
        }),
      );
    } else {
      const revision =
        result.metaRevision === undefined
          ? "no metadata"
          : `revision ${result.metaRevision.toString()} of $$${stream}`;
      await ctx.out.line(`${stream} (${revision}): ${JSON.stringify(result.metadata)}`);
    }
    return;
  }
  const value: unknown = JSON.parse(options.set.text);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new UsageError("metadata: --set takes a JSON object, e.g. '{\"maxCount\":100}'");
  const result = await ctx.withClient((client) =>
    client.setStreamMetadata(stream, value as StreamMetadata, {
      expectedVersion: options.expectedVersion ?? "any",
      timeoutMs: ctx.timeoutMs,
    }),
  );
  if (options.json) {
    await ctx.out.line(
      jsonLine({
        streamId: stream,
        metaRevision: result.nextExpectedVersion,
        position: result.position,
      }),
    );
  } else {
    await ctx.out.line(
      `set the metadata of ${stream}: revision ${result.nextExpectedVersion.toString()} of $$${stream} (position ${result.position.toString()})`,
    );
  }
}
