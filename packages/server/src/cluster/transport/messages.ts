/**
 * The consensus core's messages on the wire (InternalFrame bodies). Append carries raw
 * log records back to back; the receiver needs the log's record codec to split them into
 * the core's LogRecords, so that is passed in.
 */
import type { chorus } from "@chorus/protocol";
import type { LogPoint, LogRecord, Message } from "../core/types.js";

/** Splits raw record bytes that start at `position` after a record of epoch `prevEpoch`. */
export type RecordSplitter = (
  bytes: Buffer,
  position: number,
  prevEpoch: number,
) => LogRecord<Buffer>[];

type Body = Omit<chorus.IInternalFrame, "from">;

/**
 * The records' payloads as one buffer. Payloads that lie back to back in one buffer (a run
 * read from the log, or split from one received Append) are one view of it, not a copy.
 */
export function joinPayloads(records: readonly { readonly payload: Buffer }[]): Buffer {
  const first = records[0];
  if (first === undefined) return Buffer.alloc(0);
  let length = first.payload.length;
  let adjacent = true;
  for (let i = 1; i < records.length; i++) {
    const p = records[i]!.payload;
    adjacent &&=
      p.buffer === first.payload.buffer && p.byteOffset === first.payload.byteOffset + length;
    length += p.length;
  }
  if (adjacent) return Buffer.from(first.payload.buffer, first.payload.byteOffset, length);
  return Buffer.concat(
    records.map((r) => r.payload),
    length,
  );
}

function pointToWire(p: LogPoint): chorus.ILogPoint {
  return { epoch: p.epoch, position: p.position };
}

function pointFromWire(p: chorus.ILogPoint | null | undefined): LogPoint {
  return { epoch: p?.epoch ?? 0, position: p?.position ?? 0 };
}

export function messageToWire(message: Message<Buffer>): Body {
  switch (message.type) {
    case "PreVote":
      return { preVote: { epoch: message.epoch, last: pointToWire(message.last) } };
    case "Vote":
      return {
        vote: { epoch: message.epoch, last: pointToWire(message.last), transfer: message.transfer },
      };
    case "VoteReply":
      return {
        voteReply: {
          epoch: message.epoch,
          preVote: message.preVote,
          granted: message.granted,
          voterEpoch: message.voterEpoch,
          ...(message.voterLast ? { voterLast: pointToWire(message.voterLast) } : {}),
        },
      };
    case "Append":
      return {
        appendEntries: {
          epoch: message.epoch,
          prev: pointToWire(message.prev),
          records: joinPayloads(message.records),
          leaderCommit: message.leaderCommit,
        },
      };
    case "AppendReply":
      return message.ok
        ? {
            appendReply: {
              epoch: message.epoch,
              ok: true,
              match: pointToWire(message.match),
              durableEnd: message.durableEnd,
              ...(message.storageFull === true && { storageFull: true }),
            },
          }
        : { appendReply: { epoch: message.epoch, ok: false, hint: pointToWire(message.hint) } };
    case "TimeoutNow":
      return { timeoutNow: { epoch: message.epoch } };
  }
}

/** The core message a frame carries, or undefined for a hello (or nothing known). */
export function messageFromWire(
  frame: chorus.IInternalFrame,
  split: RecordSplitter,
): Message<Buffer> | undefined {
  if (frame.preVote) {
    return {
      type: "PreVote",
      epoch: frame.preVote.epoch ?? 0,
      last: pointFromWire(frame.preVote.last),
    };
  }
  if (frame.vote) {
    return {
      type: "Vote",
      epoch: frame.vote.epoch ?? 0,
      last: pointFromWire(frame.vote.last),
      transfer: frame.vote.transfer === true,
    };
  }
  if (frame.voteReply) {
    const r = frame.voteReply;
    return {
      type: "VoteReply",
      epoch: r.epoch ?? 0,
      preVote: r.preVote === true,
      granted: r.granted === true,
      voterEpoch: r.voterEpoch ?? 0,
      ...(r.voterLast ? { voterLast: pointFromWire(r.voterLast) } : {}),
    };
  }
  if (frame.appendEntries) {
    const a = frame.appendEntries;
    const prev = pointFromWire(a.prev);
    const bytes =
      a.records && a.records.length > 0
        ? Buffer.from(a.records.buffer, a.records.byteOffset, a.records.byteLength)
        : Buffer.alloc(0);
    return {
      type: "Append",
      epoch: a.epoch ?? 0,
      prev,
      records: bytes.length > 0 ? split(bytes, prev.position, prev.epoch) : [],
      leaderCommit: a.leaderCommit ?? 0,
    };
  }
  if (frame.appendReply) {
    const r = frame.appendReply;
    return r.ok
      ? {
          type: "AppendReply",
          epoch: r.epoch ?? 0,
          ok: true,
          match: pointFromWire(r.match),
          durableEnd: r.durableEnd ?? 0,
          ...(r.storageFull === true && { storageFull: true }),
        }
      : { type: "AppendReply", epoch: r.epoch ?? 0, ok: false, hint: pointFromWire(r.hint) };
  }
  if (frame.timeoutNow) return { type: "TimeoutNow", epoch: frame.timeoutNow.epoch ?? 0 };
  return undefined;
}
