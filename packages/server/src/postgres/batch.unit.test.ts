import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ExpectedVersion, NewEvent } from "../streams/types.js";
import { Batch, idsOf, streamsOf, type IdAt, type StreamRow, type WriteOp } from "./batch.js";

const ANY: ExpectedVersion = { kind: "any" };
const NO_STREAM: ExpectedVersion = { kind: "no_stream" };
const exact = (revision: number): ExpectedVersion => ({ kind: "exact", revision });

function ev(type = "T", data = "{}"): NewEvent {
  return {
    id: randomUUID(),
    type,
    isJson: true,
    data: Buffer.from(data),
    metadata: new Uint8Array(0),
  };
}

/** A database holding `stored` events (ids by stream, revisions from 0) with rows to match. */
function db(
  stored: Record<string, Array<{ id: string; position: number }>> = {},
  rows: Record<string, Partial<StreamRow>> = {},
) {
  const reads: string[] = [];
  const streamRows = new Map<string, StreamRow>();
  for (const [name, events] of Object.entries(stored)) {
    const last = events.length - 1;
    streamRows.set(name, {
      last,
      lastPosition: events[last]?.position ?? -1,
      tombstoned: false,
      meta: null,
      ...rows[name],
    });
  }
  for (const [name, row] of Object.entries(rows)) {
    if (!streamRows.has(name))
      streamRows.set(name, { last: -1, lastPosition: -1, tombstoned: false, meta: null, ...row });
  }
  return {
    reads,
    io: {
      stream: (id: string) => streamRows.get(id),
      idInStream: (streamId: string, id: string) => {
        const i = (stored[streamId] ?? []).findIndex((e) => e.id === id);
        const e = stored[streamId]?.[i];
        return e === undefined ? undefined : { revision: i, position: e.position };
      },
      readIds: (streamId: string, from: number, to: number): Promise<IdAt[]> => {
        reads.push(`${streamId}:${from}-${to}`);
        const out: IdAt[] = [];
        (stored[streamId] ?? []).forEach((e, revision) => {
          if (revision >= from && revision <= to)
            out.push({ id: e.id, revision, position: e.position });
        });
        return Promise.resolve(out);
      },
    },
  };
}

const append = (streamId: string, expected: ExpectedVersion, events: NewEvent[]): WriteOp => ({
  kind: "append",
  streamId,
  expected,
  events,
});

