/**
 * What the tests of clients that do not read their answers share (read-backpressure,
 * send-budget, read-gate): a node filled with large events, raw connections that send reads
 * (native or HTTP) and read nothing back until told, the node's metrics and memory.
 */
import { jsonEvent, type ChorusClient } from "@chorus/client";
import { chorus, encodeFrame } from "@chorus/protocol";
import type { TestNode } from "@chorus/testing";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import WebSocket from "ws";
import { metricSample } from "./helpers.js";

/** Events `fillLarge` writes: 20,000 of ~2 KB, ~40 MB. */
export const LARGE_EVENTS = 20_000;

/** Writes LARGE_EVENTS events of ~2 KB over the streams filled-0 .. filled-9. */
export async function fillLarge(client: ChorusClient): Promise<void> {
  const big = "x".repeat(2_000);
  for (let b = 0; b < LARGE_EVENTS / 100; b++) {
    await client.appendToStream(
      `filled-${b % 10}`,
      Array.from({ length: 100 }, (_, i) => jsonEvent({ type: "T", data: { big, i } })),
    );
  }
}

/** The sample `key` of the node's /metrics (`name{labels}` as exposed); 0 when absent. */
export async function metric(node: TestNode, key: string): Promise<number> {
  const res = await fetch(`http://${node.httpEndpoint}/metrics`, {
    signal: AbortSignal.timeout(5_000),
  });
  return metricSample(await res.text(), key) ?? 0;
}

/**
 * A native connection that sends `reads` reads of `$all` from the start (correlation ids 1..)
 * and reads nothing back until `resumeReading`: what the node sends stays in the sockets'
 * buffers, then in the node.
 */
export async function unreadReads(node: TestNode, reads: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  for (let id = 1; id <= reads; id++) {
    ws.send(
      encodeFrame({
        correlationId: id,
        readAll: { fromPosition: 0, maxCount: 4096, direction: chorus.Direction.FORWARDS },
      }),
    );
  }
  return ws;
}

/** The connection of `unreadReads` reads what the node sent, and what it sends from now on. */
export function resumeReading(ws: WebSocket): void {
  (ws as unknown as { _socket: { resume(): void } })._socket.resume();
}

/** A raw HTTP connection that sends GET `path` and reads nothing until readAnswer. */
export function unreadHttpGet(n: TestNode, path: string): Socket {
  const socket = connect({ host: n.extHttp.host, port: n.extHttp.port });
  socket.on("error", () => undefined);
  socket.pause();
  socket.write(`GET ${path} HTTP/1.1\r\nHost: node\r\n\r\n`);
  return socket;
}

/**
 * Reads the answer of unreadHttpGet: "whole" once Content-Length bytes of body have come,
 * "cut short" when the connection ends before (within `timeoutMs`).
 */
export function readAnswer(socket: Socket, timeoutMs = 30_000): Promise<"whole" | "cut short"> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let bodyBytes = -1;
    let length = -1;
    const timer = setTimeout(
      () => reject(new Error("the answer neither came nor ended")),
      timeoutMs,
    );
    const done = (outcome: "whole" | "cut short"): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    socket.on("data", (chunk: Buffer) => {
      if (length < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const m = /content-length: (\d+)/i.exec(head.subarray(0, end).toString("latin1"));
        if (m === null) return reject(new Error("an answer without Content-Length"));
        length = Number(m[1]);
        bodyBytes = head.length - end - 4;
      } else {
        bodyBytes += chunk.length;
      }
      if (bodyBytes >= length) done("whole");
    });
    socket.on("close", () => done("cut short"));
    socket.resume();
  });
}

/** The resident memory of process `pid`, in MiB. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
}
