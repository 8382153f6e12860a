// A node bounds the unfinished input it holds from all its clients together
// (--receive-budget-bytes). A WebSocket frame is buffered until its last byte arrives; each
// connection alone was bounded by the largest frame, but nothing bounded them together, so
// connections that each send most of a large frame and then nothing could hold the node's
// memory (before any request is decoded or its credentials checked).
//
// One real node, frames up to 1 MiB, a budget of 2 MiB: six raw connections each send 600 KB
// of a 900 KB frame. The connections holding the most are closed (1008, naming the budget)
// until the rest fit; a client sending whole frames goes on appending meanwhile.
import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, waitFor, type TestNode } from "@chorus/testing";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

const FRAME_BYTES = 900_000;
const SENT_BYTES = 600_000;
const BUDGET_BYTES = 2 * 1024 * 1024;

let node: TestNode | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await node?.stop();
  node = undefined;
});

interface PartialSender {
  readonly socket: Socket;
  /** What the node sent after its 101 answer. */
  after: Buffer;
  ended: boolean;
}

/** A WebSocket upgrade by hand, then the first SENT_BYTES of a FRAME_BYTES binary frame. */
async function partialFrame(n: TestNode): Promise<PartialSender> {
  const socket = connect({ host: n.extTcp.host, port: n.extTcp.port });
  sockets.push(socket);
  const p: PartialSender = { socket, after: Buffer.alloc(0), ended: false };
  let head = Buffer.alloc(0);
  let upgraded = false;
  const ready = new Promise<void>((resolve, reject) => {
    socket.on("data", (chunk: Buffer) => {
      if (upgraded) {
        p.after = Buffer.concat([p.after, chunk]);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      if (!head.subarray(0, 12).toString().includes("101"))
        reject(new Error(`upgrade refused: ${head.toString()}`));
      upgraded = true;
      p.after = head.subarray(end + 4);
      resolve();
    });
    socket.on("error", reject);
  });
  socket.on("close", () => (p.ended = true));
  socket.write(
    "GET / HTTP/1.1\r\nHost: chorus\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await ready;
  // FIN + binary; masked, 64-bit length; a mask of zeros (the payload goes as it is).
  const header = Buffer.alloc(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  header.writeBigUInt64BE(BigInt(FRAME_BYTES), 2);
  socket.write(header);
  socket.write(Buffer.alloc(SENT_BYTES, 0x61));
  return p;
}

/** The close frame the node sent, if any: its code and reason. */
function closeFrame(p: PartialSender): { code: number; reason: string } | undefined {
  const b = p.after;
  if (b.length < 4 || b[0] !== 0x88) return undefined;
  const length = (b[1] as number) & 0x7f;
  return {
    code: b.readUInt16BE(2),
    reason: b.subarray(4, 2 + length).toString("utf8"),
  };
}

describe("unfinished input beyond the receive budget", () => {
  it("closes the connections holding the most until the rest fit; whole frames go on", async () => {
    node = await startNode({
      memDb: true,
      args: ["--max-frame-bytes", "1MiB", "--receive-budget-bytes", "2MiB"],
    });
    const client = new ChorusClient(node.connectionString);
    try {
      await client.appendToStream("steady", jsonEvent({ type: "Before", data: {} }));
      const partials: PartialSender[] = [];
      for (let i = 0; i < 6; i++) partials.push(await partialFrame(node));
      // 3.6 MB sent against a budget of 2 MiB: at least two connections must go.
      const closedForBudget = (): PartialSender[] =>
        partials.filter((p) => p.ended && closeFrame(p)?.code === 1008);
      // Until what the rest hold fits (chunks arrive one by one, and each may take one more).
      await waitFor(
        () => (partials.length - closedForBudget().length) * SENT_BYTES <= BUDGET_BYTES,
        {
          timeoutMs: 20_000,
        },
      );
      for (const p of closedForBudget()) {
        expect(closeFrame(p)?.reason).toMatch(/--receive-budget-bytes/);
      }
      // What the others hold fits the budget.
      expect((partials.length - closedForBudget().length) * SENT_BYTES).toBeLessThanOrEqual(
        BUDGET_BYTES,
      );
      // A client sending whole frames goes on.
      await client.appendToStream("steady", jsonEvent({ type: "After", data: {} }));
      const metrics = await (await fetch(`http://${node.httpEndpoint}/metrics`)).text();
      expect(
        Number(/^chorus_receive_budget_evictions_total (\d+)/m.exec(metrics)?.[1]),
      ).toBeGreaterThanOrEqual(2);
    } finally {
      await client.close();
    }
  }, 60_000);

  it("counts HTTP request bodies too: the bodies holding the most are cut off", async () => {
    node = await startNode({
      memDb: true,
      args: ["--max-frame-bytes", "1MiB", "--receive-budget-bytes", "2MiB"],
    });
    const partials: PartialSender[] = [];
    for (let i = 0; i < 6; i++) {
      const socket = connect({ host: node.extHttp.host, port: node.extHttp.port });
      sockets.push(socket);
      const p: PartialSender = { socket, after: Buffer.alloc(0), ended: false };
      socket.on("close", () => (p.ended = true));
      socket.on("error", () => undefined);
      socket.write(
        `POST /streams/bodies-${i} HTTP/1.1\r\nHost: chorus\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${FRAME_BYTES}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(SENT_BYTES, 0x20));
      partials.push(p);
    }
    await waitFor(
      () => (partials.length - partials.filter((p) => p.ended).length) * SENT_BYTES <= BUDGET_BYTES,
      { timeoutMs: 20_000 },
    );
    expect(
      (partials.length - partials.filter((p) => p.ended).length) * SENT_BYTES,
    ).toBeLessThanOrEqual(BUDGET_BYTES);
    const metrics = await (await fetch(`http://${node.httpEndpoint}/metrics`)).text();
    expect(
      Number(/^chorus_receive_budget_evictions_total (\d+)/m.exec(metrics)?.[1]),
    ).toBeGreaterThanOrEqual(2);
    // A whole request goes through.
    const ok = await fetch(`http://${node.httpEndpoint}/streams/whole`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([{ eventId: crypto.randomUUID(), eventType: "Whole", data: {} }]),
    });
    expect(ok.status).toBe(201);
  }, 60_000);

  it("refuses a budget smaller than one frame", async () => {
    await expect(
      startNode({
        memDb: true,
        args: ["--max-frame-bytes", "2MiB", "--receive-budget-bytes", "1MiB"],
        startTimeoutMs: 10_000,
      }),
    ).rejects.toThrow(/receiveBudgetBytes must be at least maxFrameBytes/);
  });
});
