/**
 * Partitioned deployments: a node started with `--partition NAME --partitions A,B,C` serves
 * only the streams its group owns (`partitionOf` of @chorus/protocol, the function clients
 * route with) and refuses every other stream with WRONG_PARTITION naming the owner, so a
 * client with a wrong group list can never split a stream over two groups. `$all` (reads,
 * subscriptions, persistent groups on `$all`) stays local: it is this group's log.
 *
 * The one place both protocols ask: native.ts (`checkFrameOwnership`) and http.ts
 * (`checkStreamOwnership`).
 */
import { chorus, partitionOf, type Frame, type FrameBodyKind } from "@chorus/protocol";
import type { NodeOptions } from "../config/index.js";
import { RequestError } from "./errors.js";

/** Throws WRONG_PARTITION when another group owns `streamId`; `$all` is always local. */
export function checkStreamOwnership(
  options: Pick<NodeOptions, "partition" | "partitions">,
  streamId: string,
): void {
  const { partition, partitions } = options;
  if (partition === null || partitions.length <= 1 || streamId === "$all" || streamId === "")
    return;
  const owner = partitionOf(streamId, partitions);
  if (owner === partition) return;
  throw new RequestError(
    chorus.ErrorResponse.Code.WRONG_PARTITION,
    `stream ${JSON.stringify(streamId)} belongs to partition ${owner}, not to this node's partition ${partition}`,
    streamId,
    owner,
  );
}

/**
 * The stream a native request operates on, if any ("" and "$all" for none). `body` is the
 * name of the frame's body (a frame from a client in this process carries no `body` field).
 */
function frameStreamId(frame: Frame, body: FrameBodyKind): string {
  switch (body) {
    case "append":
      return frame.append?.streamId ?? "";
    case "deleteStream":
      return frame.deleteStream?.streamId ?? "";
    case "readStream":
      return frame.readStream?.streamId ?? "";
    case "subscribe":
      return frame.subscribe?.all === true ? "" : (frame.subscribe?.streamId ?? "");
    case "persistentCreate":
      return frame.persistentCreate?.streamId ?? "";
    case "persistentUpdate":
      return frame.persistentUpdate?.streamId ?? "";
    case "persistentDelete":
      return frame.persistentDelete?.streamId ?? "";
    case "persistentGetInfo":
      return frame.persistentGetInfo?.streamId ?? "";
    case "persistentReplayParked":
      return frame.persistentReplayParked?.streamId ?? "";
    case "persistentSubscribe":
      return frame.persistentSubscribe?.streamId ?? "";
    default:
      // readAll, persistentList (a listing of this group's groups), and the rest.
      return "";
  }
}

/** Throws WRONG_PARTITION when a native request names a stream another group owns. */
export function checkFrameOwnership(
  options: Pick<NodeOptions, "partition" | "partitions">,
  frame: Frame,
  body: FrameBodyKind,
): void {
  if (options.partition === null) return;
  checkStreamOwnership(options, frameStreamId(frame, body));
}
