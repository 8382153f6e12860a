// The native protocol under random input: frames built from the protocol's own schema (every
// request a client may send, and some it may not), with field values that reach the node's
// rules (streams, event ids, revisions, positions, filters, group settings drawn from small
// pools, so that requests meet each other's state) and values that test its checks (empty,
// huge, negative, out-of-range enums, broken JSON, lone surrogates); and some frames damaged
// after encoding (bytes flipped, cut, appended). One real node per backend.
//
// What must hold ("bad input on any interface gets a clear error and changes nothing stored;
// the process keeps serving others"):
// - no answer is INTERNAL ("internal error" names no cause), and the node logs no error;
// - every request that always gets an answer gets one (or its connection is closed as a
//   protocol violation);
// - the node keeps serving: a fresh connection appends and reads back;
// - on disk, the node restarts on what the input left and reads all of `$all` back.
//
// The HTTP API likewise: random methods, paths, query parameters, headers and bodies; no answer
// is a 500, the node logs no error, and it serves on.
//
// CHORUS_FUZZ_SEED and CHORUS_FUZZ_FRAMES run one seed longer.
import { chorus, decodeFrame, type Frame } from "@chorus/protocol";
import type { TestNode } from "@chorus/testing";
import { randomUUID } from "node:crypto";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { pick, randomInt, seededRandom, type Random } from "../chaos/schedule.js";
import {
  BACKENDS,
  DISK_BACKENDS,
  closeBackends,
  startBackendNode,
  type Backend,
} from "../backends.js";
import { RawClient } from "./helpers.js";

afterAll(closeBackends);

const Code = chorus.ErrorResponse.Code;
const SEEDS = process.env.CHORUS_FUZZ_SEED
  ? [Number(process.env.CHORUS_FUZZ_SEED)]
  : [20261205, 7, 4_000_000_007];
const FRAMES = Number(process.env.CHORUS_FUZZ_FRAMES ?? 600);

const root = protobuf.loadSync(
  fileURLToPath(new URL("../../../packages/protocol/chorus.proto", import.meta.url)),
);
const FrameType = root.lookupType("chorus.Frame");

/** Bodies a client may send, and a few it may not (replies, which the node must refuse). */
const CLIENT_BODIES = [
  "append",
  "append",
  "append",
  "readStream",
  "readAll",
  "deleteStream",
  "subscribe",
  "subscriptionCredit",
  "unsubscribe",
  "ping",
  "persistentCreate",
  "persistentUpdate",
  "persistentDelete",
  "persistentList",
  "persistentGetInfo",
  "persistentReplayParked",
  "persistentSubscribe",
  "persistentAck",
  "persistentNack",
] as const;
const OTHER_BODIES = ["appendResult", "error", "pong", "subscriptionEvents"] as const;
/** Bodies the node never answers (credit, unsubscribe, acks and nacks); it answers all others. */
const UNANSWERED = new Set<string>([
  "subscriptionCredit",
  "unsubscribe",
  "persistentAck",
  "persistentNack",
]);

const STREAMS = [
  "orders-1",
  "orders-2",
  "orders-3",
  "orders-4",
  "$all",
  "$$orders-1",
  "$persistent-config",
  "a",
  "",
];
const GROUPS = ["g1", "g2", "", "x".repeat(300)];

