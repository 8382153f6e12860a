/**
 * What the tests of clients that do not read their answers share (read-backpressure,
 * send-budget): a node filled with large events, raw connections that send reads of `$all`
 * and read nothing back, and the node's metrics.
 */
import { jsonEvent, type ChorusClient } from "@chorus/client";
import { chorus, encodeFrame } from "@chorus/protocol";
import type { TestNode } from "@chorus/testing";
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
