import { describe, expect, it } from "vitest";
import { chorus, decodeFrame, encodeFrame, FrameError } from "./index.js";

describe("frame codec", () => {
  it("round-trips an append request with its correlation id", () => {
    const bytes = encodeFrame({
      correlationId: 42,
      append: {
        streamId: "order-1",
        expected: { kind: chorus.ExpectedVersion.Kind.EXACT, revision: 7 },
        events: [
          {
            id: "3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f60",
            type: "Placed",
            isJson: true,
            data: new Uint8Array([123, 125]),
          },
        ],
      },
    });
    const frame = decodeFrame(bytes);
    expect(frame.correlationId).toBe(42);
    expect(frame.body).toBe("append");
    expect(frame.append?.streamId).toBe("order-1");
    expect(frame.append?.expected?.revision).toBe(7);
    expect(frame.append?.events?.[0]?.type).toBe("Placed");
    expect(Array.from(frame.append?.events?.[0]?.data ?? [])).toEqual([123, 125]);
  });

  describe("append frames encode to the bytes of chorus.Frame.encode", () => {
    const id = "3f0e2a5c-8d7b-4c1e-9a6f-1b2c3d4e5f60";
    const Kind = chorus.ExpectedVersion.Kind;
    const event = (extra: Partial<chorus.IEventData> = {}): chorus.IEventData => ({
      id,
      type: "Placed",
      isJson: true,
      data: new Uint8Array([123, 125]),
      metadata: new Uint8Array(0),
      ...extra,
    });
    const frames: Array<[string, chorus.IFrame]> = [
      [
        "a plain append",
        {
          correlationId: 7,
          append: { streamId: "s", expected: { kind: Kind.ANY }, events: [event()] },
        },
      ],
      ["no correlation id", { append: { streamId: "s", events: [event()] } }],
      ["correlation id 0", { correlationId: 0, append: { streamId: "s", events: [event()] } }],
      [
        "a large correlation id",
        { correlationId: 2 ** 40 + 3, append: { streamId: "s", events: [event()] } },
      ],
      [
        "an exact revision",
        {
          correlationId: 300,
          append: { streamId: "s", expected: { kind: Kind.EXACT, revision: 2 ** 35 + 1 } },
        },
      ],
      [
        "the largest revision",
        {
          correlationId: 1,
          append: {
            streamId: "s",
            expected: { kind: Kind.EXACT, revision: Number.MAX_SAFE_INTEGER },
          },
        },
      ],
      [
        "an empty expected version",
        { correlationId: 1, append: { streamId: "s", expected: {}, events: [] } },
      ],
      ["no events", { correlationId: 1, append: { streamId: "s" } }],
      ["an empty append", { correlationId: 1, append: {} }],
      [
        "many events, some without metadata or flags",
        {
          correlationId: 99_999,
          append: {
            streamId: "orders-ünïcödé-€-😀",
            expected: { kind: Kind.NO_STREAM },
            events: [
              event(),
              { id, type: "T", data: new Uint8Array(200).fill(7) },
              event({ isJson: false, metadata: new Uint8Array([1, 2, 3]) }),
              { id, type: "x".repeat(300), isJson: false, data: new Uint8Array(70_000).fill(1) },
              { type: "no-id" },
              {},
            ],
          },
        },
      ],
      [
        "a long stream name",
        { correlationId: 5, append: { streamId: "s".repeat(200), events: [event()] } },
      ],
      [
        "lone surrogates, short",
        { correlationId: 5, append: { streamId: "a\ud800b", events: [event({ type: "\udc00" })] } },
      ],
      [
        "lone surrogates, long",
        {
          correlationId: 5,
          append: {
            streamId: "a\ud800b".repeat(20),
            events: [event({ type: "\udc00".repeat(50) })],
          },
        },
      ],
      [
        "bytes as a plain array",
        {
          correlationId: 5,
          append: { events: [event({ data: [1, 2, 300] as unknown as Uint8Array })] },
        },
      ],
      [
        "bytes as base64 text",
        {
          correlationId: 5,
          append: { events: [event({ data: "AQID" as unknown as Uint8Array })] },
        },
      ],
      [
        "per-request credentials",
        {
          correlationId: 5,
          credentials: { username: "u", password: "p" },
          append: { streamId: "s", events: [event()] },
        },
      ],
    ];
    it.each(frames)("%s", (_name, frame) => {
      const expected = chorus.Frame.encode(frame).finish();
      expect(Buffer.from(encodeFrame(frame)).equals(Buffer.from(expected))).toBe(true);
    });

    it("stamps the correlation id given beside the frame", () => {
      const frame = { append: { streamId: "s", events: [event()] } };
      const expected = chorus.Frame.encode({ ...frame, correlationId: 12_345 }).finish();
      expect(Buffer.from(encodeFrame(frame, 12_345)).equals(Buffer.from(expected))).toBe(true);
      expect(Buffer.from(encodeFrame({ ...frame, correlationId: 1 }, 12_345))).toEqual(
        Buffer.from(expected),
      );
    });
  });

  it("keeps 2^53-1 positions exact", () => {
    const max = Number.MAX_SAFE_INTEGER;
    const frame = decodeFrame(
      encodeFrame({
        correlationId: 1,
        appendResult: { success: { position: max, nextExpectedVersion: max - 1 } },
      }),
    );
    expect(frame.appendResult?.success?.position).toBe(max);
    expect(frame.appendResult?.success?.nextExpectedVersion).toBe(max - 1);
  });

  const cases: Array<[string, Uint8Array, FrameError["code"]]> = [
    ["empty input", new Uint8Array(0), "FRAME_EMPTY"],
    [
      "a truncated frame",
      encodeFrame({ correlationId: 1, append: { streamId: "a-long-stream-name" } }).subarray(0, 8),
      "FRAME_MALFORMED",
    ],
    ["garbage bytes", new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), "FRAME_MALFORMED"],
    ["a frame without a body", encodeFrame({ correlationId: 9 }), "FRAME_UNKNOWN_BODY"],
    // field 99, varint: a message type this version does not know
    ["an unknown body type", new Uint8Array([0x08, 0x01, 0x98, 0x06, 0x01]), "FRAME_UNKNOWN_BODY"],
    ["ASCII text", new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), "FRAME_MALFORMED"],
  ];
  it.each(cases)("rejects %s", (_name, bytes, code) => {
    let error: unknown;
    try {
      decodeFrame(bytes);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FrameError);
    expect((error as FrameError).code).toBe(code);
  });

  it("rejects a frame larger than the limit before decoding it", () => {
    const bytes = encodeFrame({ correlationId: 1, append: { streamId: "x".repeat(2000) } });
    expect(() => decodeFrame(bytes, 1000)).toThrowError(/exceeds the limit of 1000 bytes/);
    expect(decodeFrame(bytes, 4000).append?.streamId).toHaveLength(2000);
  });
});

