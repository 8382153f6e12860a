import { chorus, frameBodyOf, partitionOf } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import { RequestError, toWireError } from "./errors.js";
import { checkFrameOwnership, checkStreamOwnership } from "./partition-guard.js";

const GROUPS = ["east", "west"];
const EAST = { partition: "east", partitions: GROUPS };

/** A stream id that `owner` owns. */
function ownedBy(owner: string): string {
  for (let i = 0; ; i++) if (partitionOf(`s-${i}`, GROUPS) === owner) return `s-${i}`;
}

function caught(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe("partition guard", () => {
  it("lets an unpartitioned node serve every stream", () => {
    const options = { partition: null, partitions: [] };
    expect(caught(() => checkStreamOwnership(options, ownedBy("west")))).toBeUndefined();
  });

  it("lets a node serve its own streams, their metadata and $all", () => {
    const own = ownedBy("east");
    for (const stream of [own, `$$${own}`, "$all", ""])
      expect(
        caught(() => checkStreamOwnership(EAST, stream)),
        stream,
      ).toBeUndefined();
  });

  it("refuses a foreign stream and its metadata with WRONG_PARTITION naming the owner", () => {
    const foreign = ownedBy("west");
    for (const stream of [foreign, `$$${foreign}`]) {
      const err = caught(() => checkStreamOwnership(EAST, stream));
      expect(err).toBeInstanceOf(RequestError);
      const wire = toWireError(err);
      expect(wire).toMatchObject({
        kind: "error",
        code: "WRONG_PARTITION",
        nativeCode: chorus.ErrorResponse.Code.WRONG_PARTITION,
        httpStatus: 421,
        httpHeaders: { "Chorus-Partition": "west" },
        owner: "west",
        streamId: stream,
        internal: false,
      });
      expect(wire.message).toContain("belongs to partition west");
    }
    expect(chorus.ErrorResponse.Code.WRONG_PARTITION).toBe(15);
  });

  it("checks the stream of every native stream request, and not $all", () => {
    const foreign = ownedBy("west");
    const frames: chorus.IFrame[] = [
      { append: { streamId: foreign } },
      { readStream: { streamId: foreign } },
      { deleteStream: { streamId: foreign } },
      { subscribe: { streamId: foreign } },
      { persistentCreate: { streamId: foreign, group: "g" } },
      { persistentUpdate: { streamId: foreign, group: "g" } },
      { persistentDelete: { streamId: foreign, group: "g" } },
      { persistentGetInfo: { streamId: foreign, group: "g" } },
      { persistentReplayParked: { streamId: foreign, group: "g" } },
      { persistentSubscribe: { streamId: foreign, group: "g" } },
    ];
    for (const init of frames) {
      // As decoded from a socket, and as a client in this process hands it over (no `body`).
      const decoded = chorus.Frame.fromObject({ correlationId: 1, ...init });
      const inProcess = { correlationId: 1, ...init } as chorus.Frame;
      const body = frameBodyOf(init)!;
      for (const frame of [decoded, inProcess]) {
        const err = caught(() => checkFrameOwnership(EAST, frame, body));
        expect((err as RequestError | undefined)?.owner, body).toBe("west");
      }
    }
    const local: chorus.IFrame[] = [
      { readAll: {} },
      { subscribe: { all: true } },
      { subscribe: { streamId: "$all" } },
      { persistentCreate: { streamId: "$all", group: "g" } },
      { persistentList: { streamId: foreign } },
      { append: { streamId: ownedBy("east") } },
    ];
    for (const init of local) {
      const frame = chorus.Frame.fromObject({ correlationId: 1, ...init });
      const body = frameBodyOf(init)!;
      expect(
        caught(() => checkFrameOwnership(EAST, frame, body)),
        body,
      ).toBeUndefined();
    }
  });
});
