// An append larger than one frame is refused by the client before it leaves: the connection,
// and every other request and subscription on it, carries on (a node closes the connection of
// a frame over its limit, and a retry would do it again).
import {
  ChorusClient,
  InvalidArgumentError,
  StreamNotFoundError,
  binaryEvent,
  jsonEvent,
} from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let node: TestNode;
/** A node whose frames are at most 1 MiB (its appends, by default, too). */
let smallFrames: TestNode;
const SMALL_FRAME_BYTES = 1024 * 1024;

beforeAll(async () => {
  [node, smallFrames] = await Promise.all([
    startNode({ memDb: true }),
    startNode({ memDb: true, args: ["--max-frame-bytes", String(SMALL_FRAME_BYTES)] }),
  ]);
});

afterAll(async () => {
  await Promise.all([node?.stop(), smallFrames?.stop()]);
});

describe("an append larger than a frame", () => {
  it("fails alone with InvalidArgumentError; the connection and a live subscription go on", async () => {
    const client = new ChorusClient(node.connectionString);
    const disconnects: Error[] = [];
    client.on("disconnected", (reason) => disconnects.push(reason));
    const sub = client.subscribeToStream("beside", { fromRevision: "start" });
    try {
      await client.appendToStream("beside", jsonEvent({ type: "Before", data: {} }));
      const seen: string[] = [];
      const reading = (async () => {
        for await (const e of sub) {
          seen.push(e.event.type);
          if (seen.length === 2) break;
        }
      })();
      const huge = binaryEvent({ type: "Huge", data: new Uint8Array(17 * 1024 * 1024) });
      const error = await client.appendToStream("too-big", huge).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(
        /an append of 1 event\(s\) to "too-big" is \d+ bytes encoded, more than one frame to 127\.0\.0\.1:\d+ may carry \(16777216 bytes\).*split them over several appends/,
      );
      await client.appendToStream("beside", jsonEvent({ type: "After", data: {} }));
      await reading;
      expect(seen).toEqual(["Before", "After"]);
      expect(disconnects).toEqual([]);
      await expect(
        (async () => {
          for await (const e of client.readStream("too-big")) return e;
        })(),
      ).rejects.toBeInstanceOf(StreamNotFoundError);
    } finally {
      await sub.unsubscribe();
      await client.close();
    }
  });

  it("is measured against the node's --max-frame-bytes when the node's is the smaller", async () => {
    const client = new ChorusClient(smallFrames.connectionString);
    const disconnects: Error[] = [];
    client.on("disconnected", (reason) => disconnects.push(reason));
    try {
      await client.appendToStream("beside", jsonEvent({ type: "Before", data: {} }));
      // Over the node's 1 MiB frame, far under the client's own 16 MiB.
      const big = binaryEvent({ type: "Big", data: new Uint8Array(SMALL_FRAME_BYTES + 1) });
      const error = await client.appendToStream("too-big", big).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(
        /an append of 1 event\(s\) to "too-big" is \d+ bytes encoded, more than one frame to 127\.0\.0\.1:\d+ may carry \(1048576 bytes, the node's --max-frame-bytes\)/,
      );
      await client.appendToStream("beside", jsonEvent({ type: "After", data: {} }));
      expect(disconnects).toEqual([]);
      // Just under the node's frame: it goes, and the node judges it (its append limit).
      const under = binaryEvent({ type: "Under", data: new Uint8Array(SMALL_FRAME_BYTES - 4096) });
      await client.appendToStream("under", under);
      expect(disconnects).toEqual([]);
    } finally {
      await client.close();
    }
  });
});
