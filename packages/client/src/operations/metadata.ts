import { METADATA_EVENT_TYPE, metadataStreamOf } from "@chorus/protocol";
import { describe } from "../util/describe.js";
import { InvalidArgumentError, StreamNotFoundError } from "../errors.js";
import type { ExpectedVersion, OperationOptions } from "../types.js";
import { appendToStream, type AppendResult } from "./append.js";
import { optionKeys } from "../util/options.js";
import type { OperationContext } from "./context.js";
import { jsonEvent } from "./events.js";
import { readStream } from "./read.js";
import { checkOperationOptions, checkStreamName } from "./validate.js";

/** Stream metadata; the server applies maxCount, maxAgeSec and truncateBefore when reading. */
export interface StreamMetadata {
  /** Keep at most this many of the newest events. */
  maxCount?: number;
  /** Keep events younger than this many seconds. */
  maxAgeSec?: number;
  /** Events with a lower revision are gone. */
  truncateBefore?: number | bigint;
  acl?: unknown;
  /** Any other keys of your own. */
  [key: string]: unknown;
}

export interface SetStreamMetadataOptions extends OperationOptions {
  /** Expected version of the metadata stream `$$stream`. Default "any". */
  expectedVersion?: ExpectedVersion;
}

const SET_METADATA_OPTION_KEYS = optionKeys<SetStreamMetadataOptions>({
  credentials: true,
  timeoutMs: true,
  signal: true,
  requireLeader: true,
  expectedVersion: true,
});

export interface StreamMetadataResult {
  readonly streamId: string;
  /** `{}` when the stream has no metadata. */
  readonly metadata: StreamMetadata;
  /** Revision of the metadata event in `$$stream`; undefined when there is none. */
  readonly metaRevision: bigint | undefined;
}

function positiveInt(value: unknown, key: string): void {
  if (
    value !== undefined &&
    (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1)
  ) {
    throw new InvalidArgumentError(
      `metadata.${key} must be a positive integer, got ${describe(value)}`,
    );
  }
}

/** Writes the stream's metadata: a `$metadata` JSON event appended to `$$stream`. */
export async function setStreamMetadata(
  ctx: OperationContext,
  streamId: string,
  metadata: StreamMetadata,
  options: SetStreamMetadataOptions = {},
): Promise<AppendResult> {
  checkStreamName(streamId);
  checkOperationOptions("setStreamMetadata", options, SET_METADATA_OPTION_KEYS);
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    throw new InvalidArgumentError("stream metadata must be an object");
  }
  positiveInt(metadata.maxCount, "maxCount");
  positiveInt(metadata.maxAgeSec, "maxAgeSec");
  const { truncateBefore } = metadata;
  let data: Record<string, unknown> = { ...metadata };
  if (truncateBefore !== undefined) {
    const n = typeof truncateBefore === "bigint" ? Number(truncateBefore) : truncateBefore;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
      throw new InvalidArgumentError(
        `metadata.truncateBefore must be a non-negative integer, got ${String(truncateBefore)}`,
      );
    }
    data = { ...data, truncateBefore: n };
  }
  return appendToStream(
    ctx,
    metadataStreamOf(streamId),
    jsonEvent({ type: METADATA_EVENT_TYPE, data }),
    options,
  );
}

/** Reads the stream's current metadata: the last event of `$$stream`. */
export async function getStreamMetadata(
  ctx: OperationContext,
  streamId: string,
  options: OperationOptions = {},
): Promise<StreamMetadataResult> {
  checkStreamName(streamId);
  checkOperationOptions("getStreamMetadata", options);
  try {
    for await (const resolved of readStream(ctx, metadataStreamOf(streamId), {
      ...options,
      direction: "backwards",
      fromRevision: "end",
      maxCount: 1,
    })) {
      const data = resolved.event.data;
      const metadata =
        typeof data === "object" && data !== null && !(data instanceof Uint8Array)
          ? (data as StreamMetadata)
          : {};
      return Object.freeze({ streamId, metadata, metaRevision: resolved.event.revision });
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return Object.freeze({ streamId, metadata: {}, metaRevision: undefined });
}