/** A version-4 UUID from the seeded source (so a seed replays the same frames). */
function uuid(r: Random): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(r() * 16).toString(16)).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** Values for fields by name, where the name says what the node does with them. */
function byName(r: Random, name: string): unknown {
  switch (name) {
    case "streamId":
      return r() < 0.9 ? pick(r, STREAMS) : odd(r);
    case "group":
      return r() < 0.9 ? pick(r, GROUPS) : odd(r);
    case "id":
      return r() < 0.85
        ? uuid(r)
        : pick(r, [
            "",
            "not-a-uuid",
            uuid(r).toUpperCase(),
            "00000000-0000-0000-0000-000000000000",
          ]);
    case "type":
      return r() < 0.8 ? pick(r, ["Placed", "Shipped", "$metadata", "$>"]) : odd(r);
    case "data":
    case "metadata":
      return pick(r, [
        Buffer.from(JSON.stringify({ n: randomInt(r, 0, 9) })),
        Buffer.from('{"$maxCount": 2, "$maxAge": 1}'),
        Buffer.from('{"$tb": 3}'),
        Buffer.from('{"$maxCount": -1}'),
        Buffer.from("{not json"),
        Buffer.from([0xff, 0xfe, 0x00]),
        Buffer.alloc(0),
        Buffer.alloc(randomInt(r, 1, 200_000), 0x61),
      ]);
    case "streamNameRegex":
    case "eventTypeRegex":
      return pick(r, ["^orders-", "(a|aa)+b", "(", "(?=a)a|b", "", "\\p{L}+", "a".repeat(1_001)]);
    case "hard":
      return r() < 0.1; // a hard delete ends a stream for the rest of the run
    case "positions":
      return Array.from({ length: randomInt(r, 0, 4) }, () => number(r));
    default:
      return undefined;
  }
}

/** A text the node's checks must refuse or take as it is. */
function odd(r: Random): string {
  return pick(r, [
    "",
    "$",
    "$$",
    "\u0000",
    "\ud800",
    "a\nb",
    "😀",
    "{t}x",
    " ",
    "x".repeat(randomInt(r, 1_000, 70_000)),
  ]);
}

function number(r: Random): string | number {
  return pick(r, [
    0,
    1,
    2,
    3,
    5,
    100,
    4_096,
    65_536,
    "9007199254740993",
    "18446744073709551615",
    randomInt(r, 0, 2_000_000),
  ]);
}

/** A random value of `field` (protobufjs reflection), `depth` levels into the message. */
function fieldValue(r: Random, field: protobuf.Field, depth: number): unknown {
  field.resolve();
  const named = byName(r, field.name);
  if (named !== undefined && r() < 0.9) return named;
  const one = (): unknown => {
    if (field.resolvedType instanceof protobuf.Type)
      return depth < 4 ? message(r, field.resolvedType, depth + 1) : {};
    if (field.resolvedType instanceof protobuf.Enum) {
      const values = Object.values(field.resolvedType.values);
      return r() < 0.9 ? pick(r, values) : pick(r, [-1, 99, 2 ** 31 - 1]);
    }
    switch (field.type) {
      case "string":
        return r() < 0.5 ? pick(r, STREAMS) : odd(r);
      case "bool":
        return r() < 0.5;
      case "bytes":
        return byName(r, "data");
      case "uint64":
      case "int64":
      case "sint64":
      case "fixed64":
        return number(r);
      default:
        return pick(r, [0, 1, 10, 1_000, 2 ** 31 - 1, 4_294_967_295, randomInt(r, 0, 100_000)]);
    }
  };
  if (field.repeated) return Array.from({ length: r() < 0.05 ? 300 : randomInt(r, 0, 3) }, one);
  return one();
}

function message(r: Random, type: protobuf.Type, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    if (field.partOf !== null && field.partOf !== undefined) continue; // oneofs: one member
    if (r() < 0.75) out[field.name] = fieldValue(r, field, depth);
  }
  for (const oneof of type.oneofsArray) {
    if (oneof.name === "body" || r() >= 0.8) continue;
    const member = pick(r, oneof.fieldsArray);
    out[member.name] = fieldValue(r, member, depth);
  }
  return out;
}