describe("messageBytes", () => {
  it("accepts a buffer, an ArrayBuffer and fragments", async () => {
    const { messageBytes } = await import("./index.js");
    const whole = new Uint8Array([1, 2, 3, 4]);
    expect(messageBytes(whole)).toBe(whole);
    expect(Array.from(messageBytes(whole.buffer))).toEqual([1, 2, 3, 4]);
    expect(Array.from(messageBytes([whole.subarray(0, 1), whole.subarray(1)]))).toEqual([
      1, 2, 3, 4,
    ]);
  });
});

describe("internal frames", () => {
  it("round-trip an append with raw record bytes and reject garbage like client frames", async () => {
    const { decodeInternalFrame, encodeInternalFrame } = await import("./index.js");
    const records = new Uint8Array([1, 2, 3, 250]);
    const frame = decodeInternalFrame(
      encodeInternalFrame({
        from: "node-a",
        appendEntries: {
          epoch: 3,
          prev: { epoch: 2, position: 4096 },
          records,
          leaderCommit: 1024,
        },
      }),
    );
    expect(frame.from).toBe("node-a");
    expect(frame.body).toBe("appendEntries");
    expect(frame.appendEntries?.prev?.position).toBe(4096);
    expect(frame.appendEntries?.leaderCommit).toBe(1024);
    expect(Array.from(frame.appendEntries?.records ?? [])).toEqual([1, 2, 3, 250]);
    expect(() => decodeInternalFrame(new Uint8Array([0xff, 0xff, 0xff]))).toThrow(FrameError);
    expect(() => decodeInternalFrame(encodeInternalFrame({ from: "x" }))).toThrow(
      /no known message body/,
    );
  });
});

