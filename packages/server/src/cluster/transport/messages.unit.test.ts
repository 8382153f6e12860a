import { decodeInternalFrame, encodeInternalFrame } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import type { LogRecord, Message } from "../core/types.js";
import { messageFromWire, messageToWire, type RecordSplitter } from "./messages.js";

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