/** One frame's bytes, what it carries, and whether it was damaged after encoding. */
function frame(
  r: Random,
  correlationId: number,
): { bytes: Uint8Array; body: string; damaged: boolean; text: string; id: number } {
  const body = r() < 0.95 ? pick(r, CLIENT_BODIES) : pick(r, OTHER_BODIES);
  const bodyField = FrameType.fields[body] as protobuf.Field;
  // Now and then 0, which the node refuses (answering with correlation id 0).
  const id = r() < 0.98 ? correlationId : 0;
  const init: Record<string, unknown> = {
    correlationId: id,
    [body]: message(r, bodyField.resolvedType as protobuf.Type, 0),
  };
  if (r() < 0.05) init.credentials = { username: odd(r), password: odd(r) };
  if (body === "subscribe" || body === "persistentSubscribe") {
    const b = init[body] as Record<string, unknown>;
    b.credit ??= randomInt(r, 0, 50);
  }
  const built = FrameType.fromObject(init);
  let bytes = FrameType.encode(built).finish();
  const damaged = r() < 0.08;
  if (damaged) {
    const copy = Buffer.from(bytes);
    switch (randomInt(r, 0, 2)) {
      case 0:
        for (let k = 0; k < randomInt(r, 1, 4); k++)
          if (copy.length > 0) copy[randomInt(r, 0, copy.length - 1)] = randomInt(r, 0, 255);
        bytes = copy;
        break;
      case 1:
        bytes = copy.subarray(0, randomInt(r, 0, copy.length));
        break;
      default:
        bytes = Buffer.concat([
          copy,
          Buffer.from([randomInt(r, 0, 255), randomInt(r, 0, 255), randomInt(r, 0, 255)]),
        ]);
    }
  }
  // What a failure names: the frame as JSON, long values cut.
  const text = JSON.stringify(built.toJSON(), (_k, v: unknown) =>
    typeof v === "string" && v.length > 80 ? `${v.slice(0, 80)}… (${v.length})` : v,
  );
  return { bytes, body, damaged, text, id };
}

interface Connection {
  readonly ws: WebSocket;
  readonly received: Frame[];
  closed: { code: number; reason: string } | undefined;
}

function connect(node: TestNode): Promise<Connection> {
  const ws = new WebSocket(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
  const c: Connection = { ws, received: [], closed: undefined };
  ws.on("message", (data: Buffer) => c.received.push(decodeFrame(new Uint8Array(data), 64 << 20)));
  ws.on("close", (code, reason) => (c.closed = { code, reason: reason.toString() }));
  ws.on("error", () => undefined);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(c));
    ws.once("error", reject);
  });
}

/** What the node answered that breaks the rules: INTERNAL errors and drops. */
function internal(frames: readonly Frame[]): string[] {
  return frames.flatMap((f) => {
    const code = f.error?.code ?? f.subscriptionDropped?.reason?.code;
    return code === Code.INTERNAL
      ? [
          `${String(f.correlationId)}: ${f.error?.message ?? f.subscriptionDropped?.reason?.message}`,
        ]
      : [];
  });
}

async function fuzz(node: TestNode, seed: number): Promise<void> {
  const r = seededRandom(seed);
  let conn = await connect(node);
  const connections = [conn];
  const expected = new Map<number, { conn: Connection; id: number; text: string }>();
  for (let i = 1; i <= FRAMES; i++) {
    if (conn.closed !== undefined || conn.ws.readyState !== WebSocket.OPEN) {
      conn = await connect(node);
      connections.push(conn);
    }
    const f = frame(r, i);
    if (!f.damaged && !UNANSWERED.has(f.body)) expected.set(i, { conn, id: f.id, text: f.text });
    conn.ws.send(f.bytes);
    // Now and then, let the node answer before more arrives (as a client awaiting would).
    if (r() < 0.1) await new Promise((resolve) => setImmediate(resolve));
  }
  // Every answered request is answered, or its connection was closed.
  const deadline = Date.now() + 60_000;
  const unanswered = (): string[] =>
    [...expected.values()].flatMap(({ conn: c, id, text }) =>
      c.closed !== undefined || c.received.some((f) => Number(f.correlationId) === id)
        ? []
        : [text],
    );
  while (unanswered().length > 0 && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20));
  expect(unanswered(), `seed ${seed}: requests never answered`).toEqual([]);
  expect(
    connections.flatMap((c) => internal(c.received)),
    `seed ${seed}`,
  ).toEqual([]);
  // A connection the node closed was closed as a protocol violation, with a reason.
  const closes = connections.flatMap((c) => (c.closed === undefined ? [] : [c.closed]));
  expect(
    closes.filter((c) => ![1002, 1003, 1007, 1008, 1009].includes(c.code) || c.reason === ""),
    `seed ${seed}: closes`,
  ).toEqual([]);
  for (const c of connections) c.ws.terminate();

  // The node serves a well-behaved client.
  const good = await RawClient.connect(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
  const stream = `after-fuzz-${randomUUID()}`;
  const appended = await good.request({
    append: {
      streamId: stream,
      events: [{ id: randomUUID(), type: "Checked", isJson: true, data: Buffer.from("{}") }],
    },
  });
  expect(appended.appendResult?.success, JSON.stringify(appended.toJSON())).toBeTruthy();
  const read = await good.request({ readStream: { streamId: stream, maxCount: 10 } });
  expect(read.readResult?.events).toHaveLength(1);
  await good.close();
}