describe("Batch", () => {
  it("writes appends at consecutive positions from the head, revisions per stream", async () => {
    const b = new Batch(db().io, 100, 5);
    expect(await b.decide(append("a", NO_STREAM, [ev(), ev()]))).toEqual({
      ok: true,
      nextExpectedVersion: 1,
      position: 101,
    });
    expect(await b.decide(append("b", ANY, [ev()]))).toEqual({
      ok: true,
      nextExpectedVersion: 0,
      position: 102,
    });
    expect(await b.decide(append("a", exact(1), [ev()]))).toEqual({
      ok: true,
      nextExpectedVersion: 2,
      position: 103,
    });
    expect(b.nextPosition).toBe(104);
    expect(b.events.map((e) => [e.streamId, e.revision, e.position, e.createdMs])).toEqual([
      ["a", 0, 100, 5],
      ["a", 1, 101, 5],
      ["b", 0, 102, 5],
      ["a", 2, 103, 5],
    ]);
    expect(b.changedStreams.get("a")).toEqual({
      last: 2,
      lastPosition: 103,
      tombstoned: false,
      meta: null,
    });
  });

  it("answers a wrong expected version without writing", async () => {
    const b = new Batch(db({ a: [{ id: randomUUID(), position: 0 }] }).io, 1, 0);
    expect(await b.decide(append("a", exact(5), [ev()]))).toEqual({
      ok: false,
      wrongExpectedVersion: { streamExists: true, actualRevision: 0 },
    });
    expect(await b.decide(append("b", { kind: "stream_exists" }, [ev()]))).toEqual({
      ok: false,
      wrongExpectedVersion: { streamExists: false, actualRevision: -1 },
    });
    expect(b.events).toEqual([]);
  });

  it("a retry of a write of the same batch gets its result and writes nothing", async () => {
    const b = new Batch(db().io, 0, 0);
    const events = [ev(), ev()];
    const first = await b.decide(append("a", ANY, events));
    expect(await b.decide(append("a", ANY, events))).toEqual(first);
    expect(await b.decide(append("a", NO_STREAM, events))).toEqual(first);
    expect(b.events).toHaveLength(2);
  });

  it("a retry of a stored append gets the original result, whatever its expected version, for ever", async () => {
    const ids = [randomUUID(), randomUUID()];
    // The stream was written twice since: the retry is found by its first id.
    const stored = {
      a: [
        { id: ids[0] as string, position: 10 },
        { id: ids[1] as string, position: 11 },
        { id: randomUUID(), position: 50 },
      ],
    };
    const events = ids.map((id) => ({ ...ev(), id: id.toUpperCase() }));
    for (const expected of [ANY, NO_STREAM, { kind: "stream_exists" } as const]) {
      const d = db(stored);
      const b = new Batch(d.io, 60, 0);
      expect(await b.decide(append("a", expected, events))).toEqual({
        ok: true,
        nextExpectedVersion: 1,
        position: 11,
      });
      expect(d.reads).toEqual(["a:0-1"]);
      expect(b.events).toEqual([]);
    }
  });

  it("an exact retry is recognised only at its expected place", async () => {
    const id = randomUUID();
    const stored = {
      a: [
        { id: randomUUID(), position: 0 },
        { id, position: 1 },
      ],
    };
    const b = new Batch(db(stored).io, 2, 0);
    expect(await b.decide(append("a", exact(0), [{ ...ev(), id }]))).toEqual({
      ok: true,
      nextExpectedVersion: 1,
      position: 1,
    });
    // Not a retry (that would say exact 0), and its id is the stream's already: refused.
    await expect(b.decide(append("a", exact(1), [{ ...ev(), id }]))).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: `event id ${id} is already stored in this stream (revision 1); event ids are unique per stream`,
    });
  });

  it("refuses an id twice in one append or again in the same batch", async () => {
    const b = new Batch(db().io, 0, 0);
    const e = ev();
    await expect(b.decide(append("a", ANY, [e, { ...ev(), id: e.id }]))).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await b.decide(append("a", ANY, [e]));
    await expect(b.decide(append("a", ANY, [ev(), { ...ev(), id: e.id }]))).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    expect(b.events).toHaveLength(1);
  });

  it("a partial match is a wrong expected version", async () => {
    const id = randomUUID();
    const b = new Batch(
      db({
        a: [
          { id, position: 0 },
          { id: randomUUID(), position: 1 },
        ],
      }).io,
      2,
      0,
    );
    expect(await b.decide(append("a", ANY, [{ ...ev(), id }, ev()]))).toEqual({
      ok: false,
      wrongExpectedVersion: { streamExists: true, actualRevision: 1 },
    });
  });

  it("the same id in another stream is a new event there", async () => {
    const id = randomUUID();
    const b = new Batch(db({ a: [{ id, position: 0 }] }).io, 1, 0);
    expect(await b.decide(append("b", ANY, [{ ...ev(), id }]))).toEqual({
      ok: true,
      nextExpectedVersion: 0,
      position: 1,
    });
  });

  it("an empty append answers the stream's last revision and position", async () => {
    const b = new Batch(db({ a: [{ id: randomUUID(), position: 7 }] }).io, 8, 0);
    expect(await b.decide(append("a", ANY, []))).toEqual({
      ok: true,
      nextExpectedVersion: 0,
      position: 7,
    });
    expect(await b.decide(append("z", ANY, []))).toEqual({
      ok: true,
      nextExpectedVersion: -1,
      position: -1,
    });
    expect(b.nextPosition).toBe(8);
  });

  it("a metadata append sets its stream's metadata; a bad one throws INVALID_ARGUMENT", async () => {
    const b = new Batch(db().io, 0, 0);
    await b.decide(append("$$a", ANY, [ev("$metadata", '{"maxCount":3}')]));
    expect(b.changedStreams.get("a")?.meta).toEqual({ maxCount: 3 });
    await expect(b.decide(append("$$a", ANY, [ev("$metadata", "[1]")]))).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });

  it("a soft delete writes metadata to $$name; the stream can be written again, revisions continuing", async () => {
    const b = new Batch(
      db({
        a: [
          { id: randomUUID(), position: 0 },
          { id: randomUUID(), position: 1 },
        ],
      }).io,
      2,
      0,
    );
    expect(await b.decide({ kind: "delete", streamId: "a", expected: ANY, hard: false })).toEqual({
      ok: true,
      nextExpectedVersion: 1,
      position: 2,
    });
    expect(b.changedStreams.get("a")?.meta).toEqual({ truncateBefore: 2, $softDeleted: true });
    expect(b.events[0]).toMatchObject({ streamId: "$$a", revision: 0, type: "$metadata" });
    expect(await b.decide(append("a", NO_STREAM, [ev()]))).toEqual({
      ok: true,
      nextExpectedVersion: 2,
      position: 3,
    });
  });

  it("a hard delete takes a position for its tombstone; later writes are STREAM_DELETED", async () => {
    const b = new Batch(db({ a: [{ id: randomUUID(), position: 0 }] }).io, 1, 0);
    expect(await b.decide({ kind: "delete", streamId: "a", expected: ANY, hard: true })).toEqual({
      ok: true,
      nextExpectedVersion: 0,
      position: 1,
    });
    expect(b.nextPosition).toBe(2);
    await expect(b.decide(append("a", ANY, [ev()]))).rejects.toMatchObject({
      code: "STREAM_DELETED",
    });
    await expect(b.decide(append("$$a", ANY, [ev("$metadata")]))).rejects.toMatchObject({
      code: "STREAM_DELETED",
    });
    expect(b.events).toEqual([]);
  });

  it("reads a tombstoned stream's state from its row", async () => {
    const b = new Batch(db({}, { gone: { tombstoned: true, last: 4, lastPosition: 9 } }).io, 10, 0);
    await expect(b.decide(append("gone", ANY, [ev()]))).rejects.toMatchObject({
      code: "STREAM_DELETED",
    });
  });
});

describe("what a batch loads", () => {
  it("names every stream it writes, their metadata targets and metadata streams of deletes", () => {
    const ops: WriteOp[] = [
      append("a", ANY, [ev()]),
      append("$$b", ANY, []),
      { kind: "delete", streamId: "c", expected: ANY, hard: false },
    ];
    expect([...streamsOf(ops)].sort()).toEqual(["$$b", "$$c", "a", "b", "c"]);
    const e = ev();
    const f = ev();
    expect(
      idsOf([append("a", ANY, [{ ...e, id: e.id.toUpperCase() }, f]), append("b", ANY, [])]),
    ).toEqual([
      { streamId: "a", id: e.id.toLowerCase() },
      { streamId: "a", id: f.id },
    ]);
  });
});
