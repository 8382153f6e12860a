/**
 * Fixtures for the unit tests of the group's pieces: events, entries and consumers with no I/O.
 */
import type { StoredEvent } from "../streams/types.js";
import { newEntry, type Consumer, type ConsumerSink, type Entry } from "./common.js";

/** An event of `streamId` at `revision`, at position `position`. */
export function storedEvent(streamId: string, revision: number, position: number): StoredEvent {
  return {
    streamId,
    revision,
    position,
    id: `00000000-0000-4000-8000-${String(position).padStart(12, "0")}`,
    type: "Test",
    isJson: true,
    data: Buffer.from(JSON.stringify({ n: revision })),
    metadata: new Uint8Array(0),
    createdMs: 0,
  };
}

/** Entries for revisions 0..count-1 of one stream, positions 100, 200, ... */
export function entries(count: number, streamId = "s"): Entry[] {
  const out: Entry[] = [];
  for (let r = 0; r < count; r++) {
    const position = (r + 1) * 100;
    out.push(
      newEntry(storedEvent(streamId, r, position), r, {
        point: r - 1,
        position: r === 0 ? -1 : r * 100,
      }),
    );
  }
  return out;
}

/** A consumer that records nothing: the pieces never call its handle methods. */
export function consumer(name: string, bufferSize: number): Consumer {
  const sink: ConsumerSink = { deliver: () => {}, acked: () => {}, dropped: () => {} };
  return {
    id: name,
    hashKey: `name:${name}`,
    sink,
    options: { bufferSize, name, connection: "test" },
    inflight: new Set(),
    delivered: 0,
    acked: 0,
    closed: false,
    ack: () => {},
    nack: () => {},
    close: () => {},
  };
}

/** The positions each consumer got, by consumer id. */
export function byConsumer(out: Map<Consumer, Entry[]>): Record<string, number[]> {
  const r: Record<string, number[]> = {};
  for (const [c, list] of out) r[c.id] = list.map((e) => e.event.position);
  return r;
}