/** Reads `$all` to its end, page by page: every record the fuzz left must decode. */
async function readAllBack(node: TestNode): Promise<number> {
  const c = await RawClient.connect(`ws://${node.extTcp.host}:${node.extTcp.port}/`);
  let from = 0;
  let events = 0;
  for (let page = 0; page < 10_000; page++) {
    const reply = await c.request(
      { readAll: { fromPosition: from, maxCount: 1_000, filter: { includeSystem: true } } },
      30_000,
    );
    expect(reply.error, JSON.stringify(reply.toJSON())).toBeFalsy();
    const result = reply.readResult as chorus.ReadResponse;
    events += result.events.length;
    if (result.endOfStream) break;
    from = Number(result.nextPosition);
  }
  await c.close();
  return events;
}

/** The node's log lines at level error or fatal. */
function loggedErrors(node: TestNode): string[] {
  return node
    .output()
    .split("\n")
    .filter((line) => /"level":(50|60)/.test(line));
}

/** Each backend once: memory, disk (restarted at the end) and, where it runs, PostgreSQL. */
const FUZZ_BACKENDS = [...new Set<Backend>([...BACKENDS, ...DISK_BACKENDS])];

describe.each(FUZZ_BACKENDS)("the native protocol under random frames (%s)", (backend) => {
  it.each(SEEDS)(
    "seed %d: clear answers, no internal error, the node serves on",
    async (seed) => {
      const node = await startBackendNode(backend);
      try {
        await fuzz(node, seed);
        expect(loggedErrors(node), `seed ${seed}: the node logged errors`).toEqual([]);
        if (node.dataDir !== undefined) {
          const before = await readAllBack(node);
          await node.restart();
          expect(await readAllBack(node)).toBe(before);
        } else {
          expect(await readAllBack(node)).toBeGreaterThan(0);
        }
      } finally {
        await node.stop();
      }
    },
    180_000,
  );
});

// ---------------------------------------------------------------- the HTTP API

