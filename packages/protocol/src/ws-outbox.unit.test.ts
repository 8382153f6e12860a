import { describe, expect, it } from "vitest";
import * as wsModule from "ws";
import { WebSocketOutbox, type OutboxSocket } from "./ws-outbox.js";

/** ws's frame parser (exported by ws, not described by its type declarations). */
interface FrameReceiver {
  on(event: "message", listener: (data: Buffer, isBinary: boolean) => void): void;
  on(event: "error", listener: (err: Error) => void): void;
  write(chunk: Buffer, callback: (err?: Error | null) => void): void;
}
const { Receiver } = wsModule as unknown as {
  Receiver: new (options: { isServer: boolean; maxPayload: number }) => FrameReceiver;
};

/** Payloads across every header size (7-bit, 16-bit and 64-bit lengths) and their edges. */
const LENGTHS = [0, 1, 125, 126, 127, 65_535, 65_536, 70_000];

function payload(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 255;
  return bytes;
}

/** What `ws` reads from `bytes` as the peer that `masked` frames go to (a server for masked). */
function parse(bytes: Uint8Array, masked: boolean): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const messages: Uint8Array[] = [];
    const receiver = new Receiver({ isServer: masked, maxPayload: 0 });
    receiver.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) reject(new Error("a text message"));
      messages.push(new Uint8Array(data));
    });
    receiver.on("error", reject);
    receiver.write(Buffer.from(bytes), (err) => (err ? reject(err) : resolve(messages)));
  });
}

/** An outbox whose flushes run when `run()` is called, writing into `writes`. */
function outbox(masked: boolean, socket: () => OutboxSocket | undefined) {
  const scheduled: (() => void)[] = [];
  const box = new WebSocketOutbox({
    masked,
    schedule: (flush) => scheduled.push(flush),
    socket,
    onWritten: () => undefined,
  });
  return { box, scheduled, run: () => scheduled.splice(0).forEach((f) => f()) };
}

function recordingSocket(): OutboxSocket & { writes: Uint8Array[] } {
  const writes: Uint8Array[] = [];
  return {
    writes,
    write(data, callback) {
      writes.push(data);
      callback();
      return true;
    },
  };
}

describe("WebSocketOutbox", () => {
  for (const masked of [true, false]) {
    it(`frames messages ${masked ? "masked, as a client" : "unmasked, as a server"} that ws reads back whole and in order`, async () => {
      const socket = recordingSocket();
      const { box, scheduled, run } = outbox(masked, () => socket);
      const sent = LENGTHS.map((n, i) => payload(n, i));
      for (const p of sent) box.push(p);
      // One flush is scheduled for the batch, and nothing is written before it runs.
      expect(scheduled).toHaveLength(1);
      expect(socket.writes).toHaveLength(0);
      const headers = LENGTHS.reduce(
        (sum, n) => sum + (n < 126 ? 2 : n < 65_536 ? 4 : 10) + (masked ? 4 : 0),
        0,
      );
      expect(box.pendingBytes).toBe(headers + LENGTHS.reduce((a, b) => a + b, 0));
      run();
      expect(socket.writes).toHaveLength(1);
      expect(box.pendingBytes).toBe(0);
      // As base64 text: one string comparison per message rather than one per byte.
      const text = (m: Uint8Array) => Buffer.from(m).toString("base64");
      expect((await parse(socket.writes[0]!, masked)).map(text)).toEqual(sent.map(text));
    });
  }

  it("schedules a new flush for what is pushed after one ran", () => {
    const socket = recordingSocket();
    const { box, scheduled, run } = outbox(false, () => socket);
    box.push(payload(3, 1));
    run();
    box.push(payload(4, 2));
    box.push(payload(5, 3));
    expect(scheduled).toHaveLength(1);
    run();
    expect(socket.writes.map((w) => w.byteLength)).toEqual([2 + 3, 2 + 4 + 2 + 5]);
  });

  it("flushes at once when asked, and the scheduled flush then writes nothing", () => {
    const socket = recordingSocket();
    const { box, run } = outbox(true, () => socket);
    box.push(payload(10, 1));
    box.flush();
    expect(socket.writes).toHaveLength(1);
    run();
    expect(socket.writes).toHaveLength(1);
  });

  it("drops what it gathered when the connection can no longer take it", () => {
    let socket: OutboxSocket | undefined = recordingSocket();
    const writes = (socket as ReturnType<typeof recordingSocket>).writes;
    const { box, run } = outbox(false, () => socket);
    box.push(payload(10, 1));
    socket = undefined;
    run();
    expect(writes).toHaveLength(0);
    expect(box.pendingBytes).toBe(0);
  });
});
