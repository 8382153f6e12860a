/**
 * One process of the `append-seq-floor` bench row (see floor.ts): the least a quorum append
 * can cost on this machine, with raw TCP and fdatasync and nothing else. Started by floor.ts
 * with `fork`; reports its port over IPC and exits when its parent goes away.
 *
 *   floor-node.js follower FILE
 *   floor-node.js leader FILE [FOLLOWER_PORT...]
 *
 * Records are RECORD_BYTES each, written into zeros the process wrote and synced first. A
 * follower writes what it gets, syncs, and answers 8 bytes per record. The leader sends a client's records to its followers, writes and syncs them
 * itself (inline, as the server does for a lone write), and answers the client once its own
 * sync and one follower's answer (none without followers) cover the record.
 */
import { closeSync, fdatasyncSync, openSync, writeSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { PREALLOCATE_BYTES, RECORD_BYTES } from "./floor.js";

const ACK_BYTES = 8;

const [role, file, ...peerPorts] = process.argv.slice(2);
if ((role !== "leader" && role !== "follower") || file === undefined) {
  throw new Error("usage: floor-node.js leader|follower FILE [FOLLOWER_PORT...]");
}
const fd = openSync(file, "w+");
let end = 0;
// Zeros ahead of the records, synced before the row starts, as the disk log keeps them
// (docs/storage.md, "Preallocation"): each fdatasync then writes data, not a new file size.
const ZEROS = Buffer.alloc(1024 * 1024);
for (let at = 0; at < PREALLOCATE_BYTES; at += ZEROS.length)
  writeSync(fd, ZEROS, 0, ZEROS.length, at);
fdatasyncSync(fd);

function appendDurably(records: Buffer): void {
  writeSync(fd, records, 0, records.length, end);
  end += records.length;
  fdatasyncSync(fd);
}

/** Splits a byte stream into whole records, handing each run of them to `onRecords`. */
function onRecordStream(socket: Socket, onRecords: (records: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const whole = pending.length - (pending.length % RECORD_BYTES);
    if (whole === 0) return;
    const records = pending.subarray(0, whole);
    pending = pending.subarray(whole);
    onRecords(records);
  });
}

const followers: Socket[] = peerPorts.map((p) => {
  const s = createConnection({ host: "127.0.0.1", port: Number(p), noDelay: true });
  s.on("error", () => process.exit(1));
  return s;
});

// Leader counters, in records since the start: synced here, answered by the fastest
// follower, answered to the client.
let durable = 0;
let replicated = 0;
let answered = 0;
let client: Socket | undefined;

function answerClient(): void {
  const done = followers.length === 0 ? durable : Math.min(durable, replicated);
  if (done <= answered) return;
  client?.write(Buffer.alloc(ACK_BYTES * (done - answered)));
  answered = done;
}

followers.forEach((s) => {
  let bytes = 0;
  s.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    replicated = Math.max(replicated, Math.floor(bytes / ACK_BYTES));
    answerClient();
  });
});

const server = createServer({ noDelay: true }, (socket) => {
  socket.on("error", () => socket.destroy());
  if (role === "follower") {
    onRecordStream(socket, (records) => {
      appendDurably(records);
      socket.write(Buffer.alloc(ACK_BYTES * (records.length / RECORD_BYTES)));
    });
    return;
  }
  client = socket;
  onRecordStream(socket, (records) => {
    for (const f of followers) f.write(records);
    appendDurably(records);
    durable += records.length / RECORD_BYTES;
    answerClient();
  });
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.send?.(typeof address === "object" && address !== null ? address.port : 0);
});
process.on("disconnect", () => {
  closeSync(fd);
  process.exit(0);
});