const METHODS = ["GET", "GET", "POST", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"];
const PATHS = [
  "/streams/orders-1",
  "/streams/orders-2",
  "/streams/%24all",
  "/streams/%24%24orders-1",
  "/streams/",
  "/streams",
  "/streams/%ZZ",
  "/streams/%00",
  `/streams/${"x".repeat(5_000)}`,
  "/streams/a%2Fb",
  "/subscriptions",
  "/subscriptions/orders-1/g1",
  "/subscriptions/%24all/g2",
  "/subscriptions/orders-1/g1/replay-parked",
  "/subscriptions/x",
  "/gossip",
  "/info",
  "/metrics",
  "/health/live",
  "/health/ready",
  "/ui/",
  "/ui",
  "/",
  "/ui/../../../etc/passwd",
  "/ui/%2e%2e/%2e%2e/etc/passwd",
  "//streams//orders-1",
  "/nothing",
];
const QUERIES = [
  "",
  "from=0",
  "from=end",
  "from=start",
  "from=-1",
  "from=3",
  "from=99999999999999999999",
  "from=abc",
  "count=0",
  "count=20",
  "count=4097",
  "count=1e3",
  "direction=backwards",
  "direction=sideways",
  "prefix=orders",
  "limit=0",
  "limit=1001",
  "after=orders-1",
  "system=true",
  "system=maybe",
  "stream=orders-1",
  "stopAt=5",
  "stopAt=-5",
  "from=0&from=1",
];

function httpBody(r: Random): Buffer | undefined {
  const event = (): Record<string, unknown> => ({
    eventId: r() < 0.9 ? uuid(r) : pick(r, ["", 5, null, "nope"]),
    eventType: r() < 0.9 ? pick(r, ["Placed", "Shipped"]) : pick(r, ["", 7, null]),
    data: pick(r, [{ n: 1 }, "text", 5, null, [1, 2], { deep: { er: [true] } }]),
    ...(r() < 0.3 && { metadata: pick(r, [{ m: 1 }, "x", 3]) }),
  });
  switch (randomInt(r, 0, 9)) {
    case 0:
      return undefined;
    case 1:
      return Buffer.from("{not json");
    case 2:
      return Buffer.from(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    case 3:
      return Buffer.from(JSON.stringify({ not: "an array" }));
    case 4:
      return Buffer.from(JSON.stringify([]));
    case 5:
      return Buffer.alloc(randomInt(r, 1, 3_000_000), 0x20);
    case 6:
      return Buffer.from([0xff, 0xfe, 0xfd]);
    default:
      return Buffer.from(JSON.stringify(Array.from({ length: randomInt(r, 1, 5) }, event)));
  }
}

function httpHeaders(r: Random, body: Buffer | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  if (body !== undefined)
    h["content-type"] = pick(r, ["application/json", "text/plain", "application/octet-stream", ""]);
  if (r() < 0.5)
    h["chorus-expected-version"] = pick(r, [
      "any",
      "no_stream",
      "stream_exists",
      "0",
      "3",
      "-1",
      "x",
      "18446744073709551616",
    ]);
  if (r() < 0.2) h["chorus-hard-delete"] = pick(r, ["true", "false", "yes"]);
  if (r() < 0.1) h.authorization = pick(r, ["Basic !!!", "Basic YTpi", "Bearer x", "Basic"]);
  if (r() < 0.1) h.accept = pick(r, ["text/html", "*/*", "application/json"]);
  return h;
}

/** One HTTP request; resolves with the status, or undefined when the node closed the socket. */
function send(
  node: TestNode,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: node.extHttp.host, port: node.extHttp.port, method, path, headers, timeout: 30_000 },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
        res.on("error", () => resolve(undefined));
      },
    );
    req.on("timeout", () => {
      req.destroy();
      reject(new Error(`${method} ${path.slice(0, 80)}: no answer within 30 s`));
    });
    req.on("error", (err: NodeJS.ErrnoException) =>
      err.code === "ECONNRESET" || err.code === "EPIPE" ? resolve(undefined) : reject(err),
    );
    req.end(body);
  });
}

describe.each(FUZZ_BACKENDS)("the HTTP API under random requests (%s)", (backend) => {
  it.each(SEEDS)(
    "seed %d: no 500, no error logged, the node serves on",
    async (seed) => {
      const node = await startBackendNode(backend);
      try {
        const r = seededRandom(seed);
        const failures: string[] = [];
        for (let i = 0; i < FRAMES / 2; i++) {
          const method = pick(r, METHODS);
          const query = [pick(r, QUERIES), pick(r, QUERIES)].filter(Boolean).join("&");
          const path = `${pick(r, PATHS)}${query ? `?${query}` : ""}`;
          const body = method === "GET" || method === "HEAD" ? undefined : httpBody(r);
          const headers = httpHeaders(r, body);
          const status = await send(node, method, path, headers, body);
          if (status !== undefined && status >= 500 && status !== 503)
            failures.push(`${method} ${path.slice(0, 100)} ${JSON.stringify(headers)}: ${status}`);
        }
        expect(failures, `seed ${seed}`).toEqual([]);
        expect(loggedErrors(node), `seed ${seed}: the node logged errors`).toEqual([]);
        const stream = `after-http-fuzz-${randomUUID()}`;
        const ok = await send(
          node,
          "POST",
          `/streams/${stream}`,
          { "content-type": "application/json" },
          Buffer.from(JSON.stringify([{ eventId: randomUUID(), eventType: "Checked", data: {} }])),
        );
        expect(ok).toBe(201);
        expect(await send(node, "GET", `/streams/${stream}`, {}, undefined)).toBe(200);
      } finally {
        await node.stop();
      }
    },
    180_000,
  );
});