/** Replication frames of every shape; the last ones are for the generated encoder to write. */
function replicationFrames(): { frames: chorus.IInternalFrame[]; records: Buffer } {
  const big = 2 ** 32 + 5;
  const records = Buffer.from([1, 2, 3, 250, 0, 7]);
  const appends: chorus.IAppend[] = [
    { epoch: 3, prev: { epoch: 2, position: 4096 }, records, leaderCommit: 1024 },
    { epoch: 0, prev: { epoch: 0, position: 0 }, records: new Uint8Array(0), leaderCommit: 0 },
    { epoch: big, prev: { epoch: big, position: Number.MAX_SAFE_INTEGER }, leaderCommit: big },
    { epoch: 1, prev: {} },
    { epoch: 1, records: new Uint8Array(300).fill(9) },
    {},
  ];
  const replies: chorus.IAppendReply[] = [
    { epoch: 5, ok: true, match: { epoch: 5, position: 300 }, durableEnd: 200 },
    { epoch: 5, ok: true, match: { epoch: 5, position: 300 }, durableEnd: 200, storageFull: true },
    { epoch: 5, ok: false, hint: { epoch: 4, position: 0 } },
    { epoch: big, ok: true, match: { epoch: 1, position: big }, durableEnd: 0 },
    { ok: false },
    {},
  ];
  const frames: chorus.IInternalFrame[] = [
    ...appends.map((appendEntries) => ({ from: "a7c1f0e2-node", appendEntries })),
    ...replies.map((appendReply) => ({ from: "a7c1f0e2-node", appendReply })),
    { appendEntries: appends[0]! },
    { from: "", appendReply: replies[0]! },
    { from: "ünïcode-node", appendReply: replies[1]! },
    // Not encodable by hand (the generic path): the same bytes all the same.
    { from: "n", appendEntries: { epoch: -1 } },
    { from: "n", appendEntries: { epoch: 1.5 } },
    { from: "n", appendEntries: { records: "AQID" as unknown as Uint8Array } },
    { from: "n", appendReply: { match: { position: -2 } } },
    { from: "n", appendReply: replies[0]!, timeoutNow: { epoch: 1 } },
    { from: "n", appendEntries: null, timeoutNow: { epoch: 1 } },
  ];
  return { frames, records };
}

describe("encoders", () => {
  // Every body field of both envelopes, with and without the header fields: the fast encoders
  // must give exactly the generated encoders' bytes.
  const frameBodies = Object.keys(chorus.Frame.prototype).filter(
    (k) => k !== "correlationId" && k !== "credentials",
  );
  const internalBodies = Object.keys(chorus.InternalFrame.prototype).filter((k) => k !== "from");

  it("knows every body field of the schema", () => {
    expect(frameBodies.length).toBeGreaterThan(30);
    expect(internalBodies).toContain("appendEntries");
  });

  it.each(frameBodies)("encodes a %s frame as the generated encoder does", (body) => {
    const bodyValue = body === "append" ? { streamId: "s", events: [{ id: "x", type: "t" }] } : {};
    for (const header of [
      {},
      { correlationId: 0 },
      { correlationId: 300 },
      { correlationId: 2 ** 32 + 5 },
      { correlationId: Number.MAX_SAFE_INTEGER, credentials: { username: "u", password: "p" } },
    ]) {
      const frame = { [body]: bodyValue, ...header } as chorus.IFrame;
      expect(Buffer.from(encodeFrame(frame))).toEqual(
        Buffer.from(chorus.Frame.encode(frame).finish()),
      );
    }
  });

  it.each(internalBodies)(
    "encodes a %s internal frame as the generated encoder does",
    async (body) => {
      const { encodeInternalFrame } = await import("./index.js");
      for (const header of [{}, { from: "" }, { from: "node-a" }]) {
        const frame = { ...header, [body]: { epoch: 7 } } as chorus.IInternalFrame;
        expect(Buffer.from(encodeInternalFrame(frame))).toEqual(
          Buffer.from(chorus.InternalFrame.encode(frame).finish()),
        );
      }
    },
  );

  it("encodes replication frames by hand as the generated encoder does", async () => {
    const { encodeInternalFrame } = await import("./index.js");
    const { frames, records } = replicationFrames();
    for (const frame of frames) {
      expect(Buffer.from(encodeInternalFrame(frame))).toEqual(
        Buffer.from(chorus.InternalFrame.encode(frame).finish()),
      );
      // A sender given apart stands for the frame's own.
      expect(Buffer.from(encodeInternalFrame(frame, "node-b"))).toEqual(
        Buffer.from(chorus.InternalFrame.encode({ ...frame, from: "node-b" }).finish()),
      );
    }
    // And they decode to what was encoded.
    const decoded = chorus.InternalFrame.decode(encodeInternalFrame(frames[0]!));
    expect(decoded.appendEntries?.prev?.position).toBe(4096);
    expect(Buffer.from(decoded.appendEntries!.records!)).toEqual(records);
  });

  it("skips absent and unknown fields", () => {
    const frame = { correlationId: 1, ping: {}, append: null, nonsense: { a: 1 } } as chorus.IFrame;
    expect(decodeFrame(encodeFrame(frame)).body).toBe("ping");
  });
});
