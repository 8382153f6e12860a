import { decodeInternalFrame, encodeInternalFrame } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import type { LogRecord, Message } from "../core/types.js";
import { joinPayloads, messageFromWire, messageToWire, type RecordSplitter } from "./messages.js";

/** Test codec: each record is [length byte][epoch byte][filler]; an epoch byte > 0 starts an epoch. */
const split: RecordSplitter = (bytes, position, prevEpoch) => {
  const out: LogRecord<Buffer>[] = [];
  let at = 0;
  let epoch = prevEpoch;
  while (at < bytes.length) {
    const length = bytes[at]!;
    const marker = bytes[at + 1]!;
    const kind = marker > 0 ? "epoch" : "data";
    if (marker > 0) epoch = marker;
    out.push({
      epoch,
      position: position + at,
      length,
      kind,
      payload: bytes.subarray(at, at + length),
    });
    at += length;
  }
  return out;
};

function record(
  position: number,
  epoch: number,
  marker: number,
  length: number,
): LogRecord<Buffer> {
  const payload = Buffer.alloc(length, 7);
  payload[0] = length;
  payload[1] = marker;
  return { epoch, position, length, kind: marker > 0 ? "epoch" : "data", payload };
}

const messages: Array<[string, Message<Buffer>]> = [
  ["PreVote", { type: "PreVote", epoch: 4, last: { epoch: 3, position: 900 } }],
  ["Vote", { type: "Vote", epoch: 4, last: { epoch: 3, position: 900 }, transfer: true }],
  ["VoteReply", { type: "VoteReply", epoch: 4, preVote: true, granted: false, voterEpoch: 5 }],
  [
    "AppendReply ok",
    {
      type: "AppendReply",
      epoch: 4,
      ok: true,
      match: { epoch: 4, position: 1200 },
      durableEnd: 1100,
    },
  ],
  [
    "AppendReply hint",
    { type: "AppendReply", epoch: 4, ok: false, hint: { epoch: 2, position: 300 } },
  ],
  ["TimeoutNow", { type: "TimeoutNow", epoch: 9 }],
  [
    "Append heartbeat",
    { type: "Append", epoch: 4, prev: { epoch: 3, position: 900 }, records: [], leaderCommit: 800 },
  ],
  [
    "Append with records",
    {
      type: "Append",
      epoch: 4,
      prev: { epoch: 3, position: 900 },
      records: [record(900, 3, 0, 10), record(910, 4, 4, 12), record(922, 4, 0, 9)],
      leaderCommit: 850,
    },
  ],
];

describe("consensus messages on the wire", () => {
  it.each(messages)("%s survives encoding", (_name, message) => {
    const bytes = encodeInternalFrame({ from: "a", ...messageToWire(message) });
    const back = messageFromWire(decodeInternalFrame(bytes), split);
    expect(back).toEqual(message);
  });

  it("a hello is not a consensus message", () => {
    const frame = decodeInternalFrame(
      encodeInternalFrame({ from: "a", hello: { instanceId: "a", clusterSize: 3 } }),
    );
    expect(messageFromWire(frame, split)).toBeUndefined();
  });
});

describe("joinPayloads", () => {
  it("gives payloads that lie back to back in one buffer as one view of it", () => {
    const bytes = Buffer.from([1, 2, 3, 4, 5, 6]);
    const joined = joinPayloads([
      { payload: bytes.subarray(0, 2) },
      { payload: bytes.subarray(2, 5) },
    ]);
    expect([...joined]).toEqual([1, 2, 3, 4, 5]);
    expect(joined.buffer).toBe(bytes.buffer);
    expect(joined.byteOffset).toBe(bytes.byteOffset);
  });

  it("copies payloads that do not", () => {
    const bytes = Buffer.from([1, 2, 3, 4, 5, 6]);
    const apart = joinPayloads([
      { payload: bytes.subarray(0, 2) },
      { payload: bytes.subarray(3, 5) },
    ]);
    expect([...apart]).toEqual([1, 2, 4, 5]);
    const other = joinPayloads([{ payload: bytes.subarray(0, 2) }, { payload: Buffer.from([9]) }]);
    expect([...other]).toEqual([1, 2, 9]);
    expect(joinPayloads([])).toHaveLength(0);
  });
});
